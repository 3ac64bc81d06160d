"""Compiling register-tiled kernels with Numba: the host's instruction set, LLVM's vectoriser flags, the
helpers a kernel keeps its tile in, and one compiled dispatcher per tile.

:mod:`volnet.ops.direct` and :mod:`volnet.ops.direct_input` write their kernels as factories
``make(PW, KB)`` of plain Python loops over a tile whose sizes are closure constants; :func:`kernel` compiles
each (on first use, cached on disk) with the flags those loops need (:func:`compile_flags`; why each is
needed: the module docstring of :mod:`volnet.ops.direct`). Numba is imported at the first compile, not here.
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager


@functools.lru_cache(maxsize=1)
def isa() -> str:
    """The vector instruction set Numba compiles the kernels for, as their tiles know it: ``"avx512"``,
    ``"avx2"`` or ``"portable"``. That is the host CPU's (as llvmlite reports its features), unless Numba's
    ``NUMBA_CPU_FEATURES`` names others: ``NUMBA_CPU_NAME=generic``, set for caches shared between machines,
    empties them, and Numba then emits baseline x86-64 code, on which the AVX-512 tile spilled and LeNet's
    14x14x16->32 forward ran 5x slower (1.6 -> 8.0 ms at batch 64)."""
    import llvmlite.binding as llvm
    from numba.core import config

    if config.CPU_FEATURES is None:
        features = llvm.get_host_cpu_features()
    else:
        features = {name[1:]: True for name in config.CPU_FEATURES.split(",") if name.startswith("+")}
    if features.get("avx512f"):
        return "avx512"
    if features.get("avx2") and features.get("fma"):
        return "avx2"
    return "portable"


COMPILING = threading.RLock()  # one compile at a time: the vectoriser flags are process-wide


@contextmanager
def compile_flags(loop_vectorize: bool = False):
    """Numba's SLP vectoriser on and loop vectoriser off (on too with ``loop_vectorize``), restored afterwards
    (read when a kernel compiles)."""
    from numba.core import config

    saved = config.SLP_VECTORIZE, config.LOOP_VECTORIZE
    config.SLP_VECTORIZE, config.LOOP_VECTORIZE = 1, int(loop_vectorize)
    try:
        yield
    finally:
        config.SLP_VECTORIZE, config.LOOP_VECTORIZE = saved


# The compiled helpers the kernels call, set by numba_helpers at the first compile (Numba is imported only
# then). The kernels read them as globals, so that their closures hold only the tile sizes: Numba keys its
# disk cache of a closure by the closure's values, and a closure over these objects missed it every time.
stack_array = carray = at_least = larger = output_column = unsigned = prange = None


def numba_helpers() -> None:
    """Set :data:`stack_array`, :data:`carray`, :data:`at_least` and :data:`unsigned` (once).

    ``stack_array(size, dtype)``: a pointer to ``size`` values on the stack (size a literal), which LLVM
    keeps in registers where every index into it is a constant after unrolling. On AVX-512 hosts it also
    marks the kernel that calls it to prefer 512-bit vectors: LLVM's tuning for Intel's AVX-512 CPUs prefers
    256-bit ones, which halves the tile's width and slows it (docs/performance-log.md, issue 23).
    ``at_least(value, floor)``: ``max(value, floor)`` that keeps
    NaN (a diverging network shows NaN, not the ReLU's floor). ``larger(best, value)``: a max pool's step,
    ``value`` where it is larger or NaN (NaN wins and stays, as in :mod:`volnet.ops.pool_kernels`).
    ``output_column(j, s, pool, ox, xs)``: ``(column, opening)`` of output pixel ``j`` on row ``s`` of a block of
    ``pool`` rows, max pooled ``pool x pool`` into one (``pool`` 1: none), written at ``ox + column * xs``;
    ``opening`` where it is the block's first value (stored, not pooled into what is there).
    """
    global stack_array, carray, at_least, larger, output_column, unsigned, prange
    if stack_array is not None:
        return
    import numba
    from numba.core import cgutils, errors, types
    from numba.extending import intrinsic

    @intrinsic
    def stack_array_(typingctx, size, dtype):
        if not isinstance(size, types.IntegerLiteral):
            raise errors.RequireLiteralValue(size)
        element = dtype.dtype

        def codegen(context, builder, signature, args):
            if isa() == "avx512":  # LLVM prefers 256-bit vectors on these CPUs; the tile is sized for 512
                set.add(builder.function.attributes, '"prefer-vector-width"="512"')
            return cgutils.alloca_once(builder, context.get_value_type(element), size=size.literal_value)

        return types.CPointer(element)(size, dtype), codegen

    @numba.njit(inline="always")
    def at_least_(value, floor):  # pragma: no cover - compiled
        return floor if value < floor else value

    @numba.njit(inline="always")
    def larger_(best, value):  # pragma: no cover - compiled
        return value if (value > best) | (value != value) else best

    @numba.njit(inline="always")
    def output_column_(j, s, pool, ox, xs):  # pragma: no cover - compiled
        if pool == 1:  # (no division where nothing is pooled, nor for the common 2 x 2)
            return numba.uint64(ox + j * xs), True
        if pool == 2:
            return numba.uint64(ox + (j >> 1) * xs), s == 0 and (j & 1) == 0
        return numba.uint64(ox + (j // pool) * xs), s == 0 and j % pool == 0

    carray, at_least, stack_array, unsigned, prange = numba.carray, at_least_, stack_array_, numba.uint64, numba.prange
    larger, output_column = larger_, output_column_


# Kernels compiled ``parallel`` (Numba's prange) start their threads from compiled code, without the GIL: one
# image's output rows split over the cores at the cost of a call (118 -> 61 us for a 32x32x32->32 3x3 forward
# on two cores), where volnet's own threads, which need the GIL to start a kernel, lost a third of that
# (docs/threads.md). Only Numba's OpenMP and TBB threading layers may be called from several threads at
# once; GNU OpenMP must not be used again in a child forked after the parent used it.
THREADSAFE_LAYERS = ("omp", "tbb")
_parallel_process = None  # the process that ran parallel kernels first (a forked child runs them in one piece)
_calling_thread = threading.local()  # .threads: the count this thread last gave Numba


def parallel_threads(cores: int) -> int:
    """Threads a ``parallel`` kernel may take for one call on ``cores`` cores: ``cores`` (at most Numba's
    thread count) where Numba's threading layer is thread-safe (:data:`THREADSAFE_LAYERS`) and no parent
    used it before a fork, else 1 (the caller then runs the plain kernel)."""
    global _parallel_process
    if cores < 2 or _threading_layer() not in THREADSAFE_LAYERS:
        return 1
    if _parallel_process != os.getpid():
        if _parallel_process is not None:
            return 1
        _parallel_process = os.getpid()
    threads = min(cores, _numba_threads())
    if getattr(_calling_thread, "threads", None) != threads:  # (Numba's count is a setting of each thread)
        import numba

        numba.set_num_threads(threads)
        _calling_thread.threads = threads
    return threads


@functools.lru_cache(maxsize=1)
def _numba_threads() -> int:
    import numba

    return numba.config.NUMBA_NUM_THREADS


@functools.lru_cache(maxsize=1)
def _threading_layer() -> str | None:
    """The threading layer Numba will start, as its own choice makes it (``NUMBA_THREADING_LAYER``, then the
    first of its priority list whose library loads), asked without starting any threads."""
    import importlib

    from numba.core import config

    requested = str(config.THREADING_LAYER).lower()
    candidates = {"default": list(config.THREADING_LAYER_PRIORITY), "safe": ["tbb"], "threadsafe": ["tbb", "omp"],
                  "forksafe": ["tbb", "workqueue"]}.get(requested, [requested])
    for layer in candidates:
        try:
            importlib.import_module("numba.np.ufunc." + (f"{layer}pool" if layer != "workqueue" else layer))
        except ImportError:
            continue
        return layer
    return None


KERNELS: dict = {}  # (make, PW, KB, parallel, loop_vectorize) -> its FlagCompiled


def kernel(make, PW: int, KB: int, parallel: bool = False, loop_vectorize: bool = False):
    """The compiled kernel ``make(PW, KB)`` (compiled and cached on disk at its first call, under
    :func:`compile_flags`, with ``loop_vectorize`` as given); ``parallel``: its loop over rows on Numba's threads."""
    key = (make, PW, KB, parallel, loop_vectorize)
    compiled = KERNELS.get(key)
    if compiled is None:
        with COMPILING:
            compiled = KERNELS.get(key)
            if compiled is None:
                import numba

                numba_helpers()
                source = make(PW, KB)
                # A name of its own for each tile: Numba names compiled code by the function's qualified name and a
                # count of the compiles in the process that compiled it, so two tiles compiled by two processes
                # had one symbol name when both came from the disk cache, and a call by that name
                # (volnet.ops.native) ran the other tile's code (docs/performance-log.md, issue 23)
                source.__qualname__ += f".tile_{PW}x{KB}" + (".parallel" if parallel else "")
                dispatcher = numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy",
                                        fastmath={"contract"}, parallel=parallel)(source)
                dispatcher.compile = _under_flags(dispatcher.compile, loop_vectorize)
                compiled = KERNELS[key] = FlagCompiled(dispatcher)
    return compiled


def _under_flags(compile_, loop_vectorize: bool = False):
    """``compile_`` (a dispatcher's ``compile``, which its calls with new argument types also go through)
    run under :func:`compile_flags`. Compiled without them, a kernel ran 25-50x slower (ResNet-18's 3x3
    32x32x64->64 forward at batch 1: 0.5 -> 13 ms), and Numba's disk cache, whose key does not hold the
    flags, then served that code to every later process: a call with contiguous arrays after a first call
    with a strided one had compiled its overload outside the flags."""

    @functools.wraps(compile_)
    def compile_under_flags(signature):
        with COMPILING, compile_flags(loop_vectorize):
            return compile_(signature)

    return compile_under_flags


class FlagCompiled:
    """A dispatcher whose compiles for new argument types run under :func:`compile_flags`.

    The first call for a dtype compiles (or loads from Numba's disk cache) the kernel for the call's argument
    types, under the flags. A network's first step runs every layer and so compiles all the kernels it
    needs (``tests/analysis`` measures steps after the first, where a compile's few retained MB would show).
    Compiling every tile width of the dtype at once, as this did before, cost LeNet's first run a kernel it
    no longer takes (1.1 s of compile: docs/performance-log.md).
    """

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.compiled = set()  # the dtypes compiled for (every call passes its arrays in one dtype)

    def __call__(self, *args):
        dtype = args[0].dtype
        if dtype not in self.compiled:
            self.compile(tuple(self.dispatcher.typeof_pyval(a) for a in args), dtype)
        return self.dispatcher(*args)

    def compile(self, types, dtype) -> None:
        if dtype not in self.compiled:
            self.dispatcher.compile(types)  # (under the flags: kernel)
            self.compiled.add(dtype)
