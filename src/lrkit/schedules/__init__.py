"""The pure schedule core: no torch, no matplotlib.

Every factory returns a frozen, picklable `Schedule`; see DESIGN.md for the
conventions (steps from 0, durations in steps, the last value holds).
"""

from lrkit.schedules.base import REGISTRY, Product, Scaled, Schedule
from lrkit.schedules.combinators import Clip, Join, PerEpoch, Warmup
from lrkit.schedules.cycles import SGDR, WSD, Cyclic, OneCycle
from lrkit.schedules.shapes import (
    Constant,
    Cosine,
    Exponential,
    InverseSqrt,
    InverseTime,
    Linear,
    MultiStep,
    Piecewise,
    Polynomial,
    StepDecay,
    piecewise,
)
from lrkit.schedules.spec import from_dict, parse
from lrkit.schedules.swa import Averaging, SWASchedule

# The public factories are the registered classes under the names users write.
constant = Constant
linear = Linear
polynomial = Polynomial
exponential = Exponential
inverse_time = InverseTime
inverse_sqrt = InverseSqrt
step_decay = StepDecay
multistep = MultiStep
cosine = Cosine
sgdr = SGDR
cyclic = Cyclic
one_cycle = OneCycle
wsd = WSD
warmup = Warmup
join = Join
clip = Clip
per_epoch = PerEpoch
swa_schedule = SWASchedule

__all__ = [
    "REGISTRY",
    "Averaging",
    "Piecewise",
    "Product",
    "Scaled",
    "Schedule",
    "clip",
    "constant",
    "cosine",
    "cyclic",
    "exponential",
    "from_dict",
    "inverse_sqrt",
    "inverse_time",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "parse",
    "per_epoch",
    "piecewise",
    "polynomial",
    "sgdr",
    "step_decay",
    "swa_schedule",
    "warmup",
    "wsd",
]
