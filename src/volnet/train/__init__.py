"""Training: mini-batch loop and evaluation."""

from .loop import EpochStats, evaluate, fit, iterate_minibatches, predict

__all__ = ["fit", "evaluate", "predict", "iterate_minibatches", "EpochStats"]
