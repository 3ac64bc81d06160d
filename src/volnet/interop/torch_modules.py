"""PyTorch modules for volnet layers that ``torch.nn`` has no ready-made module for: containers, locally connected.

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


class LocallyConnected2d(nn.Module):
    """volnet's :class:`~volnet.layers.LocallyConnected`: a convolution whose filters differ at every position.

    PyTorch has no such module (pytorch/pytorch#499). Input ``(N, C, H, W)``,
    already zero-padded; output ``(N, K, H2, W2)`` with ``H2 = (H - F)/S + 1``.
    ``unfold`` cuts the ``L = H2*W2`` receptive fields into columns of
    ``C*F*F`` values (channel-major, as ``unfold`` orders them), then one
    batched matrix multiply gives every position its own filters:

    ``out[n, :, l] = columns[n, :, l] @ weight[l] + bias[:, l]``

    Parameters: ``weight`` ``(L, C*F*F, K)`` and ``bias`` ``(K, H2, W2)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                 out_hw: tuple[int, int]):
        super().__init__()
        self.kernel_size, self.stride, self.out_hw = tuple(kernel_size), tuple(stride), tuple(out_hw)
        positions, fan_in = out_hw[0] * out_hw[1], in_channels * kernel_size[0] * kernel_size[1]
        self.weight = nn.Parameter(torch.empty(positions, fan_in, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels, *out_hw))

    def forward(self, x):
        columns = nn.functional.unfold(x, self.kernel_size, stride=self.stride)  # (N, C*F*F, L)
        out = torch.bmm(columns.permute(2, 0, 1), self.weight)  # (L, N, K)
        return out.permute(1, 2, 0).reshape(x.shape[0], -1, *self.out_hw) + self.bias

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, out_hw={self.out_hw}"
