"""PyTorch modules for volnet's containers, which ``torch.nn`` has no ready-made module for.

This module imports torch when it is imported; :mod:`volnet.interop.torch_bridge`
imports it only once torch is known to be installed. Each container keeps
its paths (each an ``nn.Sequential``) in ``paths``, in the order of the volnet
container's, so the bridge walks both trees side by side.
"""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """``body(x) + shortcut(x)``, volnet's :class:`~volnet.layers.Residual`; an empty shortcut is the identity."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    @property
    def paths(self) -> list[nn.Sequential]:
        return [self.body, self.shortcut]

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Concat(nn.Module):
    """Branches on the same input, stacked along channels: volnet's :class:`~volnet.layers.Concat` (and Inception)."""

    def __init__(self, branches: list[nn.Sequential]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    @property
    def paths(self) -> list[nn.Sequential]:
        return list(self.branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)
