"""MkDocs hook: every figure on the site is drawn by running `docs/figures/*.py` while the site builds.

Each script takes one argument, a folder, and writes its PNGs there; the hook adds
them to the build as `figures/<name>.png`, so no picture is committed and none goes stale.
A script that fails fails the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

FIGURES = Path(__file__).parent / "figures"
_OUT = tempfile.TemporaryDirectory(prefix="lrkit-docs-figures-")  # lives as long as the mkdocs process


def on_files(files: Files, config: Any) -> Files:
    """Run every figure script into a temporary folder and add what it drew to the site."""
    out = Path(_OUT.name)
    env = {**os.environ, "MPLBACKEND": "Agg", "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    for script in sorted(FIGURES.glob("[!_]*.py")):
        subprocess.run([sys.executable, str(script), str(out)], check=True, env=env, cwd=FIGURES.parent.parent)
    for png in sorted(out.glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files
