"""The training engine: config and defaults, the loop and its callbacks, run directories."""
from .callbacks import EVENTS, Callback, Checkpoint, EarlyStopping, MetricsCSV, ProgressBar, TensorBoard
from .config import TrainConfig
from .trainer import Trainer, TrainingDiverged

__all__ = ["EVENTS", "Callback", "Checkpoint", "EarlyStopping", "MetricsCSV", "ProgressBar", "TensorBoard",
           "TrainConfig", "Trainer", "TrainingDiverged"]
