"""Numba, optional: whether the compiled kernels run, and the decorator that compiles them on first use.

Numba is an optional dependency (``pip install numba``, or the ``fast``
extra). Without it, or with ``VOLNET_NUMBA=0``, :data:`ENABLED` is False and
every kernel that needs it (Winograd, direct convolution, compiled pooling)
is left out of the plans: im2col and NumPy's pooling passes give the same
numbers up to float rounding.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading

# Whether Numba is installed, asked without importing it: importing Numba takes
# about 0.3 s, so it happens at the first compiled call (see compiled), not at
# `import volnet`.
ENABLED = (importlib.util.find_spec("numba") is not None
           and os.environ.get("VOLNET_NUMBA", "1").strip() != "0")


def compiled(function):
    """A kernel Numba compiles (cached on disk) at its first call, when Numba is first imported.

    Called only where :data:`ENABLED`; the wrapper costs one Python call per
    block of images, next to a compiled loop over the whole block.
    """
    jitted = None
    compiling = threading.Lock()  # the parts of a split (volnet.ops.threads) may make the first call together

    def dispatcher():
        """Numba's dispatcher of the kernel, made at the first call (volnet.ops.native calls it from compiled
        code)."""
        nonlocal jitted
        if jitted is None:
            with compiling:
                if jitted is None:
                    import numba

                    jitted = numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")(function)
        return jitted

    @functools.wraps(function)
    def kernel(*args):
        return (dispatcher() if jitted is None else jitted)(*args)

    kernel.dispatcher = dispatcher
    return kernel
