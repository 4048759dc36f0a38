"""Built-in problems: shapes, dtypes, the classic blobs set-up, user problems and bad names."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from lrkit.errors import LabError
from lrkit.lab.problems import PROBLEMS, Problem, get_problem

FAST = [name for name in PROBLEMS if not name.startswith("mnist1d")]


@pytest.mark.parametrize("name", PROBLEMS)
def test_every_problem_trains_one_step(name: str) -> None:
    p = get_problem(name)
    assert p.x_train.dtype == torch.float32 and p.x_test.dtype == torch.float32
    want = torch.int64 if p.task == "classification" else torch.float32
    assert p.y_train.dtype == want and p.y_test.dtype == want
    torch.manual_seed(0)
    model = p.make_model()
    loss = p.loss(model(p.x_train[: p.batch_size]), p.y_train[: p.batch_size])
    loss.backward()
    assert torch.isfinite(loss)
    if p.task == "classification":
        assert int(p.y_train.max()) == p.num_classes - 1
        assert 0.0 <= float(p.accuracy(model(p.x_test), p.y_test)) <= 1.0
    else:
        with pytest.raises(LabError):
            p.accuracy(model(p.x_test), p.y_test)


def test_blobs_is_the_classic_setup() -> None:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=1000, centers=3, n_features=2, cluster_std=2, random_state=2)
    p = get_problem("blobs", seed=123)  # the classic split is fixed whatever the seed
    np.testing.assert_allclose(p.x_train.numpy(), x[:500].astype(np.float32))
    np.testing.assert_array_equal(p.y_test.numpy(), y[500:])
    torch.manual_seed(0)
    model = p.make_model()
    hidden, out = model[0], model[2]
    bound = (6 / 2) ** 0.5  # He-uniform: sqrt(6 / fan_in)
    assert hidden.weight.abs().max() <= bound and hidden.weight.abs().max() > 0.8 * bound
    assert torch.all(hidden.bias == 0) and torch.all(out.bias == 0)
    assert (p.batch_size, p.epochs, p.lr, p.num_classes) == (32, 200, 0.01, 3)


def test_seed_changes_generated_data_but_not_global_rng() -> None:
    np.random.seed(7)
    before = np.random.random()
    np.random.seed(7)
    a, b = get_problem("moons", seed=0), get_problem("moons", seed=1)
    assert not torch.equal(a.x_train, b.x_train)
    assert np.random.random() == before


def test_loss_matches_torch() -> None:
    p = get_problem("regression")
    out, y = torch.randn(5, 1), torch.randn(5)
    assert torch.allclose(p.loss(out, y), ((out[:, 0] - y) ** 2).mean())
    q = get_problem("blobs")
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    assert torch.allclose(q.loss(logits, labels), torch.nn.functional.cross_entropy(logits, labels))


def test_user_problem(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "myprob.py").write_text(
        textwrap.dedent(
            """
            import numpy as np, torch
            def make(seed):
                rng = np.random.default_rng(seed)
                x = rng.normal(size=(40, 3)); y = (x[:, 0] > 0).astype(np.int64)
                return (lambda: torch.nn.Linear(3, 2)), (x[:20], y[:20], x[20:], y[20:])
            def not_a_problem():
                return 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    p = get_problem("myprob:make", seed=1)
    assert isinstance(p, Problem) and p.task == "classification" and p.num_classes == 2 and p.x_train.shape == (20, 3)
    with pytest.raises(LabError, match="must return a Problem"):
        get_problem("myprob:not_a_problem")
    with pytest.raises(LabError, match="importable"):
        get_problem("myprob:missing")
    sys.modules.pop("myprob", None)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(LabError, match="blobs, moons"):
        get_problem("blob")
