"""Population trainer: member i equals a standalone torch.optim + lrkit.Scheduler run, to float tolerance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

import lrkit
import lrkit.protocols
from lrkit.errors import LabError, LabTypeError
from lrkit.lab.optim import Optim
from lrkit.lab.population import Member, train
from lrkit.lab.problems import Problem, get_problem
from lrkit.lab.stacked import StackedModel

EPOCHS = 3


Reference = Callable[..., tuple[list[torch.Tensor], list[float]]]


def standalone(
    reference: Reference, problem: Problem, member: Member, epochs: int, *, data_seed: int | None = None
) -> tuple[list[torch.Tensor], list[float]]:
    """The plain PyTorch run a member stands for (conftest's `reference`): its final weights and test loss per epoch."""
    data = (problem.x_train, problem.y_train, problem.x_test, problem.y_test)
    return reference(problem.make_model, member.optimizer, member.lr, data, problem.loss, seed=member.seed, epochs=epochs,
                     batch_size=problem.batch_size, data_seed=data_seed, momentum=member.momentum, plateau=member.plateau)  # fmt: skip


def assert_member_matches(reference: Reference, problem: Problem, members: list[Member], epochs: int = EPOCHS, **kw: object) -> None:
    result = train(problem, members, epochs=epochs, **kw)  # type: ignore[arg-type]
    stacked = _final_weights(problem, members, epochs, **kw)
    shared_seed = kw.get("data_seed", 0) if kw.get("order") == "shared" else None
    for i, member in enumerate(members):
        weights, losses = standalone(reference, problem, member, epochs, data_seed=shared_seed)  # type: ignore[arg-type]
        for got, want in zip(stacked, weights):
            torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-5, msg=f"member {i}: {member}")
        np.testing.assert_allclose(result.test_loss[i], losses, rtol=1e-4, atol=1e-6, err_msg=f"member {i}: {member}")


_WEIGHTS: dict[int, list[torch.Tensor]] = {}


def _final_weights(problem: Problem, members: list[Member], epochs: int, **kw: object) -> list[torch.Tensor]:
    """Train again with a hook on the stacked model, to read the final weights."""
    import lrkit.lab.population as population

    captured: list[list[torch.Tensor]] = []
    original = population._Run.result

    def result(self: population._Run) -> population.PopulationResult:
        captured.append([p.detach().clone() for p in self.model.params])
        return original(self)

    population._Run.result = result  # type: ignore[method-assign]
    try:
        train(problem, members, epochs=epochs, **kw)  # type: ignore[arg-type]
    finally:
        population._Run.result = original  # type: ignore[method-assign]
    return captured[0]


FAMILIES = {
    "sgd": Optim("sgd"),
    "sgd_momentum_wd": Optim("sgd", momentum=0.9, weight_decay=1e-3),
    "nesterov": Optim("nesterov", momentum=0.8),
    "adagrad": Optim("adagrad", weight_decay=1e-3),
    "rmsprop": Optim("rmsprop"),
    "rmsprop_momentum_centered": Optim("rmsprop", momentum=0.5, centered=True),
    "adam": Optim("adam", weight_decay=1e-3),
    "adamw": Optim("adamw"),
}
LRS = {"sgd": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 0.003, "adam": 0.003, "adamw": 0.003}


@pytest.mark.parametrize("plateau", [None, lrkit.Plateau(patience=0, factor=0.5, threshold=0.05)], ids=["plain", "plateau"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_member_equals_standalone_run(reference: Reference, name: str, plateau: lrkit.Plateau | None) -> None:
    opt = FAMILIES[name]
    lr = LRS[opt.family]
    members = [
        Member(lr=lr, optimizer=opt, plateau=plateau, seed=1),
        Member(lr=lrkit.warmup(lrkit.cosine(start=lr, steps=40), steps=8), optimizer=opt, plateau=plateau, seed=2),
    ]
    assert_member_matches(reference, get_problem("blobs"), members)


def test_mixed_families_and_momentum_schedules_in_one_population(reference: Reference) -> None:
    cyc = lrkit.cosine(start=0.95, end=0.85, steps=48)
    members = [
        Member(lr=0.05, optimizer=Optim("sgd", momentum=0.9), momentum=cyc, seed=0),
        Member(lr=0.003, optimizer=Optim("adam"), momentum=cyc, seed=1, plateau=lrkit.Plateau(patience=0, factor=0.5, threshold=0.05)),
        Member(lr=0.01, optimizer=Optim("adagrad"), seed=2),
        Member(lr=lrkit.step_decay(start=0.01, factor=0.5, every=16), optimizer=Optim("rmsprop", momentum=0.3), seed=3),
        Member(lr=0.05, seed=4),
    ]
    assert_member_matches(reference, get_problem("blobs"), members)


def test_shared_order_uses_the_data_seed(reference: Reference) -> None:
    members = [Member(lr=0.05, seed=s) for s in (0, 1)]
    assert_member_matches(reference, get_problem("moons"), members, epochs=2, order="shared", data_seed=7)


def test_members_sharing_a_seed_each_match_their_standalone_run(reference: Reference) -> None:
    # one data order and one initialization are drawn per distinct seed and shared by its members
    members = [Member(lr=lr, seed=s) for s in (3, 0) for lr in (0.05, 0.01)] + [Member(lr=0.02, seed=3)]
    assert_member_matches(reference, get_problem("blobs"), members, epochs=2)


def test_vmapped_path_matches_for_a_cnn(reference: Reference) -> None:
    p = get_problem("digits_cnn")
    # digits' exact zeros make max-pool ties, whose gradient either implementation may route to a different (equally valid) input
    noise = torch.Generator().manual_seed(0)
    x_train = p.x_train[:96] + 0.01 * torch.randn(p.x_train[:96].shape, generator=noise)
    small = dataclasses.replace(p, x_train=x_train, y_train=p.y_train[:96], x_test=p.x_test[:64], y_test=p.y_test[:64])
    assert not StackedModel(small, [0]).fast
    assert_member_matches(reference, small, [Member(lr=0.05, optimizer=Optim("sgd", momentum=0.9), seed=s) for s in (0, 1)], epochs=2)


def test_regression_problem_matches(reference: Reference) -> None:
    p = get_problem("regression")
    small = dataclasses.replace(p, x_train=p.x_train[:128], y_train=p.y_train[:128])
    assert_member_matches(reference, small, [Member(lr=0.01, optimizer=Optim("adam"), seed=s) for s in (0, 1)], epochs=2)
    r = train(small, [Member(lr=0.01)], epochs=1)
    assert np.isnan(r.test_acc).all() and np.isfinite(r.test_loss).all()


def test_diverged_member_is_frozen_and_others_unaffected() -> None:
    p = get_problem("blobs")
    good = [Member(lr=0.05, seed=s) for s in (0, 1)]
    bad_member = Member(lr=1e30, optimizer=Optim("sgd", momentum=0.9), seed=2)
    with_bad = train(p, [good[0], bad_member, good[1]], epochs=EPOCHS)
    without = train(p, good, epochs=EPOCHS)
    assert with_bad.diverged.tolist() == [False, True, False]
    assert with_bad.diverged_epoch[1] >= 1 and np.isnan(with_bad.test_loss[1, -1])
    np.testing.assert_allclose(with_bad.test_loss[[0, 2]], without.test_loss, rtol=1e-6)


def test_records_lr_momentum_plateau_and_growing_batches() -> None:
    p = get_problem("blobs")
    never_better = lrkit.Plateau(patience=0, factor=0.1, threshold=10.0, threshold_mode="abs")
    member = Member(lr=0.1, optimizer=Optim("sgd", momentum=0.5), plateau=never_better)
    r = train(p, [member], epochs=3, batch_size=[32, 128, 500])
    # threshold=10 (absolute, on a loss near 1): only the first evaluation improves (on inf); each later one cuts the lr
    np.testing.assert_allclose(r.lr[0], [0.1, 0.1, 0.01])
    assert r.momentum[0].tolist() == [0.5, 0.5, 0.5]
    assert r.updates.tolist() == [16, 16 + 4, 16 + 4 + 1]
    assert (r.train_acc >= 0).all() and (r.train_acc <= 1).all()


def test_bad_input() -> None:
    p = get_problem("blobs")
    with pytest.raises(LabError, match="members"):
        train(p, [])
    with pytest.raises(LabError, match="order"):
        train(p, [Member(lr=0.1)], order="random")
    with pytest.raises(LabError, match="batch_size"):
        train(p, [Member(lr=0.1)], epochs=2, batch_size=[32])
    with pytest.raises(LabError, match="lr"):
        Member(lr="fast")  # type: ignore[arg-type]
    with pytest.raises(LabError, match="family"):
        Optim("lion")
    with pytest.raises(LabError, match="momentum"):
        Optim("nesterov", momentum=0.0)


def test_member_takes_optimizer_specs_and_rejects_wrong_types() -> None:
    assert Member(lr=0.1, optimizer="sgd(momentum=0.9)").optimizer == Optim("sgd", momentum=0.9)
    assert Member(lr=0.1, optimizer="adam").optimizer == Optim("adam")
    wrong_types = [
        ({"lr": "fast"}, "lr"),
        ({"lr": 0.1, "optimizer": torch.optim.SGD}, "optimizer"),
        ({"lr": 0.1, "momentum": 0.9}, "momentum"),
        ({"lr": 0.1, "plateau": object()}, "plateau"),
        ({"lr": 0.1, "seed": 1.0}, "seed"),
        ({"lr": 0.1, "seed": True}, "seed"),
    ]
    for kwargs, param in wrong_types:
        with pytest.raises(LabTypeError, match=f"Member: parameter '{param}'"):
            Member(**kwargs)  # type: ignore[arg-type]
    for kwargs, param in [({"lr": -0.1}, "lr"), ({"lr": 0.1, "seed": -1}, "seed"), ({"lr": 0.1, "optimizer": "lion"}, "optimizer")]:
        with pytest.raises(LabError, match=f"Member: parameter '{param}'") as caught:
            Member(**kwargs)  # type: ignore[arg-type]
        assert not isinstance(caught.value, TypeError)


def test_plateau_is_any_plateau_like_controller() -> None:
    class Halve:  # a user's own controller: halves the lr after every evaluation
        def init(self) -> lrkit.protocols.ScaleState:
            return _Scale(1.0)

        def update(self, state: _Scale, metric: float, lr: float) -> _Scale:
            return _Scale(state.scale / 2)

    r = train(get_problem("blobs"), [Member(lr=0.1, plateau=Halve())], epochs=3)
    np.testing.assert_allclose(r.lr[0], [0.1, 0.05, 0.025])


@dataclasses.dataclass(frozen=True)
class _Scale:
    scale: float


@pytest.mark.parametrize("momentum", [lrkit.constant(1.0), lrkit.linear(start=0.9, end=1.5, steps=20)], ids=["one", "rises-to-1.5"])
def test_momentum_schedule_must_stay_below_one(momentum: lrkit.Schedule) -> None:
    with pytest.raises(LabError, match=r"Member: parameter 'momentum' must lie in \[0, 1\) at every step"):
        Member(lr=0.1, optimizer=Optim("sgd", momentum=0.9), momentum=momentum)  # at construction now, before any training
    member = Member(lr=0.1, optimizer=Optim("sgd", momentum=0.9))
    object.__setattr__(member, "momentum", momentum)  # past the construction check: the run checks every step again
    with pytest.raises(LabError, match=r"Member: parameter 'momentum' must lie in \[0, 1\) at every step"):
        train(get_problem("blobs"), [member], epochs=2)


def test_train_rejects_wrong_types_as_type_errors() -> None:
    p = get_problem("blobs")
    for kwargs, param in [({"order": 3}, "order"), ({"epochs": 2.0}, "epochs"), ({"batch_size": "32"}, "batch_size"),
                          ({"order": "shared", "data_seed": 0.5}, "data_seed")]:  # fmt: skip
        with pytest.raises(LabTypeError, match=f"train: parameter '{param}'"):
            train(p, [Member(lr=0.1)], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(LabTypeError, match="members"):
        train(p, [0.1])  # type: ignore[list-item]


@pytest.mark.parametrize("name", ["blobs", "regression"])
def test_hand_gradients_equal_autograd_for_activation_chains(name: str) -> None:
    from torch import nn

    p = get_problem(name)
    width_in, width_out = p.x_train.shape[1], max(p.num_classes, 1)

    def make() -> nn.Module:
        return nn.Sequential(
            nn.Linear(width_in, 8), nn.ReLU(), nn.Sigmoid(), nn.Linear(8, 8), nn.Tanh(), nn.Identity(), nn.Linear(8, width_out)
        )

    q = dataclasses.replace(p, make_model=make)
    model = StackedModel(q, [0, 1, 2])
    assert model.manual
    x = p.x_train[:10].expand(3, *p.x_train[:10].shape).clone()
    y = p.y_train[:10].expand(3, 10)
    before = x.clone()
    losses, out, grads = model.loss_and_grads(q, x, y)
    model.manual = False
    want_losses, want_out, want_grads = model.loss_and_grads(q, x, y)
    torch.testing.assert_close(losses, want_losses)
    torch.testing.assert_close(out, want_out)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(x, before)  # the caller's input is never modified in place


MOMENTA = [lrkit.constant(2.0), lrkit.constant(1.0), lrkit.linear(start=0.5, end=1.5, steps=100),
           lrkit.linear(start=0.9, end=1.2, steps=10**7)]  # fmt: skip


@pytest.mark.parametrize("momentum", MOMENTA)
def test_a_member_momentum_outside_0_1_is_rejected_at_construction(momentum: lrkit.Schedule) -> None:
    with pytest.raises(LabError, match=r"Member: parameter 'momentum' must lie in \[0, 1\) at every step \(step \d+: "):
        Member(lr=0.1, optimizer=Optim("sgd", momentum=0.9), momentum=momentum)


def test_a_member_momentum_of_2_and_adam_betas_out_of_range_are_lab_errors() -> None:
    for bad in (2.0, float("nan")):
        with pytest.raises(LabError, match="Member: parameter 'momentum' must be an lrkit schedule"):
            Member(lr=0.1, momentum=bad)  # type: ignore[arg-type]
    for optim in ({"family": "sgd", "momentum": 2.0}, {"family": "adam", "momentum": 1.5}, {"family": "adam", "beta2": 1.0}):
        with pytest.raises(LabError, match="must lie in"):
            Member(lr=0.1, optimizer=Optim(**optim))  # type: ignore[arg-type]
