"""lrkit.Scheduler driving real torch optimizers: closed form, groups, momentum, tensor lrs, GradScaler, resume."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR  # noqa: E402

import lrkit  # noqa: E402

SCHEDULES = [
    lrkit.warmup(lrkit.cosine(start=0.1, steps=30), steps=5),
    lrkit.one_cycle(peak=0.5, total_steps=40, three_phase=True),
    lrkit.sgdr(start=0.2, first_cycle=3, cycle_mult=2),
    lrkit.per_epoch(lrkit.step_decay(start=1.0, factor=0.5, every=2), steps_per_epoch=4),
    0.5 * lrkit.cyclic(low=0.1, high=1.0, half_cycle=4, mode="triangular2"),
]


def params(n: int = 2) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(2)) for _ in range(n)]


def two_groups() -> list[dict[str, Any]]:
    return [{"params": [p]} for p in params(2)]


def train(opt: torch.optim.Optimizer, sched: LRScheduler, steps: int) -> list[list[float]]:
    """Run `steps` optimizer updates; the lrs of every group used at each update."""
    used = []
    for _ in range(steps):
        used.append([float(g["lr"]) for g in opt.param_groups])
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.full_like(p, 0.1)
        opt.step()
        sched.step()
    return used


def test_is_a_torch_lr_scheduler() -> None:
    opt = torch.optim.SGD(params(1), lr=0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1))
    assert isinstance(sched, LRScheduler) and sched.optimizer is opt


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_lr_after_n_steps_is_the_closed_form(schedule: lrkit.Schedule) -> None:
    opt = torch.optim.SGD(params(1), lr=123.0)
    sched = lrkit.Scheduler(opt, lr=schedule)
    assert sched.last_epoch == 0 and opt.param_groups[0]["lr"] == schedule(0)  # built = step 0
    used = train(opt, sched, 45)
    assert [u[0] for u in used] == [schedule(n) for n in range(45)]
    assert sched.last_epoch == 45 and sched.get_last_lr() == [schedule(45)]


def test_groups_keep_their_ratios_to_the_first_group() -> None:
    groups = params(3)
    opt = torch.optim.SGD(
        [{"params": [groups[0]], "lr": 0.1}, {"params": [groups[1]], "lr": 0.01}, {"params": [groups[2]], "lr": 0.4}], lr=0.1
    )
    s = lrkit.cosine(start=1.0, steps=20)
    sched = lrkit.Scheduler(opt, lr=s)
    used = train(opt, sched, 25)
    for n, lrs in enumerate(used):
        assert lrs == pytest.approx([s(n), s(n) * 0.1, s(n) * 4.0], rel=1e-15)
        assert lrs[0] == s(n)


def test_group_scales_override_the_ratios() -> None:
    a, b = params(2)
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    s = lrkit.linear(start=0.2, end=0.0, steps=10)
    sched = lrkit.Scheduler(opt, lr=s, group_scales=[0.5, 3.0])
    for n, lrs in enumerate(train(opt, sched, 12)):
        assert lrs == [s(n) * 0.5, s(n) * 3.0]


def test_ratios_survive_an_optimizer_reloaded_at_a_zero_lr() -> None:
    """Saved at step 0 of a warmup from 0, every lr is 0: the ratios come from torch's "initial_lr"."""
    a, b = params(2)
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    s = lrkit.warmup(lrkit.constant(0.1), steps=4)
    lrkit.Scheduler(opt, lr=s)
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]
    fresh = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 1.0}])
    fresh.load_state_dict(opt.state_dict())
    sched = lrkit.Scheduler(fresh, lr=s)
    train(fresh, sched, 4)
    assert sched.get_last_lr() == pytest.approx([0.1, 0.01], rel=1e-15)


def test_get_last_lr_tells_the_truth() -> None:
    opt = torch.optim.SGD(two_groups(), lr=0.3)
    sched = lrkit.Scheduler(opt, lr=lrkit.exponential(start=0.3, rate=0.9))
    for _ in range(5):
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        train(opt, sched, 1)
    assert sched.get_last_lr() == [pytest.approx(0.3 * 0.9**5, rel=1e-14)] * 2


def test_sgd_momentum_follows_its_schedule() -> None:
    opt = torch.optim.SGD(two_groups(), lr=0.1, momentum=0.9)
    m = lrkit.cyclic(low=0.85, high=0.95, half_cycle=3)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), momentum=m)
    for n in range(8):
        assert [g["momentum"] for g in opt.param_groups] == [m(n)] * 2
        train(opt, sched, 1)


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam])
def test_adam_beta1_follows_the_momentum_schedule(cls: type[torch.optim.Optimizer]) -> None:
    opt = cls(params(1), lr=0.01, betas=(0.9, 0.98))
    m = lrkit.linear(start=0.95, end=0.85, steps=4)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.01), momentum=m)
    for n in range(6):
        assert opt.param_groups[0]["betas"] == (m(n), 0.98)
        train(opt, sched, 1)


@pytest.mark.parametrize("cls", [torch.optim.Rprop, torch.optim.Adadelta, torch.optim.Adagrad])
def test_momentum_for_an_optimizer_without_it_is_an_error(cls: type[torch.optim.Optimizer]) -> None:
    opt = cls(params(1))
    assert "momentum" not in opt.param_groups[0] and "betas" not in opt.param_groups[0]
    with pytest.raises(lrkit.ScheduleError, match=rf"^Scheduler: parameter 'momentum' .*{cls.__name__} has neither"):
        lrkit.Scheduler(opt, lr=lrkit.constant(0.1), momentum=lrkit.constant(0.9))
    lrkit.Scheduler(opt, lr=lrkit.constant(0.1))  # without momentum it is fine


def test_tensor_lr_is_filled_in_place_and_compiled_steps_do_not_recompile() -> None:
    from torch._dynamo.utils import counters

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=torch.tensor(0.1, dtype=torch.float64))
    lr = opt.param_groups[0]["lr"]
    s = lrkit.linear(start=0.1, end=0.0, steps=10)
    sched = lrkit.Scheduler(opt, lr=s)

    @torch.compile(backend="eager")
    def update() -> None:
        opt.step()

    counters.clear()
    expected = 1.0
    for n in range(5):
        assert opt.param_groups[0]["lr"] is lr and lr.item() == s(n)
        w.grad = torch.ones(3)
        update()
        sched.step()
        expected -= s(n)
        assert w.detach().tolist() == pytest.approx([expected] * 3, rel=1e-6)
    assert sched.get_last_lr() == [s(5)] and opt.param_groups[0]["lr"] is lr
    assert counters["stats"]["unique_graphs"] == 1


def test_a_float32_tensor_lr_reports_the_value_it_really_holds() -> None:
    opt = torch.optim.SGD(params(1), lr=torch.tensor(0.1))
    lr = opt.param_groups[0]["lr"]
    s = lrkit.cosine(start=0.1, steps=7)
    sched = lrkit.Scheduler(opt, lr=s)
    for n in range(1, 5):
        train(opt, sched, 1)
        assert opt.param_groups[0]["lr"] is lr and lr.dtype == torch.float32
        assert sched.get_last_lr() == [lr.item()] and lr.item() == pytest.approx(s(n), rel=1e-7)


def test_tensor_betas_are_filled_in_place() -> None:
    beta1 = torch.tensor(0.9)
    opt = torch.optim.Adam(params(1), lr=torch.tensor(0.01), betas=(beta1, torch.tensor(0.99)))
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.01), momentum=lrkit.linear(start=0.95, end=0.85, steps=2))
    train(opt, sched, 1)
    assert opt.param_groups[0]["betas"][0] is beta1 and beta1.item() == pytest.approx(0.9, rel=1e-6)


def test_past_the_end_the_last_value_holds() -> None:
    opt = torch.optim.SGD(params(1), lr=0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.one_cycle(peak=0.1, total_steps=10))
    used = train(opt, sched, 40)
    assert [u[0] for u in used[9:]] == [used[9][0]] * 31 and used[9][0] == pytest.approx(0.1 / 25 / 1e4, rel=1e-12)


def test_steps_without_an_optimizer_step_do_not_count() -> None:
    opt = torch.optim.SGD(params(1), lr=0.1)
    s = lrkit.linear(start=0.1, end=0.0, steps=10)
    sched = lrkit.Scheduler(opt, lr=s)
    sched.step()
    sched.step()
    assert sched.last_epoch == 0 and sched.get_last_lr() == [0.1]
    train(opt, sched, 1)
    assert sched.last_epoch == 1
    free = lrkit.Scheduler(torch.optim.SGD(params(1), lr=0.1), lr=s, follow_optimizer=False)
    free.step()
    free.step()
    assert free.last_epoch == 2 and free.get_last_lr() == [s(2)]


def _scaled_steps(opt: torch.optim.Optimizer, sched: LRScheduler, w: torch.nn.Parameter, infinite: list[bool]) -> list[float]:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    lrs = []
    for bad in infinite:
        opt.zero_grad()
        loss = (w * (torch.inf if bad else 1.0)).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_a_step_skipped_by_gradscaler_does_not_advance_nor_warn() -> None:
    s = lrkit.linear(start=0.1, end=0.0, steps=10)
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = lrkit.Scheduler(opt, lr=s)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lrs = _scaled_steps(opt, sched, w, [True, False, True, True, False, False])
    assert lrs == [s(0), s(1), s(1), s(1), s(2), s(3)] and sched.last_epoch == 3
    assert not [w for w in caught if "optimizer.step()" in str(w.message)], [str(w.message) for w in caught]
    # torch's own scheduler, in the same loop, does warn (so the check above can fail)
    w2 = torch.nn.Parameter(torch.ones(2))
    opt2 = torch.optim.SGD([w2], lr=0.1)
    torch_sched = OneCycleLR(opt2, 0.1, total_steps=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _scaled_steps(opt2, torch_sched, w2, [True, False])
    assert [w for w in caught if "before `optimizer.step()`" in str(w.message)]


def test_state_dict_is_a_small_whitelist() -> None:
    opt = torch.optim.SGD(params(2), lr=0.1, momentum=0.9)
    sched = lrkit.Scheduler(opt, lr=lrkit.cosine(0.1, 100), momentum=lrkit.constant(0.9))
    train(opt, sched, 7)
    state = sched.state_dict()
    assert set(state) == {"step", "step_count", "multiplier", "plateau", "stepped"}
    assert state["step"] == 7 and state["multiplier"] == 1.0 and state["plateau"] is None
    assert json.loads(json.dumps(state)) == state  # plain data: no schedule, optimizer, tensor or table


def test_step_with_an_epoch_is_an_error() -> None:
    sched = lrkit.Scheduler(torch.optim.SGD(params(1), lr=0.1), lr=lrkit.constant(0.1))
    with pytest.raises(lrkit.ScheduleError, match=r"^Scheduler\.step: parameter 'epoch' .*per_epoch.*got 3$"):
        sched.step(3)


SETUP = """
import torch, lrkit
torch.manual_seed(0)
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 0.02}], lr=0.1, momentum=0.9)
lr = lrkit.parse("warmup(one_cycle(peak=0.1, total_steps=40, three_phase=True), steps=7)")
sched = lrkit.Scheduler(opt, lr=lr, momentum=lrkit.cyclic(low=0.85, high=0.95, half_cycle=5))
x = torch.linspace(-1, 1, 32).reshape(8, 4)

def run(steps):
    out = []
    for _ in range(steps):
        out.append([[g["lr"], g["momentum"]] for g in opt.param_groups])
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sched.step()
    return out
"""


def test_resume_in_a_new_process_gives_the_same_lrs(tmp_path: Path) -> None:
    total, k = 50, 23
    space: dict[str, Any] = {}
    exec(SETUP, space)
    unbroken = space["run"](total)
    exec(SETUP, space)
    space["run"](k)
    torch.save(
        {"model": space["model"].state_dict(), "opt": space["opt"].state_dict(), "sched": space["sched"].state_dict()}, tmp_path / "ckpt.pt"
    )
    resume = SETUP + textwrap.dedent(f"""
        import json, sys
        ckpt = torch.load(sys.argv[1])
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        print(json.dumps({{"lrs": run({total - k}), "weight": model.weight.tolist()}}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", resume, str(tmp_path / "ckpt.pt")], capture_output=True, text=True, timeout=120, check=True
    )
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    assert resumed["lrs"] == unbroken[k:]
    exec(SETUP, space)
    space["run"](total)
    assert resumed["weight"] == space["model"].weight.tolist()


LOOP = """
import torch, lrkit
METRICS = [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7]
x = torch.linspace(-1, 1, 32).reshape(8, 4)
EVENTS = [(kind, i) for i in range(40) for kind in ("opt_step", "sched_step", "observe") if kind != "observe" or i % 4 == 3]

def build(plateau):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lr = lrkit.warmup(lrkit.cosine(start=0.1, steps=40), steps=5)
    sched = lrkit.Scheduler(opt, lr=lr, plateau=lrkit.Plateau(patience=0, factor=0.5) if plateau else None)
    return model, opt, sched

def run(model, opt, sched, first, on_event=None):
    \"\"\"Play EVENTS[first:]; the lr of each optimizer step by event index.\"\"\"
    lrs = {}
    for e in range(first, len(EVENTS)):
        kind, i = EVENTS[e]
        if kind == "opt_step":
            lrs[e] = opt.param_groups[0]["lr"]
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        elif kind == "sched_step":
            sched.step()
        elif sched.plateau is not None:
            sched.observe(METRICS[i // 4])
        if on_event is not None:
            on_event(e)
    return lrs
"""


@pytest.mark.parametrize("plateau", [False, True], ids=["plain", "plateau"])
def test_checkpoint_at_every_point_of_the_loop_resumes_exactly_in_a_new_process(tmp_path: Path, plateau: bool) -> None:
    """Before: a checkpoint between opt.step() and sched.step() resumed one step behind for the rest of the run."""
    space: dict[str, Any] = {}
    exec(LOOP, space)
    events = space["EVENTS"]
    cuts = {kind: next(e for e, (k, i) in enumerate(events) if k == kind and i >= 9) for kind in ("opt_step", "sched_step", "observe")}
    model, opt, sched = space["build"](plateau)

    def save(e: int) -> None:
        if e in cuts.values():
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}
            torch.save(state, tmp_path / f"{e}.pt")

    unbroken = space["run"](model, opt, sched, 0, save)
    assert sched.plateau_state is None or sched.plateau_state.changes > 0  # the plateau really acted
    resume = LOOP + textwrap.dedent(f"""
        import json, sys
        out = {{}}
        for e in {sorted(cuts.values())}:
            model, opt, sched = build({plateau})
            ckpt = torch.load(sys.argv[1] + f"/{{e}}.pt")
            model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["opt"]); sched.load_state_dict(ckpt["sched"])
            out[e] = run(model, opt, sched, e + 1)
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", resume, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    for kind, e in cuts.items():
        expected = {str(k): v for k, v in unbroken.items() if k > e}
        assert resumed[str(e)] == expected, kind


def test_a_state_dict_without_the_stepped_flag_still_loads() -> None:
    opt = torch.optim.SGD(params(1), lr=0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.linear(start=0.1, end=0.0, steps=10))
    old = {"step": 4, "step_count": 5, "multiplier": 0.5, "plateau": None}
    sched.load_state_dict(old)
    assert sched.last_epoch == 4 and sched.get_last_lr()[0] == pytest.approx(0.5 * 0.06)
    sched.step()  # not stepped since the save: stays at step 4 (the old behaviour for old states)
    assert sched.last_epoch == 4


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"step": "abc"}, TypeError, "'step' must be an integer >= 0, got 'abc'"),
        ({"step": -2}, lrkit.ScheduleError, "'step' must be an integer >= 0, got -2"),
        ({"step_count": 1.5}, TypeError, "'step_count'"),
        ({"multiplier": float("nan")}, lrkit.ScheduleError, "'multiplier' must be finite, got nan"),
        ({"multiplier": -1.0}, lrkit.ScheduleError, "'multiplier' must be >= 0"),
        ({"multiplier": "x"}, TypeError, "'multiplier'"),
        ({"stepped": "yes"}, TypeError, "'stepped' must be True or False"),
        ({"extra": 1}, lrkit.ScheduleError, r"unknown keys \['extra'\]"),
        ({"plateau": {"scale": float("nan")}}, lrkit.ScheduleError, "'plateau.scale' must be finite"),
        ({"plateau": {"scale": "0.5"}}, TypeError, "'plateau.scale'"),
        ({"plateau": {"nosuch": 1}}, lrkit.ScheduleError, r"unknown keys \['nosuch'\]"),
        ({"plateau": [1.0]}, TypeError, "'plateau' must be a dict"),
    ],
)
def test_load_state_dict_rejects_bad_states_and_keeps_the_old_one(change: dict[str, Any], error: type, match: str) -> None:
    opt = torch.optim.SGD(params(1), lr=0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), plateau=lrkit.Plateau())
    before = sched.state_dict()
    state = before | change
    if "plateau" in change and isinstance(change["plateau"], dict):
        state["plateau"] = before["plateau"] | change["plateau"]
    with pytest.raises(error, match=match) as info:
        sched.load_state_dict(state)
    assert isinstance(info.value, lrkit.ScheduleError) and sched.state_dict() == before


@pytest.mark.parametrize(
    "cls, momentum, step",
    [
        (torch.optim.SGD, lrkit.constant(5.0), 0),
        (torch.optim.Adam, lrkit.constant(1.5), 0),
        (torch.optim.SGD, lrkit.constant(1.0), 0),
        (torch.optim.Adam, lrkit.linear(start=0.9, end=1.0, steps=10), 10),
        (torch.optim.SGD, lrkit.linear(start=0.5, end=1.5, steps=10000), 5000),
    ],
)
def test_momentum_and_beta1_outside_zero_one_are_refused_at_the_step_they_arrive(cls: type, momentum: lrkit.Schedule, step: int) -> None:
    """Before: momentum=constant(5.0) set SGD momentum to 5 and Adam's beta1 to 1.5."""
    opt = cls(params(1), lr=0.1, **({"momentum": 0.9} if cls is torch.optim.SGD else {}))
    with pytest.raises(lrkit.ScheduleError, match=rf"^Scheduler: parameter 'momentum' must stay in \[0, 1\) at every step \(step {step}\)"):
        sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), momentum=momentum)
        for _ in range(12000):
            opt.step()
            sched.step()
    assert float(opt.param_groups[0].get("momentum", opt.param_groups[0].get("betas", [0])[0])) < 1


def test_lr_schedule_values_must_be_finite_and_non_negative() -> None:
    import numpy as np

    class Broken(lrkit.Schedule):  # a user's schedule that turns NaN at step 5000
        def _values(self, t: Any) -> Any:
            return np.where(t < 5000, 0.1, np.nan)

    opt = torch.optim.SGD(params(1), lr=0.1)
    sched = lrkit.Scheduler(opt, lr=Broken())
    with pytest.raises(lrkit.ScheduleError, match=r"'lr' must stay in \[0, inf\) \(finite, >= 0\) at every step \(step 5000\)"):
        for _ in range(6000):
            opt.step()
            sched.step()
    assert opt.param_groups[0]["lr"] == 0.1  # no NaN lr was written
