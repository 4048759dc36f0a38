"""The Ray scaling benchmark as a script: the same implementation as `lrkit bench ray-scaling` (lrkit.bench.ray_scaling).

    .venv/bin/python bench/ray_scaling.py --out lrkit-bench        # 16 lrs x 50 seeds = 800 members on blobs, 25 epochs, best of 2
    .venv/bin/python bench/ray_scaling.py --quick                  # smoke run

Runs the same lr study on the local engine (2 and 1 torch threads) and on local Rays: 1 worker with the local
engine's 2 cores and threads, 2 one-core workers, 1 one-core worker. Prints member-epochs per second, ray.init and
the workers' first start timed apart, a shard's fixed cost, the driver's commit rate, the model's predictions
against the measured runs and the issue's targets (met or not); writes ray_scaling.json and ray_scaling.md into --out.
Run it on a quiet machine (`uptime`): another job on the cores skews the side-by-side comparison.
"""

from __future__ import annotations

import sys

from lrkit.cli.bench import ray_scaling

if __name__ == "__main__":
    ray_scaling.main(args=sys.argv[1:], prog_name="ray_scaling.py")
