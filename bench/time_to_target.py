"""The time-to-target benchmark as a script: the same implementation as `lrkit bench time-to-target` (lrkit.bench.time_to_target).

    OMP_NUM_THREADS=1 .venv/bin/python bench/time_to_target.py --out bench/results      # full: 3 problems x 3 seeds x 7 recipes
    OMP_NUM_THREADS=1 .venv/bin/python bench/time_to_target.py --quick                  # smoke run
    OMP_NUM_THREADS=1 .venv/bin/python bench/time_to_target.py --problems regression --recipes one_cycle,search

Prints, per problem and recipe, the seed-mean metric at each budget, the steps and wall seconds (tuning included) to
the target and their ratios to the tuned constant; the performance profile over wall seconds; the issue's goal, met or
not; and the folklore check (is 3e-4 Adam's best lr?). Writes time_to_target.json, time_to_target.md and
time_to_target_profile.png into --out.
"""

from __future__ import annotations

import sys

from lrkit.cli.bench import time_to_target

if __name__ == "__main__":
    time_to_target.main(args=sys.argv[1:], prog_name="time_to_target.py")
