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


class LrkitWarning(UserWarning):
    """What lrkit warns about (a search falling back to plain runs, ...): filter it with `warnings.simplefilter`.

    Example:
        >>> import warnings
        >>> issubclass(LrkitWarning, UserWarning)
        True
    """


class LrkitTypeError(LrkitValueError, TypeError):
    """A value of the wrong *type* (a string where an optimizer or a number is expected).

    It is a `TypeError`, as torch raises for wrong types, and also a `ValueError` and an
    `LrkitError`, so code that catches either keeps working. Each concern has its own
    child (`ScheduleTypeError`, ...), which is also that concern's error class.

    Example:
        >>> import lrkit
        >>> try:
        ...     lrkit.cosine(start="0.1", steps=10)
        ... except TypeError as e:
        ...     print(type(e).__name__, isinstance(e, lrkit.ScheduleError))
        ScheduleTypeError True
    """


class ScheduleTypeError(ScheduleError, LrkitTypeError):
    """A wrong type given to a schedule factory or `Scheduler`.

    Example:
        >>> issubclass(ScheduleTypeError, TypeError)
        True
    """


class ControlTypeError(ControlError, LrkitTypeError):
    """A wrong type given to a controller.

    Example:
        >>> issubclass(ControlTypeError, TypeError)
        True
    """


class FinderTypeError(FinderError, LrkitTypeError):
    """A wrong type given to the range test.

    Example:
        >>> issubclass(FinderTypeError, TypeError)
        True
    """


class LabTypeError(LabError, LrkitTypeError):
    """A wrong type given to the lab.

    Example:
        >>> issubclass(LabTypeError, TypeError)
        True
    """


class LandscapeTypeError(LandscapeError, LrkitTypeError):
    """A wrong type given to the landscape playground.

    Example:
        >>> issubclass(LandscapeTypeError, TypeError)
        True
    """


_TYPE_ERRORS: dict[type[LrkitValueError], type[LrkitTypeError]] = {
    LrkitValueError: LrkitTypeError,
    ScheduleError: ScheduleTypeError,
    ControlError: ControlTypeError,
    FinderError: FinderTypeError,
    LabError: LabTypeError,
    LandscapeError: LandscapeTypeError,
}


def type_error(error: type[LrkitValueError]) -> type[LrkitValueError]:
    """The class to raise for a wrong type in the concern of `error`: its `TypeError` child.

    Example:
        >>> type_error(LabError).__name__
        'LabTypeError'
    """
    if issubclass(error, TypeError):
        return error
    for cls in error.__mro__:
        if cls in _TYPE_ERRORS:
            return _TYPE_ERRORS[cls]  # type: ignore[index]
    return LrkitTypeError


def bad(func: str, param: str, requirement: str, value: Any) -> str:
    """The one message format of lrkit errors: function, parameter, requirement, value.

    Example:
        >>> bad("cosine", "steps", "must be a positive integer", 0)
        "cosine: parameter 'steps' must be a positive integer, got 0"
    """
    return f"{func}: parameter {param!r} {requirement}, got {value!r}"
