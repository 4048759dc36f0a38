"""What `search_lr` is given, checked before any training: the optimizer, the data, the model, the loss and the metric.

Example:
    >>> import torch
    >>> read_optimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)).spec
    'sgd(momentum=0.9)'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import FinderError
from lrkit.optim import FAMILIES, Optim
from lrkit.search.grid import FUNC

if TYPE_CHECKING:
    import torch

Batch = tuple["torch.Tensor", "torch.Tensor"]
Metric = Callable[["torch.Tensor", "torch.Tensor"], Any]
VAL_ROWS = 1024  # a validation set given as tensors is evaluated in batches of this many rows
SUPPORTED = "a name or lrkit.Optim of the families " + ", ".join(FAMILIES) + ", or a torch.optim SGD, Adagrad, RMSprop, Adam or AdamW"


def read_optimizer(optimizer: Any) -> Optim:
    """The searched optimizer as an `lrkit.Optim`: a spec, an Optim, or a torch optimizer whose hyperparameters are read (its lr ignored).

    Example:
        >>> read_optimizer("adam").family
        'adam'
        >>> try:
        ...     read_optimizer(3)
        ... except FinderError as e:
        ...     print(str(e)[:60])
        search_lr: parameter 'optimizer' must be a name or lrkit.Opt
    """
    import torch

    try:
        if isinstance(optimizer, torch.optim.Optimizer):
            return Optim.from_torch(optimizer, FUNC)
        if isinstance(optimizer, (str, Optim)):
            return Optim.of(optimizer, FUNC, "optimizer")
    except (TypeError, ValueError) as e:  # Optim's own (lab) error: said again as the search's, with the supported list
        validate.fail(FUNC, "optimizer", f"must be {SUPPORTED} ({e})", optimizer, FinderError)
    return validate.wrong_type(FUNC, "optimizer", f"must be {SUPPORTED}", type(optimizer).__name__, FinderError)


@dataclasses.dataclass
class Data:
    """Re-iterable batches of `(inputs, targets)`: a DataLoader, a list of pairs, or a tuple of two tensors (validation).

    `steps` is the number of batches in one pass (from `len()`, else counted once).

    Example:
        >>> import torch
        >>> d = Data.of([(torch.zeros(4, 2), torch.zeros(4))] * 3, "train_data")
        >>> d.steps, len(next(iter(d))[0])
        (3, 4)
    """

    source: Iterable[Any]
    steps: int
    param: str

    @classmethod
    def of(cls, data: Any, param: str, *, tensors_ok: bool = False) -> Data:
        """Check `data` and count its batches (at least one; each an (inputs, targets) pair of tensors)."""
        if tensors_ok and _tensor_pair(data):
            x, y = data
            data = [(x[i : i + VAL_ROWS], y[i : i + VAL_ROWS]) for i in range(0, len(x), VAL_ROWS)]
        if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
            tensors = ", or a tuple (x, y)" if tensors_ok else ""
            what = f"re-iterable batches of (inputs, targets) (a DataLoader or a list of pairs){tensors}"
            validate.wrong_type(FUNC, param, f"must be {what}", type(data).__name__, FinderError)
        if isinstance(data, Iterator):  # (not `iter(data) is data`: a DataLoader's iter() draws from its generator)
            validate.fail(FUNC, param, "must be re-iterable (a DataLoader or a list), not a one-shot iterator: every epoch reads it again",
                          type(data).__name__, FinderError)  # fmt: skip
        steps = len(data) if isinstance(data, Sized) else sum(1 for _ in data)
        if steps < 1:
            validate.fail(FUNC, param, "must hold at least one batch", steps, FinderError)
        return cls(data, steps, param)

    def __iter__(self) -> Iterator[Batch]:
        count = 0
        for batch in self.source:
            yield self._pair(batch)
            count += 1
        if count != self.steps:
            validate.fail(FUNC, self.param, f"must give the same number of batches every pass ({self.steps})", count, FinderError)

    def _pair(self, batch: Any) -> Batch:
        if not _tensor_pair(batch):
            validate.wrong_type(FUNC, self.param, "must give batches of (inputs, targets) tensors", type(batch).__name__, FinderError)
        x, y = batch
        if len(x) != len(y) or len(x) == 0:
            validate.fail(FUNC, self.param, "must give non-empty batches with one target per input", (len(x), len(y)), FinderError)
        return x, y

    def first(self) -> Batch:
        """The first batch of a pass (for the checks made before training)."""
        return next(iter(self))


def _tensor_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(validate.is_tensor(v) for v in value)


def read_metric(metric: Any) -> tuple[Metric | None, str | None]:
    """The validation metric (higher is better) and its name: None, "accuracy", or a callable `metric(outputs, targets)`.

    Example:
        >>> import torch
        >>> fn, name = read_metric("accuracy")
        >>> name, float(fn(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1])))
        ('accuracy', 0.5)
    """
    if metric is None:
        return None, None
    if metric == "accuracy":
        return accuracy, "accuracy"
    if not callable(metric):
        validate.wrong_type(FUNC, "metric", "must be None, 'accuracy' or a callable metric(outputs, targets)", metric, FinderError)
    return metric, getattr(metric, "__name__", type(metric).__name__)


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The fraction of rows whose largest output is the target class (over the last sample axis).

    Example:
        >>> import torch
        >>> float(accuracy(torch.eye(3), torch.tensor([0, 1, 0])))
        0.6666666865348816
    """
    from lrkit.lab.stacked import predicted

    return (predicted(outputs) == targets).float().mean(-1)
