"""The errors lrkit raises: one base class, children by concern.

Every error names the function, the parameter and the offending value, so a
user can fix the call without reading lrkit's source.

Example:
    >>> import lrkit
    >>> try:
    ...     lrkit.cosine(start=0.1, steps=0)
    ... except lrkit.ScheduleError as e:
    ...     print(e)
    cosine: parameter 'steps' must be a positive integer, got 0
"""

from __future__ import annotations

from typing import Any


class LrkitError(Exception):
    """Base of every error lrkit raises on purpose.

    Example:
        >>> issubclass(LrkitError, Exception)
        True
    """


class LrkitValueError(LrkitError, ValueError):
    """Bad input: a value, a name or a combination that lrkit rejects.

    Example:
        >>> issubclass(LrkitValueError, ValueError)
        True
    """


class ScheduleError(LrkitValueError):
    """Bad input to a schedule factory, `parse`, `from_dict` or `Scheduler`.

    Example:
        >>> issubclass(ScheduleError, ValueError)
        True
    """


class ControlError(LrkitValueError):
    """Bad input to a controller (Plateau, EarlyStopping, Guard, Monitor).

    Example:
        >>> issubclass(ControlError, LrkitError)
        True
    """


class FinderError(LrkitValueError):
    """Bad input to the learning-rate range test.

    Example:
        >>> issubclass(FinderError, LrkitError)
        True
    """


class LabError(LrkitValueError):
    """Bad input to the lab (problems, populations, studies).

    Example:
        >>> issubclass(LabError, LrkitError)
        True
    """


class LandscapeError(LrkitValueError):
    """Bad input to the landscape playground.

    Example:
        >>> issubclass(LandscapeError, LrkitError)
        True
    """


class DivergenceError(LrkitError, RuntimeError):
    """Training diverged more often than a Guard was allowed to repair.

    Example:
        >>> issubclass(DivergenceError, RuntimeError)
        True
    """


def bad(func: str, param: str, requirement: str, value: Any) -> str:
    """The one message format of lrkit errors: function, parameter, requirement, value.

    Example:
        >>> bad("cosine", "steps", "must be a positive integer", 0)
        "cosine: parameter 'steps' must be a positive integer, got 0"
    """
    return f"{func}: parameter {param!r} {requirement}, got {value!r}"
