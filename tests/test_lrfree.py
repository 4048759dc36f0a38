"""The lr-free comparison: effective-lr readings against each optimizer's own internal state, Schedule-Free's
train/eval switching, the plain runs against the lab's population, the result, the report and the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result

from lrkit.errors import LabError
from lrkit.lab.lrfree import compare_lr_free, train_plain, tune
from lrkit.lab.lrfree_optim import OPTIMIZERS, group_snapshot, make_optimizer, step_readings
from lrkit.lab.lrfree_result import LRFreeResult
from lrkit.lab.population import Member, train
from lrkit.lab.problems import get_problem
from lrkit.optim import Optim
from lrkit.torch.data import epoch_batches

RunCli = Callable[..., Result]
STEPS = 400


def _net() -> torch.nn.Module:
    torch.manual_seed(0)  # float64: a step's size is read from p_new − p_old, which float32 rounds at 1e-7 of |p|
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()


def _steps(name: str, **options: object) -> Iterator[tuple[torch.optim.Optimizer, dict[str, float], list[dict[str, torch.Tensor]]]]:
    """STEPS noisy regression steps of optimizer `name`; yields the optimizer, the step's readings and per parameter
    its gradient and the internal state before and after the step."""
    model = _net()
    opt = make_optimizer(name, model.parameters(), **options)  # type: ignore[arg-type]
    if hasattr(opt, "train"):
        opt.train()
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 2, generator=g, dtype=torch.float64)
    for _ in range(STEPS):
        x = torch.randn(16, 4, generator=g, dtype=torch.float64)
        loss = ((model(x) - x @ w) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        params = list(model.parameters())
        old = [{"p": p.detach().clone(), "grad": p.grad.clone(), **{k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}}
               for p in params]  # fmt: skip
        before = group_snapshot(opt)
        opt.step()
        readings = step_readings(name, before, group_snapshot(opt))
        new = [{"p": p.detach().clone(), **{k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}} for p in params]
        yield opt, readings, [{**{f"old_{k}": v for k, v in o.items()}, **n} for o, n in zip(old, new)]


@pytest.mark.parametrize("bias_correction", [False, True])
def test_prodigy_reading_is_the_step_size_it_applied(bias_correction: bool) -> None:
    # Prodigy: p -= d·lr·bc · m / (sqrt(v) + d'·eps), m and v already scaled by d; the d of before the step sets the
    # step size, the updated d' only the epsilon: the reading must be that d·lr·bc
    for opt, r, tensors in _steps("prodigy", use_bias_correction=bias_correction):
        eps, d_new = opt.param_groups[0]["eps"], opt.param_groups[0]["d"]
        for t in tensors:
            step = -r["effective_lr"] * t["exp_avg"] / (t["exp_avg_sq"].sqrt() + d_new * eps)
            torch.testing.assert_close(t["p"] - t["old_p"], step, rtol=1e-7, atol=1e-12)
    assert r["effective_lr"] > 100 * 1e-6  # d grew from d0 = 1e-6: the lr of 1.0 is not what it applied


def test_dadapt_adam_reading_is_the_dlr_in_its_first_moment() -> None:
    # D-Adapt Adam folds d·lr into its first moment: m = β1·m + d·lr·(1−β1)·g (m is made, zero, on the first step)
    for opt, r, tensors in _steps("dadapt_adam"):
        beta1 = opt.param_groups[0]["betas"][0]
        for t in tensors:
            old = t.get("old_exp_avg", 0 * t["exp_avg"])
            torch.testing.assert_close(t["exp_avg"] - beta1 * old, r["effective_lr"] * (1 - beta1) * t["old_grad"], rtol=1e-7, atol=1e-14)
    assert r["effective_lr"] > 1e-4


def test_dadapt_sgd_reading_is_the_step_on_its_dual_sum() -> None:
    # D-Adapt SGD: s += d·lr/‖g0‖ · g (and z = x0 − s): the reading is the SGD step on z
    for _, r, tensors in _steps("dadapt_sgd"):
        for t in tensors:
            torch.testing.assert_close(t["s"] - t.get("old_s", 0 * t["s"]), r["effective_lr"] * t["old_grad"], rtol=1e-7, atol=1e-14)
    assert r["effective_lr"] > 1e-4


@pytest.mark.parametrize("name", ["dog", "ldog"])
def test_dog_reading_is_its_eta(name: str) -> None:
    for opt, r, tensors in _steps(name):
        etas = [float(e) for e in opt.param_groups[0]["eta"]]
        for t, eta in zip(tensors, etas):
            torch.testing.assert_close(t["p"] - t["old_p"], -eta * t["old_grad"], rtol=1e-7, atol=1e-12)
        assert r["effective_lr"] == pytest.approx(float(np.median(etas)))
        if name == "dog":
            assert len(set(etas)) == 1
    assert name == "dog" or len(set(etas)) > 1  # LDoG: one η per layer, the reading their median


@pytest.mark.parametrize("name", ["sgd_schedulefree", "adamw_schedulefree"])
@pytest.mark.parametrize("warmup", [0, 50])
def test_schedule_free_readings_match_its_average_and_z(name: str, warmup: int) -> None:
    # train mode holds y = (1−β)·z + β·x; the evaluation point x moves to the new z with the averaging weight c
    for k, (opt, r, tensors) in enumerate(_steps(name, warmup_steps=warmup)):
        group = opt.param_groups[0]
        beta = group["momentum"] if "momentum" in group else group["betas"][0]
        assert r["effective_lr"] == pytest.approx(group["lr"] * min(1.0, (k + 1) / warmup) if warmup else group["lr"])
        for t in tensors:
            old_z = t.get("old_z", t["old_p"])  # z is made, a copy of the weights, on the first step
            x_old, x_new = ((y - (1 - beta) * z) / beta for y, z in ((t["old_p"], old_z), (t["p"], t["z"])))
            torch.testing.assert_close(x_new, (1 - r["averaging_weight"]) * x_old + r["averaging_weight"] * t["z"], rtol=1e-7, atol=1e-10)
            if name == "sgd_schedulefree":
                torch.testing.assert_close(t["z"] - t.get("old_z", t["old_p"]), -r["effective_lr"] * t["old_grad"], rtol=1e-7, atol=1e-12)
    assert r["averaging_weight"] < 1 / STEPS * 1.01 if not warmup else r["averaging_weight"] < 0.01


def test_plain_torch_reading_is_group_lr() -> None:
    for _, r, _ in _steps("nadamw", lr=3e-3):
        assert r == {"effective_lr": 3e-3}


def test_schedule_free_run_is_evaluated_in_eval_mode_and_train_mode_differs() -> None:
    problem = get_problem("blobs")
    run = train_plain(problem, "adamw_schedulefree", seed=1, epochs=3)
    # the same run by hand, with the package's own documented switching
    import schedulefree

    torch.manual_seed(1)
    model = problem.make_model()
    opt = schedulefree.AdamWScheduleFree(model.parameters())
    eval_losses, train_losses = [], []
    batches = epoch_batches(problem.x_train, problem.y_train, problem.batch_size, 1, 3)
    for _ in range(3):
        opt.train()
        for _ in range(16):
            xb, yb = next(batches)
            opt.zero_grad()
            problem.loss(model(xb), yb).backward()
            opt.step()
        with torch.no_grad():
            train_losses.append(float(problem.loss(model(problem.x_test), problem.y_test)))
            opt.eval()
            eval_losses.append(float(problem.loss(model(problem.x_test), problem.y_test)))
    np.testing.assert_allclose(run.test_loss, eval_losses, rtol=1e-5)
    np.testing.assert_allclose(run.test_loss_train_mode, train_losses, rtol=1e-5)
    assert np.abs(run.test_loss - run.test_loss_train_mode).min() > 1e-4
    assert np.isnan(train_plain(problem, "prodigy", epochs=1).test_loss_train_mode).all()


def test_plain_baseline_run_is_the_population_member() -> None:
    # the same initialization and minibatch order as the lab's batched trainer: the tuned lr means the same run
    problem = get_problem("digits")
    plain = train_plain(problem, "sgd_momentum", seed=2, epochs=3, lr=0.05)
    member = train(problem, [Member(lr=0.05, optimizer=Optim("sgd", momentum=0.9), seed=2)], epochs=3)
    np.testing.assert_allclose(plain.test_loss, member.test_loss[0], rtol=1e-4)
    np.testing.assert_allclose(plain.train_loss, member.train_loss[0], rtol=1e-4)
    np.testing.assert_allclose(plain.test_acc, member.test_acc[0], atol=1e-6)


@pytest.mark.parametrize("name", ["nadamw", "adam"])
def test_tune_picks_the_lowest_mean_final_test_loss(name: str) -> None:
    problem = get_problem("blobs")
    tuning, runs = tune(problem, name, [1e-5, 1e-2], seeds=2, epochs=2)
    assert tuning.chosen == 1e-2 and tuning.scores[0] > tuning.scores[1]
    assert tuning.how == ("plain" if name == "nadamw" else "population") and len(runs) == (4 if name == "nadamw" else 0)
    if runs:  # the plain grid's scores are its runs' mean final test loss
        assert tuning.scores[1] == pytest.approx(np.mean([r.test_loss[-1] for r in runs if r.lr == 1e-2]))


def test_diverged_run_is_marked_and_padded_and_never_chosen() -> None:
    problem = get_problem("blobs")
    run = train_plain(problem, "sgd_momentum", epochs=3, lr=1e6)
    assert run.diverged_epoch >= 1 and np.isnan(run.test_loss[run.diverged_epoch - 1 :]).all()
    tuning, _ = tune(problem, "nadamw", [1e-2, 1e6], seeds=1, epochs=2)
    assert tuning.chosen == 1e-2


def test_result_round_trips_and_report_is_written(tmp_path: Path) -> None:
    r = compare_lr_free(["blobs"], seeds=2, epochs=2, optimizers=["adam", "sgd_schedulefree", "prodigy"], grids={"adam": [1e-3, 1e-2]},
                        out=tmp_path)  # fmt: skip
    names = {p.name for p in tmp_path.iterdir()}
    assert {"lr-free.json", "lr-free-report.md", "lr-free-test-loss-blobs.png", "lr-free-effective-lr-blobs.png"} <= names
    back = LRFreeResult.load(tmp_path / "lr-free.json")
    assert back.summary() == r.summary() and back.tunings == r.tunings
    for a, b in zip(r.runs, back.runs):
        np.testing.assert_array_equal(a.steps["effective_lr"], b.steps["effective_lr"])
        np.testing.assert_array_equal(a.test_loss_train_mode, b.test_loss_train_mode)
    report = (tmp_path / "lr-free-report.md").read_text()
    assert "| prodigy |" in report and "if evaluated in train mode" in report and "population" in report
    [prodigy] = [row for row in r.summary() if row["optimizer"] == "prodigy"]
    assert prodigy["lr"] == 1.0 and prodigy["final_effective_lr"] < 0.5  # the logged lr of 1.0 is not the step size
    with pytest.raises(LabError, match=r"LRFreeResult\.from_dict"):
        LRFreeResult.from_json(json.dumps({"kind": "other"}))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizers": ["nope"]}, "'optimizers' must be one of"),
        ({"optimizers": ["dog", "dog"]}, "distinct"),
        ({"grids": {"prodigy": [1.0]}}, "'grids'"),
        ({"grids": {"adam": [-1.0]}}, "'grids'"),
        ({"seeds": 0}, "'seeds'"),
        ({"problems": []}, "'problems'"),
        ({"options": {"prodigy": {"nope": 1}}, "optimizers": ["prodigy"]}, "'options'"),
    ],
)
def test_bad_input_is_a_clear_lab_error(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"problems": ["blobs"], "epochs": 1, "seeds": 1, **kwargs}
    with pytest.raises(LabError, match=match):
        compare_lr_free(**args)  # type: ignore[arg-type]


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # what `import prodigyopt` meets when it is not installed
    with pytest.raises(LabError, match=r"needs the package 'prodigyopt' \(pip install lrkit\[lrfree\]\)"):
        compare_lr_free(["blobs"], epochs=1, optimizers=["prodigy"])
    with pytest.raises(LabError, match="lr"):
        make_optimizer("adam", [torch.zeros(1, requires_grad=True)])  # a tuned baseline needs its lr
    assert set(OPTIMIZERS) >= {"sgd_schedulefree", "adamw_schedulefree", "prodigy", "dadapt_sgd", "dadapt_adam", "dog", "ldog", "nadamw"}


def test_cli_runs_writes_and_refuses_mistakes_with_one_line(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = run_cli("study", "lr-free", "--problems", "blobs,moons", "--seeds", "1", "--epochs", "1", "--optimizers", "dog,adamw_schedulefree",
                 "--out", tmp_path)  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "lr-free-report.md" in ok.output and (tmp_path / "lr-free-effective-lr-moons.png").is_file()
    assert LRFreeResult.load(tmp_path / "lr-free.json").spec["problems"] == ["blobs", "moons"]
    assert run_cli("study", "lr-free", "--help").exit_code == 0
    for args in (["--optimizers", "nope"], ["--problems", "nope"], ["--seeds", "0"], ["--out", "/proc/lrkit-nope"]):
        bad = run_cli("study", "lr-free", "--epochs", "1", *args)
        assert bad.exit_code == 2 and "Traceback" not in bad.output, bad.output
    monkeypatch.setitem(sys.modules, "dog", None)
    missing = run_cli("study", "lr-free", "--optimizers", "dog", "--out", tmp_path)
    assert missing.exit_code == 2 and missing.output.strip().count("\n") == 0 and "pip install lrkit[lrfree]" in missing.output
    assert run_cli("study", "--seeds", "2", "lr-free").exit_code == 2  # lr-free's options come after its name
