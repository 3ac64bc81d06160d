"""Training: the trainer, checkpoints, mini-batches and evaluation."""

from .callbacks import BatchProgress, Callback
from .checkpoint import CheckpointError
from .class_weight import balanced_class_weight
from .fitting import fit
from .history import EpochRecord, History
from .loop import check_labelled, evaluate, iterate_minibatches, predict
from .run_folder import RunExists, RunFolder, RunFolderBusy, RunFolderError
from .stops import TrainingDiverged, TrainingInterrupted
from .trainer import Trainer

__all__ = ["Trainer", "fit", "balanced_class_weight", "evaluate", "predict", "iterate_minibatches", "check_labelled",
           "Callback", "BatchProgress", "EpochRecord", "History", "TrainingDiverged", "TrainingInterrupted",
           "CheckpointError", "RunFolder", "RunFolderError", "RunFolderBusy", "RunExists"]
