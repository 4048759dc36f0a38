"""The one place lrkit imports Keras: with the torch backend, chosen before Keras is first imported.

`load()` sets `KERAS_BACKEND=torch` (unless the environment already chose one), imports
Keras and refuses any other backend with a clear `lrkit.LrkitValueError`: lrkit's Keras
layer reads gradients and copies state as torch tensors, and needs no TensorFlow.

Example:
    >>> load().backend.backend()
    'torch'
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lrkit import validate
from lrkit.errors import LrkitValueError

BACKEND = "torch"


def load() -> Any:
    """Keras 3, imported with the torch backend; raises LrkitValueError if it runs on another one.

    Example:
        >>> load().__name__
        'keras'
    """
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", BACKEND)  # before the first import: Keras reads it once
    import keras

    backend = keras.backend.backend()
    if backend != BACKEND:
        requirement = "must be 'torch' for lrkit.keras (set KERAS_BACKEND=torch before Keras is first imported)"
        validate.fail("lrkit.keras", "KERAS_BACKEND", requirement, backend, LrkitValueError)
    return keras
