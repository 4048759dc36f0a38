"""The shared CLI option types refuse an output or a device that cannot work, before any work, with exit 2."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lrkit.cli._options import DEVICE, OUT_DIR, OUT_FILE, device_problem, writable_dir


@click.command()
@click.option("--out", type=OUT_DIR)
@click.option("--file", "file_", type=OUT_FILE)
@click.option("--device", type=DEVICE)
def _probe(out: Path | None, file_: Path | None, device: str | None) -> None:
    click.echo(f"ran {out} {file_} {device}")


def _blocked(tmp_path: Path) -> list[str]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return ["/proc/lrkit-x", str(a_file), str(a_file / "under")]


def test_unwritable_out_folders_exit_2_with_one_line(tmp_path: Path) -> None:
    for bad in _blocked(tmp_path):
        r = CliRunner().invoke(_probe, ["--out", bad])
        assert r.exit_code == 2, (bad, r.output)
        assert "ran" not in r.output and "Traceback" not in r.output
        assert "cannot write to folder" in r.output


def test_unwritable_out_files_exit_2(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad in ["/proc/lrkit-x/s.png", str(a_file / "s.png"), str(tmp_path)]:
        r = CliRunner().invoke(_probe, ["--file", bad])
        assert r.exit_code == 2, (bad, r.output)
        assert "cannot write file" in r.output


def test_a_new_nested_folder_is_made_and_left_empty(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper"
    assert writable_dir(target) is None
    assert target.is_dir() and list(target.iterdir()) == []
    r = CliRunner().invoke(_probe, ["--out", str(target), "--file", str(tmp_path / "x" / "s.png"), "--device", "cpu"])
    assert r.exit_code == 0 and r.output.startswith("ran ")


@pytest.mark.parametrize("name", ["nosuch", "cuda:99", "gpu", ""])
def test_bad_devices_are_refused(name: str) -> None:
    import torch

    if name == "cuda:99" and torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    assert device_problem(name) is not None
    r = CliRunner().invoke(_probe, ["--device", name])
    assert r.exit_code == 2 and "Traceback" not in r.output
