"""Population Based Training of the schedule (`lrkit.lab.pbt`, `lrkit study pbt`) on a real local Ray Tune.

The checkpoint round trip and the argument checks need no Ray; one test starts a local Ray and runs one small
PBT through the CLI (blobs, 2 trials, 3 epochs, PBT after epochs 1 and 2), then checks its result.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lrkit
from lrkit.cli import cli
from lrkit.cli.pbt import FILES, TUNE_FOLDER
from lrkit.errors import LabError
from lrkit.lab.pbt_member import MemberRun, Recipe, replay
from lrkit.lab.pbt_result import PBTResult, pieces_schedule
from lrkit.lab.pbt_tune import Settings, pbt, policy_pieces, start_history
from lrkit.lab.problems import get_problem

LR_BOUNDS = (0.02, 0.03)  # narrow: a perturbation (x 1.2, x 0.8) often leaves them, and must be clipped back
MOMENTUM_BOUNDS = (0.5, 0.99)  # pbt's default


STUDY_PBT = ("study", "pbt")  # `lrkit study pbt`: lrkit.cli.study hands the rest of the line to lrkit.cli.pbt


# -- no Ray -------------------------------------------------------------------------------------------
def _round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """The state through a checkpoint file, as a trial writes and reads it."""
    buffer = io.BytesIO()
    torch.save({"run": state}, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)["run"]
    return loaded


def test_checkpoint_round_trip_is_exact() -> None:
    """Weights, optimizer, Scheduler (plateau included), data order: a restored run takes the same next steps, bit for bit."""
    p = get_problem("blobs")
    recipe = Recipe(lrkit.Optim("sgd", momentum=0.9), lrkit.Plateau(patience=0, factor=0.5, threshold=0.5))  # acts at once
    schedules = {"lr": lrkit.piecewise([32], [0.05, 0.03]), "momentum": lrkit.constant(0.8), "weight_decay": lrkit.constant(1e-3)}
    a = MemberRun(p, recipe, schedules, seed=3)
    for _ in range(3):
        a.train_epoch()
    saved = _round_trip(a.state())
    for _ in range(3):
        a.train_epoch()
    b = MemberRun(p, recipe, schedules, seed=999, state=saved)  # another seed: everything must come from the state
    assert b.scheduler.state_dict() == saved["scheduler"] and saved["scheduler"]["plateau"]["changes"] >= 1
    for _ in range(3):
        b.train_epoch()
    assert b.lrs == a.lrs and b.losses == a.losses
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    assert torch.equal(a.order.generator.get_state(), b.order.generator.get_state())


def test_a_mutated_lr_is_a_new_piece_from_the_restored_step() -> None:
    p = get_problem("blobs")
    recipe = Recipe(lrkit.Optim("sgd", momentum=0.9))
    settings = Settings(recipe, epochs=4, interval=2, metric="loss", hyperparams=("lr",))
    history = start_history(None, {"lr": 0.05, "seed": 0}, settings, "t0", 0)
    a = MemberRun(p, recipe, {"lr": pieces_schedule(history["pieces"]["lr"])}, seed=0)
    a.train_epoch()
    history = start_history(history | {"owner": "t0"}, {"lr": 0.02, "seed": 0}, settings, "t1", a.step)  # an exploit by t1
    assert history["pieces"]["lr"] == [(0, 0.05), (16, 0.02)] and history["lineage"] == [(16, "t0")]
    b = MemberRun(p, recipe, {"lr": pieces_schedule(history["pieces"]["lr"])}, seed=0, state=_round_trip(a.state()))
    b.train_epoch()
    assert b.lrs == [0.05] * 16 + [0.02] * 16


def test_pieces_schedule_merges_and_checks() -> None:
    s = pieces_schedule([(0, 0.1), (16, 0.1), (32, 0.05), (32, 0.04)])
    assert s == lrkit.piecewise([32], [0.1, 0.04]) and lrkit.parse(repr(s)) == s
    with pytest.raises(LabError, match="pieces_schedule: parameter 'pieces' must start at step 0"):
        pieces_schedule([(4, 0.1)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"population": 1}, "pbt: parameter 'population' must be an integer >= 2"),
        ({"hyperparams": ("lr", "dropout")}, "pbt: parameter 'hyperparams' must be one of"),
        ({"hyperparams": ("momentum",)}, "pbt: parameter 'hyperparams' must name 'lr'"),
        ({"hyperparams": ("lr", "momentum"), "optimizer": "adagrad"}, "mutates 'momentum', which the 'adagrad' optimizer has not"),
        ({"lr_bounds": (0.1, 0.01)}, "pbt: parameter 'lr_bounds' must be \\(low, high\\) with low < high"),
        ({"lr_bounds": (0.0, 0.01)}, "pbt: parameter 'lr_bounds' must be > 0"),
        ({"hyperparams": ("lr", "momentum"), "momentum_bounds": (0.5, 1.0)}, "parameter 'momentum_bounds' must lie in"),
        ({"epochs": 3, "interval": 4}, "pbt: parameter 'interval' must be an integer in \\[1, 3\\]"),
        ({"metric": "auc"}, "pbt: parameter 'metric' must be one of 'loss', 'accuracy'"),
        ({"quantile": 0.6}, "pbt: parameter 'quantile' must lie in"),
        ({"device": "gpu0"}, "pbt: parameter 'device' must be a torch device"),
        ({"address": 3}, "pbt: parameter 'address' must be None \\(a local Ray\\)"),
    ],
)
def test_bad_arguments_fail_before_ray_starts(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LabError, match=message):
        pbt("blobs", **kwargs)


def test_accuracy_needs_a_classification_problem() -> None:
    with pytest.raises(LabError, match="pbt: parameter 'metric' must be 'loss' for the regression problem 'regression'"):
        pbt("regression", metric="accuracy")


def test_cli_help_and_bad_input_are_exit_2_one_line() -> None:
    r = CliRunner().invoke(cli, [*STUDY_PBT, "--help"], prog_name="lrkit")
    assert r.exit_code == 0 and "Usage: lrkit study pbt" in r.output and "--hyperparams" in r.output and "--address" in r.output
    r = CliRunner().invoke(cli, [*STUDY_PBT, "--hyperparams", "lr,dropout"])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "parameter 'hyperparams' must be one of" in lines[0]
    r = CliRunner().invoke(cli, [*STUDY_PBT, "--lr-bounds", "0.1"])
    assert r.exit_code == 2 and "parameter '--lr-bounds' must be two numbers 'low,high'" in r.output
    r = CliRunner().invoke(cli, [*STUDY_PBT, "--population", "1"])
    assert r.exit_code == 2 and "--population" in r.output


# -- one real PBT on Ray --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # with `--dist loadgroup`: the Ray tests share one worker, one Ray at a time
def test_pbt_through_the_cli_on_ray(tmp_path: Path) -> None:
    """`lrkit study pbt` on blobs in a local Ray of 2 CPUs (started here, stopped at the end), then every check of its result.

    One test, so that the suite starts one Ray and runs one PBT whichever xdist worker gets it. Synchronous PBT: with
    2 trials the worse copies the better at every report (asynchronous PBT acts only on the trial that reports).
    """
    from lrkit.engine import ray_session

    args = [*STUDY_PBT, "--problem", "blobs", "--population", "2", "--epochs", "3", "--interval", "1", "--hyperparams", "lr,momentum",
            "--lr-bounds", ",".join(map(str, LR_BOUNDS)), "--synch", "--seed", "1", "--out", str(tmp_path)]  # fmt: skip
    with ray_session("tests", None, LabError, num_cpus=2):
        r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    result = PBTResult.load(tmp_path / FILES[0])
    check_cli_output(r.output, tmp_path, result)
    check_every_exported_spec(result)
    for trial in (None, copier(result)):
        check_replay(result, trial)
    check_bounds_and_exploits(result)
    check_tunes_policy_replay(result)
    check_plot(result)


def check_cli_output(output: str, out: Path, result: PBTResult) -> None:
    assert all((out / f).is_file() for f in FILES) and (out / TUNE_FOLDER).is_dir()
    assert (out / FILES[2]).read_text().strip() == result.spec
    assert f"best test loss {result.best.score:.4g}" in output
    assert len(result.trials) == 2 and result.hyperparams == ("lr", "momentum") and result.steps_per_epoch == 16
    assert PBTResult.from_json(result.to_json()).to_dict() == result.to_dict()


def copier(result: PBTResult) -> int:
    """A trial that copied another (synchronous PBT with 2 trials: there is one): its lr history has pieces."""
    return next(i for i, t in enumerate(result.trials) if t.lineage)


def check_every_exported_spec(result: PBTResult) -> None:
    """Each trial's exported lr spec parses back and gives the lr the trial used at every step."""
    steps = np.arange(result.epochs * result.steps_per_epoch)
    assert result.spec == repr(result.schedule())
    for i, t in enumerate(result.trials):
        schedule = lrkit.parse(repr(result.schedule("lr", i)))
        assert len(t.lrs) == len(steps) and np.array_equal(schedule.values(steps), t.lrs)  # bit for bit: the lr the trial used
    copy = result.trials[copier(result)]
    # the copy's lr moved off the donor's (x 1.2, x 0.8 or resampled): a new piece, unless clipping held it at a bound
    assert len(copy.lr_used) >= 2 or copy.lr_used[-1][1] in LR_BOUNDS


def check_replay(result: PBTResult, trial: int | None) -> None:
    """A replay from scratch (the winner's spec, or a copier's) follows the spec, on new weights."""
    (run,) = replay(result, seeds=[100], trial=trial)
    steps = np.arange(result.epochs * result.steps_per_epoch)
    assert np.array_equal(np.asarray(run.lrs), lrkit.parse(repr(result.schedule("lr", trial))).values(steps))
    momentum = result.schedule("momentum", trial)
    assert math.isclose(run.optimizer.param_groups[0]["momentum"], momentum(int(steps[-1]) + 1))
    original = result.best if trial is None else result.trials[trial]
    assert run.losses[-1] != original.curve[-1]  # a new run: PBT copied weights, the replay does not


def check_bounds_and_exploits(result: PBTResult) -> None:
    """Every value PBT set stays in its bounds (perturbations clipped); PBT copied trials, at report boundaries."""
    for t in result.trials:
        assert all(LR_BOUNDS[0] <= v <= LR_BOUNDS[1] for _, v in t.pieces["lr"]), t.pieces
        assert all(MOMENTUM_BOUNDS[0] <= v <= MOMENTUM_BOUNDS[1] for _, v in t.pieces["momentum"]), t.pieces
    exploits = [x for t in result.trials for x in t.lineage]
    ids = {t.trial_id for t in result.trials}
    assert exploits and all(step % result.steps_per_epoch == 0 and donor in ids for step, donor in exploits)


def check_tunes_policy_replay(result: PBTResult) -> None:
    """`PopulationBasedTrainingReplay` on Tune's policy log of each trial: the same values in the same order as lrkit's record.

    Tune logs a donor's `last_result` iteration, which is not yet updated while the scheduler handles the donor's own newest
    result (pbt.py: "The trial last result is only updated after the scheduler callback"): a change it logs may sit one
    interval before the checkpoint it handed over (at step 0 even, hiding the first value). lrkit's step is the restored
    checkpoint's own.
    """
    spacing = result.interval * result.steps_per_epoch
    checked = 0
    for i, t in enumerate(result.trials):
        replayed = policy_pieces(result, i)
        if not replayed:  # never copied another trial: one piece each
            assert all(len(t.pieces[h]) == 1 for h in result.hyperparams)
            continue
        checked += 1
        for h in result.hyperparams:
            theirs = [p for k, p in enumerate(replayed[h]) if k == 0 or p[1] != replayed[h][k - 1][1]]  # Tune lists every copy
            assert [v for _, v in t.pieces[h]] == [v for _, v in theirs], (h, t.pieces[h], theirs)
            assert all(0 <= ours - tunes <= spacing for (ours, _), (tunes, _) in zip(t.pieces[h], theirs, strict=True))
    assert checked >= 1


def check_plot(result: PBTResult) -> None:
    """The figure draws every trial's lr path, the winner's bold and labelled."""
    fig = result.plot()
    lines = fig.axes[0].get_lines()
    assert f"winner {result.best.trial_id}" in [line.get_label() for line in lines]
    assert max(line.get_linewidth() for line in lines) > 2
