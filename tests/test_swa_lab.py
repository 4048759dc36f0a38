"""Weight averaging in the lab's population: a member's stacked average equals `AveragedModel` on its plain run.

The plain run is the one conftest's `reference_run` stands for (torch.manual_seed, the problem's model,
`Optim.to_torch`, `lrkit.Scheduler`, `MinibatchOrder`), with `torch.optim.swa_utils` averaging on top.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

import lrkit
from lrkit.errors import LabError
from lrkit.lab import population
from lrkit.lab.averaging import StackedAverage
from lrkit.lab.optim import Optim
from lrkit.lab.population import Member, train
from lrkit.lab.problems import Problem, get_problem
from lrkit.lab.stacked import StackedModel
from lrkit.schedules import Averaging
from lrkit.torch.data import MinibatchOrder


def plain_averaged_run(problem: Problem, member: Member, epochs: int) -> tuple[AveragedModel, list[float]]:
    """The member's plain PyTorch run with AveragedModel (+ update_bn over the training set in order): the average, its test losses."""
    plan = member.average
    assert plan is not None
    x, y = problem.x_train, problem.y_train
    torch.manual_seed(member.seed)
    model = problem.make_model()
    opt = member.optimizer.to_torch(model.parameters(), lr=1.0)
    sched = lrkit.Scheduler(opt, lr=member.lr)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(plan.decay) if plan.kind == "ema" else None)
    order, t, losses = MinibatchOrder(len(x), member.seed), 0, []
    for _ in range(epochs):
        model.train()
        for idx in order.epoch(problem.batch_size):
            opt.zero_grad()
            problem.loss(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
            if t >= plan.start and (t - plan.start) % plan.every == 0:
                averaged.update_parameters(model)
            t += 1
        update_bn([x[i : i + problem.batch_size] for i in range(0, len(x), problem.batch_size)], averaged)
        averaged.eval()
        with torch.no_grad():
            losses.append(float(problem.loss(averaged(problem.x_test), problem.y_test)))
        averaged.train()
    return averaged, losses


def population_averages(problem: Problem, members: list[Member], epochs: int) -> tuple[population.PopulationResult, list[torch.Tensor]]:
    """Train the population, reading the stacked averaged weights at the end (a hook on `_Run.result`, as test_lab_population does)."""
    captured: list[list[torch.Tensor]] = []
    original = population._Run.result

    def result(self: population._Run) -> population.PopulationResult:
        captured.append([p.clone() for p in self.averages.params])
        return original(self)

    population._Run.result = result  # type: ignore[method-assign]
    try:
        r = train(problem, members, epochs=epochs)
    finally:
        population._Run.result = original  # type: ignore[method-assign]
    return r, captured[0]


def assert_members_match(problem: Problem, members: list[Member], epochs: int) -> None:
    r, stacked = population_averages(problem, members, epochs)
    for i, member in enumerate(members):
        if member.average is None:
            continue
        averaged, losses = plain_averaged_run(problem, member, epochs)
        for got, want in zip(stacked, averaged.module.parameters()):
            torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-5, msg=f"member {i}: {member}")
        first = int(np.argmax(r.updates > member.average.start))  # the first epoch that ends with an entry in the average
        np.testing.assert_allclose(r.test_loss[i, first:], losses[first:], rtol=1e-4, atol=1e-6, err_msg=f"member {i}")


def test_mlp_members_swa_and_ema_equal_averaged_model() -> None:
    p = get_problem("blobs")  # 16 steps an epoch
    members = [
        Member(lr=0.01, seed=0, average=Averaging(start=40, every=16)),
        Member(lr=lrkit.cosine(start=0.02, steps=96), optimizer=Optim("sgd", momentum=0.9), seed=1, average=Averaging(start=10)),
        Member(lr=0.01, optimizer=Optim("adam"), seed=2, average=Averaging(kind="ema", decay=0.9)),
        Member(lr=0.05, seed=3),
    ]
    assert StackedModel(p, [0]).fast
    assert_members_match(p, members, epochs=6)


def _bn_problem() -> Problem:
    """A small problem whose net has BatchNorm (the vmapped path): the average's statistics must be recomputed."""
    p = get_problem("moons")

    def make_model() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    return dataclasses.replace(p, x_train=p.x_train[:160], y_train=p.y_train[:160], make_model=make_model)


def test_batchnorm_members_equal_averaged_model_with_update_bn() -> None:
    p = _bn_problem()
    assert not StackedModel(p, [0]).fast
    members = [
        Member(lr=0.1, seed=0, average=Averaging(start=14, every=5)),
        Member(lr=0.1, seed=1, average=Averaging(kind="ema", decay=0.8)),
    ]
    assert_members_match(p, members, epochs=4)


def test_members_without_averaging_are_bit_identical() -> None:
    p = get_problem("blobs")
    plain = [Member(lr=0.05, seed=0), Member(lr=0.02, optimizer=Optim("adam"), seed=1)]
    alone = train(p, plain, epochs=3)
    mixed = train(p, [*plain, Member(lr=0.05, seed=0, average=Averaging(start=0))], epochs=3)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "momentum"):
        np.testing.assert_array_equal(getattr(mixed, key)[:2], getattr(alone, key), err_msg=key)
    # the averaging member trained exactly as member 0 did; only its evaluated weights differ
    np.testing.assert_array_equal(mixed.train_loss[2], alone.train_loss[0])
    assert not np.array_equal(mixed.test_loss[2], alone.test_loss[0])


@pytest.mark.parametrize("kind", ["swa", "ema"])
def test_stacked_average_of_snapshots_equals_averaged_model_exactly(kind: str) -> None:
    p = get_problem("digits")
    model = StackedModel(p, [0, 1, 2])
    initial = [q.detach().clone() for q in model.params]
    plans = [Averaging(kind=kind, start=1, every=2, decay=0.7), None, Averaging(kind=kind, start=0, decay=0.95)]
    avg = StackedAverage(model, plans, steps=9)
    nets = [p.make_model() for _ in plans]
    ema = [get_ema_multi_avg_fn(plan.decay) if plan is not None and kind == "ema" else None for plan in plans]
    references = [AveragedModel(net, multi_avg_fn=fn) for net, fn in zip(nets, ema)]
    torch.manual_seed(0)
    for t in range(9):
        snapshot = [torch.randn_like(q) for q in model.params]
        avg.update(t, snapshot)
        for i, (net, ref, plan) in enumerate(zip(nets, references, plans)):
            with torch.no_grad():
                for q, s in zip(net.parameters(), snapshot):
                    q.copy_(s[i])
            if plan is not None and plan.due(t):
                ref.update_parameters(net)
    assert avg.entries.tolist() == [int(ref.n_averaged) for ref in references] == [4, 0, 9]
    for i, ref in enumerate(references):
        # a member without a plan keeps its starting copy; the others equal AveragedModel bit for bit
        wants = initial if plans[i] is None else list(ref.module.parameters())
        for got, want in zip(avg.params, wants):
            torch.testing.assert_close(got[i], want[i] if plans[i] is None else want, rtol=0, atol=0)


def test_member_rejects_a_bad_average() -> None:
    with pytest.raises(LabError, match=r"^Member: parameter 'average'"):
        Member(lr=0.1, average="swa")  # type: ignore[arg-type]
