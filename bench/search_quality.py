"""The search benchmark as a script: the same implementation as `lrkit bench search` (lrkit.bench.search).

    OMP_NUM_THREADS=1 .venv/bin/python bench/search_quality.py --out lrkit-bench      # full: 9 problems x 2 optimizers
    OMP_NUM_THREADS=1 .venv/bin/python bench/search_quality.py --quick                # smoke run
    OMP_NUM_THREADS=1 .venv/bin/python bench/search_quality.py --problems blobs,digits_cnn --optimizers adam

Prints the regret table (per method: median and worst regret against the grid's best on held-out seeds, share of cells
within 10%, the CNN and sequence cells apart; per cell; the schedules' wins; the searches' wall time against the grid's;
the issue's targets, met or not) and writes bench_search.json and search_bench.md into --out.
"""

from __future__ import annotations

import sys

from lrkit.cli.bench import search

if __name__ == "__main__":
    search.main(args=sys.argv[1:], prog_name="search_quality.py")
