"""Controllers without torch: pure state records and update functions (plateau, early stopping)."""

from lrkit.control.early_stopping import EarlyStopping, EarlyStoppingState
from lrkit.control.plateau import Plateau, PlateauState

__all__ = ["EarlyStopping", "EarlyStoppingState", "Plateau", "PlateauState"]
