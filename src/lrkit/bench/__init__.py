"""Benchmarks shipped with lrkit (run by `lrkit bench ...` and the scripts in bench/).

`lrkit.bench.finder` measures how good the range test's suggestions are against
a grid search of constant learning rates on the built-in problems.
"""
