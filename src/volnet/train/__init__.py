"""Training: the trainer, checkpoints, mini-batches and evaluation."""

from .checkpoint import CheckpointError
from .loop import check_labelled, evaluate, iterate_minibatches, predict
from .run_folder import RunExists, RunFolder, RunFolderBusy, RunFolderError
from .trainer import (BatchProgress, Callback, EpochRecord, History, Trainer, TrainingDiverged, TrainingInterrupted,
                      balanced_class_weight, fit)

__all__ = ["Trainer", "fit", "balanced_class_weight", "evaluate", "predict", "iterate_minibatches", "check_labelled",
           "Callback", "BatchProgress", "EpochRecord", "History", "TrainingDiverged", "TrainingInterrupted",
           "CheckpointError", "RunFolder", "RunFolderError", "RunFolderBusy", "RunExists"]
