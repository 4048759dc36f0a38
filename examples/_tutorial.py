"""What every tutorial script shares: one CPU thread, a folder for its figures, and its findings as one JSON line.

Each script takes the figures' folder as its first argument, else `$LRKIT_EXAMPLES_OUT`, else a new
temporary folder; it prints its findings in words with the numbers, and ends with one line
`FINDINGS {...}` (JSON) that `tests/test_examples.py` reads and checks.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the HF model is built from a config: nothing is downloaded

import torch

torch.set_num_threads(1)  # "under a minute on one CPU core" is measured like this


def out_dir() -> Path:
    """The figures' folder: argv[1], else $LRKIT_EXAMPLES_OUT, else a new temporary folder."""
    chosen = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LRKIT_EXAMPLES_OUT")
    path = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="lrkit-example-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(fig: Any, out: Path, name: str) -> None:
    """Write a matplotlib figure as `out/name` and say where."""
    import matplotlib.pyplot as plt

    fig.savefig(out / name, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"  figure: {out / name}")


def findings(data: dict[str, Any]) -> None:
    """The last line of every tutorial: its findings as JSON, for the test to check."""
    print("FINDINGS " + json.dumps(data, sort_keys=True))
