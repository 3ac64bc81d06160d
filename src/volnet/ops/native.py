"""A compiled kernel's call written down as data, which a worker thread makes from compiled code, without the GIL.

A worker of a split (:mod:`volnet.ops.handoff`) waits for its part in a
compiled loop that has released the GIL. Given a Python function, it must
take the GIL to run it, and the caller holds the GIL until its own part has
reached its kernel: the worker, asleep on the GIL meanwhile, started its
kernel 20-40 us after the caller (LeNet's first CONV at batch 64: a tenth of
its time; the virtual machines this project is measured on halt an idle
CPU, and waking it takes that long). Most parts of a split are one or two
calls of compiled kernels, so the caller writes those calls down instead,
and the worker's loop makes them itself:

- :func:`prepared` finds, once per kernel and argument types, the kernel's
  compiled function for those types (Numba's C-callable wrapper of each
  compiled function, as Numba's first-class functions call it) and compiles
  a trampoline for it: a function of one pointer that loads the arguments
  from there and calls the kernel;
- ``pack`` (:func:`functions`, compiled) stores a call's arguments in an int64 array as the
  trampoline loads them: each argument's native value, an array as Numba's
  array structure (its data pointer, shape and strides) with no reference
  to its memory: the caller keeps the arrays alive until the split ends.

A kernel is prepared for the overload its dispatcher has for the
arguments' types (exactly, or arrays of any layout), compiled first where
there is none, as a call would; anything but a compiled kernel gives None,
and the part runs as a Python function.

The wrapper is found by its symbol name, which Numba makes of the function's
qualified name, its argument types and a count of the compiles in the
process that compiled it. Two functions of one qualified name (closures of
one factory) compiled by two processes can get the same count, hence the
same name, and once both are loaded from Numba's disk cache a lookup by
that name finds one of them for both: every compiled function a worker
calls must have a qualified name of its own (:func:`volnet.ops.tiled.kernel`
names each tile's closure).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

_SLOT_BYTES = 8  # each argument starts on an int64 slot of the array that holds a call

_compiled = None  # (pack, call, fingerprint), made at the first prepared call
_prepared: dict = {}  # (dispatcher, fingerprints) -> Prepared, or None where the kernel does not compile for them
_trampolines: list = []  # the compiled trampolines' code libraries, alive as long as the process
_lock = threading.Lock()


@dataclass(frozen=True)
class Prepared:
    """A kernel's call for one set of argument types: its trampoline's address and the int64 slots its
    arguments take."""

    trampoline: int
    slots: int


def dispatcher_of(kernel):
    """The Numba dispatcher behind a compiled kernel (a :class:`volnet.ops.tiled.FlagCompiled`'s or a
    :func:`volnet.ops.jit.compiled` function's), the dispatcher itself, or None for anything else."""
    if hasattr(kernel, "overloads"):
        return kernel
    found = getattr(kernel, "dispatcher", None)
    return found() if callable(found) and not hasattr(found, "overloads") else found


def prepared(kernel, args: tuple) -> Prepared | None:
    """The :class:`Prepared` call of ``kernel`` on arguments of the types of ``args`` (compiled for them first
    where it is not, :func:`_takes`), or None where ``kernel`` is not a compiled kernel or its arguments not
    Numba's."""
    dispatcher = dispatcher_of(kernel)
    if dispatcher is None:
        return None
    _, _, fingerprint = functions()
    try:
        key = (dispatcher, tuple(fingerprint(a) for a in args))
    except NotImplementedError:  # what Numba raises for a value it has no type for (a str, a dict): a Python part
        return None
    found = _prepared.get(key, False)
    if found is False:
        with _lock:
            found = _prepared.get(key, False)
            if found is False:
                found = _prepared[key] = _prepare(dispatcher, args)
    return found


def _prepare(dispatcher, args: tuple) -> Prepared | None:
    """:func:`prepared`'s first look at a kernel and argument types: the trampoline of the overload that takes
    them, compiled first where there is none; None where the kernel does not compile for them."""
    from llvmlite import ir
    from numba.core.compiler_lock import global_compiler_lock

    types = tuple(dispatcher.typeof_pyval(a) for a in args)
    result = dispatcher.overloads.get(types)
    if result is None:  # a call the dispatcher serves with an overload for arrays of any layout
        result = next((found for signature, found in dispatcher.overloads.items()
                       if len(signature) == len(types) and all(map(_takes, signature, types))), None)
    if result is None:  # compiled now, as the caller's own call of it would (a FlagCompiled's under its flags)
        try:
            dispatcher.compile(types)
        except Exception:  # (Numba's typing errors): the part runs in Python, whose call raises it with context
            return None
        result = dispatcher.overloads.get(types)
        if result is None:
            return None
    types = result.signature.args
    context = result.target_context
    address = result.library.get_pointer_to_function(result.fndesc.llvm_cfunc_wrapper_name)
    value_types = [context.get_value_type(t) for t in types]
    callee_type = ir.FunctionType(context.get_value_type(result.fndesc.restype), value_types)

    name = f"volnet_trampoline_{len(_trampolines)}"
    module = context.create_module(name)
    slot = ir.IntType(64)
    trampoline = ir.Function(module, ir.FunctionType(ir.VoidType(), [slot.as_pointer()]), name)
    builder = ir.IRBuilder(trampoline.append_basic_block("entry"))
    values, offset = [], 0
    for value_type in value_types:
        pointer = builder.gep(trampoline.args[0], [ir.Constant(slot, offset)])
        values.append(builder.load(builder.bitcast(pointer, value_type.as_pointer())))
        offset += _slots(context, value_type)
    builder.call(builder.inttoptr(ir.Constant(slot, address), callee_type.as_pointer()), values)
    builder.ret_void()
    with global_compiler_lock:
        library = context.codegen().create_library(name)
        library.add_ir_module(module)
        library.finalize()
    _trampolines.append((library, result))  # (the kernel's own library too: its code must outlive the address)
    return Prepared(library.get_pointer_to_function(name), offset)


def _takes(parameter, argument) -> bool:
    """Whether a compiled function's ``parameter`` takes ``argument`` as it lies in memory: the same type, or an
    array of any layout ('A') for an array alike in all else."""
    from numba.core import types

    if parameter == argument:
        return True
    return (isinstance(parameter, types.Array) and isinstance(argument, types.Array) and parameter.layout == "A"
            and parameter.copy(layout=argument.layout) == argument)


def _slots(context, value_type) -> int:
    return -(-context.get_abi_sizeof(value_type) // _SLOT_BYTES)


def functions():
    """``(pack, call, fingerprint)``, compiled once (cached on disk).

    ``pack(calls, offset, args)``: store the tuple ``args`` in the int64 array ``calls`` from slot ``offset``
    on, as a trampoline of :func:`prepared` loads them; gives the slot after them. ``call(trampoline, calls,
    offset)`` (for compiled callers, inlined): run the trampoline on the arguments stored from slot ``offset``
    of ``calls``. ``fingerprint``: Numba's type fingerprint of a value (its dispatcher's, in C).
    """
    global _compiled, _store_arguments, _call_trampoline
    if _compiled is not None:
        return _compiled
    import numba
    from numba._dispatcher import compute_fingerprint

    _store_arguments, _call_trampoline = _intrinsics()
    _compiled = (numba.njit(nogil=True, cache=True)(_pack), numba.njit(nogil=True, cache=True, inline="always")(_call),
                 compute_fingerprint)
    return _compiled


# The intrinsics the compiled functions below call, set by functions(): module globals, not a closure, which
# Numba's disk cache would miss in every process (volnet.ops.handoff).
_store_arguments = _call_trampoline = None


def _intrinsics():
    """``(store_arguments, call_trampoline)``: the code of :func:`functions`' ``pack`` and ``call``."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def store_arguments(typingctx, calls, offset, args):
        def codegen(context, builder, signature, values):
            base = context.make_array(signature.args[0])(context, builder, values[0]).data
            position = values[1]
            for index, value_type in enumerate(signature.args[2].types):
                value = builder.extract_value(values[2], index)
                if isinstance(value_type, types.Array):  # no reference to the array's memory (see module doc)
                    array = context.make_array(value_type)(context, builder, value)
                    array.meminfo = cgutils.get_null_value(array.meminfo.type)
                    array.parent = cgutils.get_null_value(array.parent.type)
                    value = array._getvalue()
                stored = context.get_value_type(value_type)
                builder.store(value, builder.bitcast(builder.gep(base, [position]), stored.as_pointer()))
                position = builder.add(position, ir.Constant(position.type, _slots(context, stored)))
            return position

        return types.int64(calls, offset, args), codegen

    @intrinsic
    def call_trampoline(typingctx, trampoline, calls, offset):
        def codegen(context, builder, signature, values):
            base = context.make_array(signature.args[1])(context, builder, values[1]).data
            function_type = ir.FunctionType(ir.VoidType(), [ir.IntType(64).as_pointer()])
            function = builder.inttoptr(values[0], function_type.as_pointer())
            builder.call(function, [builder.gep(base, [values[2]])])
            return context.get_dummy_value()

        return types.void(trampoline, calls, offset), codegen

    return store_arguments, call_trampoline


def _pack(calls, offset, args):  # pragma: no cover - compiled
    return _store_arguments(calls, offset, args)


def _call(trampoline, calls, offset):  # pragma: no cover - compiled
    _call_trampoline(trampoline, calls, offset)
