"""The lab: classic learning-rate studies on small problems, many seeds, one batched population.

`study(name, ...)` runs a study and returns a `StudyResult`; `train(problem, members)`
trains any population of `Member`s at once; `get_problem` builds the problems.
Names load on first use, so `import lrkit.lab` imports neither torch nor matplotlib.

Example:
    >>> import lrkit.lab
    >>> r = lrkit.lab.study("lr", values=[0.1], seeds=1, epochs=1)
    >>> r.values
    ['0.1']
"""

from __future__ import annotations

from lrkit._lazy import lazy_attributes

_LAZY = {
    "study": "lrkit.lab.runner",
    "members_of": "lrkit.lab.runner",
    "StudyResult": "lrkit.lab.results",
    "STUDIES": "lrkit.lab.studies",
    "Member": "lrkit.lab.population",
    "PopulationResult": "lrkit.lab.population",
    "train": "lrkit.lab.population",
    "Optim": "lrkit.optim",
    "FAMILIES": "lrkit.optim",
    "Problem": "lrkit.lab.problems",
    "PROBLEMS": "lrkit.lab.problems",
    "get_problem": "lrkit.lab.problems",
    "compare_lr_free": "lrkit.lab.lrfree",
    "LRFreeResult": "lrkit.lab.lrfree_result",
    "pbt": "lrkit.lab.pbt_tune",
    "PBTResult": "lrkit.lab.pbt_result",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
