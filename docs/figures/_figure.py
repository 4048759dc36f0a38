"""What the site's figure scripts share: the output folder (argv[1]) and one way to save a figure there."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")
import torch

torch.set_num_threads(1)
OUT = Path(sys.argv[1])


def save(fig: Any, name: str) -> None:
    """Write `fig` as OUT/name (the hook adds it to the site as figures/name)."""
    import matplotlib.pyplot as plt

    fig.savefig(OUT / name, dpi=90, bbox_inches="tight")
    plt.close(fig)
