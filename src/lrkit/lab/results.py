"""A study's results: a tidy table (one row per member and epoch) with summaries, figures and saving.

A `StudyResult` is plain data: `to_json(path)` / `StudyResult.load(path)` keep it exactly
(NaN and infinities included); `save(out)` writes its figures, tables and HTML report,
drawn by `lrkit.lab.report`, which reads the result and never imports this module.

Example:
    >>> import numpy as np
    >>> t = {"member": np.array([0, 0]), "value": np.array(["0.1", "0.1"], dtype=object), "value_index": np.array([0, 0]),
    ...      "seed": np.array([0, 0]), "epoch": np.array([1, 2]), "updates": np.array([16, 32]),
    ...      "train_loss": np.array([0.9, 0.5]), "train_acc": np.array([0.6, 0.8]), "test_loss": np.array([0.8, 0.6]),
    ...      "test_acc": np.array([0.7, 0.8]), "lr": np.array([0.1, 0.1]), "momentum": np.array([0.0, 0.0]),
    ...      "diverged": np.array([False, False])}
    >>> r = StudyResult({"study": "lr", "values": ["0.1"], "axis": "log"}, t, {0: 1.1})
    >>> r.summary()[0]["test_acc"], r.epochs_to(0.75).tolist()
    (0.8, [2.0])
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit._io import JsonResult, json_float, read_float
from lrkit.errors import LabError, LrkitValueError

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure

Columns = dict[str, npt.NDArray[Any]]


# how a table column is kept in JSON: by its kind of numpy dtype
_DTYPES = {"i": "int64", "u": "int64", "f": "float64", "b": "bool"}


@dataclasses.dataclass(frozen=True)
class StudyResult(JsonResult):
    """What a study produced.

    Attributes:
        spec: the study's spec (study name, problem, value labels, seeds, epochs, axis, ...).
        table: tidy columns, one entry per member and epoch: member, value, value_index, seed,
            epoch, updates, train_loss, train_acc, test_loss, test_acc, lr, momentum, diverged.
        initial_test_loss: each member's test loss before training (caps diverged members in the sensitivity curve).

    Example:
        >>> from lrkit.lab.runner import study
        >>> r = study("lr", values=[0.1], seeds=1, epochs=2)
        >>> StudyResult.from_json(r.to_json()).table["test_loss"].tolist() == r.table["test_loss"].tolist()
        True
    """

    spec: dict[str, Any]
    table: Columns
    initial_test_loss: dict[int, float]
    error: ClassVar[type[LrkitValueError]] = LabError

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data; a float that is not finite is written as the text "nan", "inf" or "-inf".

        Example:
            >>> r = StudyResult({"study": "lr", "values": ["1"]}, {"test_loss": np.array([np.inf, np.nan])}, {0: 1.5})
            >>> r.to_dict()["table"]
            {'test_loss': {'dtype': 'float64', 'values': ['inf', 'nan']}}
        """
        table = {}
        for name, column in self.table.items():
            dtype = _DTYPES.get(column.dtype.kind, "object")
            cells = column.tolist()
            table[name] = {"dtype": dtype, "values": [json_float(v) for v in cells] if dtype == "float64" else cells}
        losses = {str(m): json_float(v) for m, v in self.initial_test_loss.items()}
        return {"spec": self.spec, "table": table, "initial_test_loss": losses}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyResult:
        """The `StudyResult` of `to_dict()`, exactly (column dtypes, NaN and infinities included).

        Example:
            >>> r = StudyResult({"study": "lr", "values": ["1"]}, {"epoch": np.array([1, 2])}, {0: float("nan")})
            >>> back = StudyResult.from_dict(r.to_dict())
            >>> back.table["epoch"].dtype, back.initial_test_loss
            (dtype('int64'), {0: nan})
        """
        func = "StudyResult.from_dict"
        validate.instance(func, "data", data, LabError, dict, "a dict (from StudyResult.to_dict)")
        if set(data) != {"spec", "table", "initial_test_loss"}:
            validate.fail(func, "data", "must have the keys 'spec', 'table' and 'initial_test_loss'", sorted(data), LabError)
        spec = validate.instance(func, "spec", data["spec"], LabError, dict, "a dict")
        columns = validate.instance(func, "table", data["table"], LabError, dict, "a dict of columns")
        losses = validate.instance(func, "initial_test_loss", data["initial_test_loss"], LabError, dict, "a dict")
        for m in losses:
            if not (isinstance(m, str) and m.isdigit()):
                validate.fail(func, "initial_test_loss", "must have member indices as keys", m, LabError)
        initial = {int(m): _float(v) for m, v in losses.items()}
        return cls(spec=spec, table={name: _column(name, column) for name, column in columns.items()}, initial_test_loss=initial)

    @property
    def values(self) -> list[str]:
        """The value labels, in study order.

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> r.values
            ['0.1', '1e-06']
        """
        return list(self.spec["values"])

    def to_pandas(self) -> pandas.DataFrame:
        """The tidy table as a pandas DataFrame (one row per member and epoch).

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> df = r.to_pandas()
            >>> len(df), list(df.columns[:5])
            (12, ['member', 'value', 'value_index', 'seed', 'epoch'])
        """
        import pandas

        return pandas.DataFrame(self.table)

    def curves(self, metric: str) -> dict[str, npt.NDArray[np.float64]]:
        """Per value label, the metric as a (seeds, epochs) array (NaN after a divergence).

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> r.curves("test_acc")["0.1"].shape
            (2, 3)
        """
        out = {}
        for label in self.values:
            rows = self.table["value"] == label
            members = np.unique(self.table["member"][rows])
            epochs = int(self.table["epoch"][rows].max()) if rows.any() else 0
            grid = np.full((len(members), epochs), np.nan)
            pos = {m: i for i, m in enumerate(members)}
            for m, e, v in zip(self.table["member"][rows], self.table["epoch"][rows], self.table[metric][rows]):
                grid[pos[m], e - 1] = v
            out[label] = grid
        return out

    def final(self) -> Columns:
        """One entry per member: its value, seed, last-epoch metrics and whether it diverged.

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> r.final()["epoch"].tolist(), r.final()["seed"].tolist()
            ([3, 3, 3, 3], [0, 1, 0, 1])
        """
        last = np.zeros(len(self.table["member"]), dtype=bool)
        for m in np.unique(self.table["member"]):
            rows = np.flatnonzero(self.table["member"] == m)
            last[rows[np.argmax(self.table["epoch"][rows])]] = True
        return {k: v[last] for k, v in self.table.items()}

    def capped_final_loss(self) -> npt.NDArray[np.float64]:
        """Final test loss per member (in `final()` order), a diverged member counted at its initial loss (Wortsman et al. 2023).

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> bool((r.capped_final_loss() > 0).all())
            True
        """
        final = self.final()
        loss: npt.NDArray[np.float64] = final["test_loss"].astype(np.float64)
        for i, m in enumerate(final["member"]):
            if not np.isfinite(loss[i]):
                loss[i] = self.initial_test_loss.get(int(m), np.nan)
        return loss

    def epochs_to(self, accuracy: float) -> npt.NDArray[np.float64]:
        """Per member (in `final()` order), the first epoch with test accuracy >= `accuracy` (inf if never).

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> r.epochs_to(0.0).tolist(), r.epochs_to(1.01).tolist()
            ([1.0, 1.0, 1.0, 1.0], [inf, inf, inf, inf])
        """
        final = self.final()
        out = np.full(len(final["member"]), np.inf)
        for i, m in enumerate(final["member"]):
            rows = (self.table["member"] == m) & (self.table["test_acc"] >= accuracy)
            if rows.any():
                out[i] = float(self.table["epoch"][rows].min())
        return out

    def summary(self, threshold: float = 0.75) -> list[dict[str, Any]]:
        """One row per value: seeds, diverged, mean and std of final accuracies and capped loss, median epochs to `threshold`.

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> [(row["value"], row["seeds"], row["diverged"]) for row in r.summary()]
            [('0.1', 2, 0), ('1e-06', 2, 0)]
        """
        final, loss, reach = self.final(), self.capped_final_loss(), self.epochs_to(threshold)
        rows = []
        for label in self.values:
            sel = final["value"] == label
            row: dict[str, Any] = {"value": label, "seeds": int(sel.sum()), "diverged": int(final["diverged"][sel].sum())}
            for key, data in (("train_acc", final["train_acc"]), ("test_acc", final["test_acc"]), ("test_loss", loss)):
                row[key], row[key + "_std"] = _mean_std(data[sel])
            row[f"epochs_to_{threshold:g}"] = float(np.median(reach[sel])) if sel.any() else math.nan
            row["final_lr"] = float(np.nanmean(final["lr"][sel])) if sel.any() else math.nan
            rows.append(row)
        return rows

    # -- figures (see lrkit.lab.report) ----------------------------------------------------------
    def plot_curves(self, metric: str = "acc") -> Figure:
        """One subplot per value: train and test `metric` ("acc" or "loss") over epochs, mean ± std band over seeds.

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> len(r.plot_curves().axes)
            2
        """
        from lrkit.lab.report import plot_curves

        return plot_curves(self, metric)

    def plot_sensitivity(self) -> Figure:
        """Final test loss against the value, mean and std error bars over seeds.

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> r.plot_sensitivity().axes[0].get_xscale()
            'log'
        """
        from lrkit.lab.report import plot_sensitivity

        return plot_sensitivity(self)

    def plot_per_value(self, metric: str) -> Figure:
        """One subplot per value: one column of the table (e.g. "lr", "train_loss") over epochs, every seed and the mean.

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> r.plot_per_value("lr").axes[0].get_ylabel()
            'learning rate'
        """
        from lrkit.lab.report import plot_per_value

        return plot_per_value(self, metric)

    def save(self, out: str | Path) -> list[Path]:
        """Write the figures (PNG), the records and final tables (CSV) and one self-contained HTML report into `out`.

        Example:
            >>> from lrkit.lab.runner import study
            >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=3)
            >>> import tempfile
            >>> sorted(p.suffix for p in r.save(tempfile.mkdtemp()))
            ['.csv', '.csv', '.html', '.png', '.png', '.png']
        """
        from lrkit.lab.report import save

        return save(self, Path(out))


def _float(value: Any) -> Any:
    """A float cell that `json_float` wrote (None stays None: a member whose initial loss was not stored)."""
    return read_float(value, none=None, func="StudyResult.from_dict", param="table", error=LabError)


def _column(name: str, column: Any) -> npt.NDArray[Any]:
    """One table column from its JSON form `{"dtype": ..., "values": [...]}`, every cell checked."""
    func, param = "StudyResult.from_dict", f"table[{name}]"
    validate.instance(func, param, column, LabError, dict, "a {'dtype', 'values'} column")
    dtype = validate.choice(func, param, column.get("dtype"), LabError, ("int64", "float64", "bool", "object"))
    cells = validate.sequence(func, param, column.get("values"), LabError)
    read: dict[str, Any] = {
        "float64": _float,
        "int64": lambda v: validate.integer(func, param, v, LabError, minimum=-(2**63)),
        "bool": lambda v: validate.flag(func, param, v, LabError),
        "object": lambda v: v,
    }
    return np.asarray([read[dtype](v) for v in cells], dtype=dtype)


def _mean_std(x: npt.NDArray[np.float64]) -> tuple[float, float]:
    x = x[np.isfinite(x.astype(np.float64))].astype(np.float64)
    if not len(x):
        return math.nan, math.nan
    return float(x.mean()), float(x.std())
