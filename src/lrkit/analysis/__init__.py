"""Pure functions over recorded curves (no torch, no matplotlib): the range test's suggestion rules
(`lrkit.analysis.suggest`) and the training diagnostics (`lrkit.analysis.diagnose`).

Example:
    >>> from lrkit.analysis import suggest
    >>> suggest.minimum([1e-3, 1e-2, 1e-1], [3.0, 1.0, 2.0])
    0.001
"""
