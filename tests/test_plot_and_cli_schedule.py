"""plot_schedule returns a Figure with the schedules drawn; `lrkit schedule` writes it to a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from click.testing import CliRunner
from matplotlib.figure import Figure

import lrkit
from lrkit.cli import cli

COS = lrkit.cosine(start=0.1, steps=100, end=0.001)
WARM = lrkit.warmup(lrkit.constant(0.05), steps=20)


def test_one_schedule_is_one_line_with_its_repr_as_label() -> None:
    fig = lrkit.plot_schedule(COS, 100)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    assert line.get_label() == repr(COS)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(100))
    np.testing.assert_array_equal(line.get_ydata(), COS.values(range(100)))
    assert ax.get_yscale() == "linear" and ax.get_xlabel() == "optimizer step" and ax.get_ylabel() == "learning rate"


def test_several_schedules_share_one_axis_with_labels_log_scale_and_title() -> None:
    fig = lrkit.plot_schedule([COS, WARM], 50, labels=["cosine", "warmup"], log=True, title="two")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["cosine", "warmup"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cosine", "warmup"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), WARM.values(range(50)))
    assert ax.get_yscale() == "log" and ax.get_title() == "two"


@pytest.mark.parametrize(
    ("args", "kwargs", "param"),
    [
        (([], 10), {}, "schedules"),
        (([COS, 0.1], 10), {}, "schedules"),
        (("cosine(start=0.1, steps=10)", 10), {}, "schedules"),
        ((COS, 0), {}, "steps"),
        ((COS, 10.0), {}, "steps"),
        (([COS, WARM], 10), {"labels": ["only one"]}, "labels"),
    ],
)
def test_plot_schedule_rejects_bad_input(args: tuple[object, ...], kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(lrkit.ScheduleError, match=rf"^plot_schedule: parameter '{param}'"):
        lrkit.plot_schedule(*args, **kwargs)  # type: ignore[arg-type]


def test_cli_writes_a_png_and_prints_values(tmp_path: Path) -> None:
    out = tmp_path / "figs" / "s.png"
    specs = ["warmup(cosine(start=0.1, steps=90), steps=10)", "one_cycle(peak=0.1, total_steps=100)"]
    result = CliRunner().invoke(cli, ["schedule", *specs, "--steps", "100", "--log", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in result.output
    assert "warmup(cosine(start=0.1, steps=90), steps=10): step 0 0, step 50 0.05868, step 99 3.046e-05" in result.output


def test_cli_per_epoch_counts_epochs(tmp_path: Path) -> None:
    out = tmp_path / "s.svg"
    result = CliRunner().invoke(
        cli, ["schedule", "step_decay(start=1.0, factor=0.5, every=1)", "--per-epoch", "10", "--steps", "41", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "step 0 1, step 20 0.25, step 40 0.0625" in result.output and out.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    "args",
    [
        ["cosine(start=0.1, steps=0)"],
        ["cosin(start=0.1, steps=10)"],
        ["__import__('os').system('true')"],
        ["cosine(start=0.1, steps=10"],
        ["cosine(start=0.1, steps=10)", "--out", "plot.txt"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the default --out would land
    result = CliRunner().invoke(cli, ["schedule", *args], catch_exceptions=False)
    assert not list(tmp_path.iterdir())  # no figure half-written
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrkit: error: ") and "Traceback" not in result.output, result.output


def test_cli_help() -> None:
    result = CliRunner().invoke(cli, ["schedule", "--help"])
    assert result.exit_code == 0 and "--per-epoch" in result.output and "--log" in result.output
