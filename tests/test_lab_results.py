"""`StudyResult` is plain data: an exact JSON round trip, `load`, and a report that reads it without importing it back."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

import lrkit.lab
from lrkit.errors import LabError
from lrkit.lab.results import StudyResult
from lrkit.lab.runner import study


def assert_same(a: StudyResult, b: StudyResult) -> None:
    assert a.spec == b.spec and list(a.table) == list(b.table)
    for name in a.table:
        assert a.table[name].dtype == b.table[name].dtype, name
        np.testing.assert_array_equal(a.table[name], b.table[name], err_msg=name)  # NaN equals NaN here, and inf must be inf
    assert a.initial_test_loss.keys() == b.initial_test_loss.keys()
    for m, loss in a.initial_test_loss.items():
        assert loss == b.initial_test_loss[m] or (math.isnan(loss) and math.isnan(b.initial_test_loss[m]))


def test_json_round_trip_is_exact_with_nan_and_inf(tmp_path: Path) -> None:
    r = study("lr", values=[0.1, 100], seeds=2, epochs=3)  # lr 100 diverges: NaN metrics from then on
    assert np.isnan(r.table["test_loss"]).any() and np.isfinite(r.table["test_loss"]).any()
    loss = r.table["test_loss"].copy()
    loss[0], loss[1] = np.inf, -np.inf
    r = dataclasses.replace(r, table={**r.table, "test_loss": loss}, initial_test_loss={**r.initial_test_loss, 0: math.nan})
    text = r.to_json(tmp_path / "deep" / "lr.json")
    assert "NaN" not in text and "Infinity" not in text  # strict JSON, readable by any parser
    assert_same(StudyResult.from_json(text), r)
    back = StudyResult.load(tmp_path / "deep" / "lr.json")
    assert_same(back, r)
    assert back.summary()[0]["value"] == "0.1" and back.values == r.values
    assert [row["diverged"] for row in back.summary()] == [row["diverged"] for row in r.summary()] == [0, 2]


def test_bad_files_are_lab_errors(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"StudyResult\.load: parameter 'path'"):
        StudyResult.load(tmp_path / "missing.json")
    with pytest.raises(LabError, match=r"StudyResult\.from_json"):
        StudyResult.from_json("{not json")
    good = StudyResult({"study": "lr", "values": ["1"]}, {"epoch": np.array([1]), "test_loss": np.array([0.5])}, {0: 1.0}).to_dict()
    broken = [
        ({**good, "extra": 1}, "data"),
        ({**good, "table": {"epoch": {"dtype": "complex", "values": [1]}}}, r"table\[epoch\]"),
        ({**good, "table": {"epoch": {"dtype": "int64", "values": ["one"]}}}, r"table\[epoch\]"),
        ({**good, "table": {"loss": {"dtype": "float64", "values": ["lots"]}}}, "table"),
        ({**good, "initial_test_loss": {"first": 1.0}}, "initial_test_loss"),
        ([1, 2], "data"),
    ]
    for data, param in broken:
        with pytest.raises(LabError, match=rf"StudyResult\.from_dict: parameter '?{param}"):
            StudyResult.from_dict(data)  # type: ignore[arg-type]


def test_save_still_writes_the_report_folder(tmp_path: Path) -> None:
    r = study("lr", values=[0.1], seeds=1, epochs=2)
    names = sorted(p.name for p in r.save(tmp_path))
    assert names == ["lr-curves.png", "lr-final.csv", "lr-loss.png", "lr-records.csv", "lr-report.html", "lr-sensitivity.png"]


def test_the_report_reads_the_result_without_importing_it() -> None:
    # tests/test_package_imports.py checks every pair of modules; this one also looks under TYPE_CHECKING
    source = Path(lrkit.lab.__file__).with_name("report.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert "lrkit.lab.studies" in imported and not {"lrkit.lab.results", "lrkit.lab.runner"} & imported
