"""Training on arrays in memory, in one call: :func:`fit` builds a :class:`~volnet.train.trainer.Trainer`
without a run folder (no checkpoints) and runs it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .callbacks import Callback
from .class_weight import balanced_class_weight
from .finetune import freeze as freeze_layers
from .history import History
from .restore import load_network_tensors
from .trainer import Trainer


@dataclass(frozen=True)
class _Arrays:
    images: np.ndarray
    labels: np.ndarray


def fit(net, images, labels, optimizer, *, epochs: int = 1, batch_size: int = 64, loss: str = "softmax",
        seed: int = 0, on_epoch=None, engine=None, val=None, keep_best: str | None = None,
        early_stop: int | None = None, freeze=None, class_weight=None) -> History:
    """Train ``net`` in place on arrays, without checkpoints; ``on_epoch(record)`` after each epoch.

    ``engine``: None (NumPy) or a :class:`volnet.interop.torch_engine.TorchEngine`.
    ``val``: ``(images, labels)`` evaluated after every epoch. ``keep_best`` (``"val_accuracy"`` or
    ``"val_loss"``): ``net`` ends with the weights of its best epoch, as Keras'
    ``EarlyStopping(restore_best_weights=True)``. ``early_stop``: stop after this many epochs
    without improvement. The history holds every epoch trained. ``freeze``: layers to freeze first
    (``"1-6"``, ``"CONV"``, or indices; see :func:`volnet.train.finetune.freeze`); an optimizer built on
    every parameter before any step is then rebuilt, same settings, on ``net.trainable_params()``.
    ``class_weight``: one weight per class for the loss's mean (Keras' ``class_weight``, as a list;
    ``"balanced"`` for :func:`balanced_class_weight` of ``labels``).
    """
    callbacks = []
    if on_epoch is not None:
        callback = Callback()
        callback.on_epoch = on_epoch
        callbacks.append(callback)
    val = _Arrays(np.asarray(val[0]), np.asarray(val[1])) if val is not None else None
    if freeze is not None:
        freeze_layers(net, freeze)
        if len(optimizer.params) != len(net.trainable_params()) and optimizer.steps == 0:
            from ..optim import optimizer_from_config

            optimizer = optimizer_from_config(net.trainable_params(), optimizer.get_config())
    trainer = Trainer(net, optimizer, _Arrays(np.asarray(images), np.asarray(labels)), val=val, epochs=epochs,
                      batch_size=batch_size, loss=loss, seed=seed, callbacks=callbacks, engine=engine,
                      keep_best=keep_best, early_stop=early_stop,
                      class_weight=balanced_class_weight(labels, net.output_shape[-1])
                      if isinstance(class_weight, str) and class_weight == "balanced" else class_weight)
    history = trainer.run()
    if trainer.best_weights is not None:
        load_network_tensors(net, trainer.best_weights, source="the best epoch")
    return history
