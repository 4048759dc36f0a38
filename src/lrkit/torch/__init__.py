"""Everything in lrkit that imports torch."""

from lrkit.torch.scheduler import Scheduler

__all__ = ["Scheduler"]
