"""The finder benchmark as a script: the same implementation as `lrkit bench finder` (lrkit.bench.finder).

    OMP_NUM_THREADS=1 .venv/bin/python bench/finder_quality.py --out lrkit-bench      # full: 9 problems x 2 optimizers x 3 seeds
    OMP_NUM_THREADS=1 .venv/bin/python bench/finder_quality.py --quick                # smoke run

Prints the regret table (median and worst regret per rule, share of cells within 10% of the grid best, the finder's
cost as a fraction of the grid's) and writes JSON, markdown and PNG into --out.
"""

from __future__ import annotations

import sys

from lrkit.cli.bench import finder

if __name__ == "__main__":
    finder.main(args=sys.argv[1:], prog_name="finder_quality.py")
