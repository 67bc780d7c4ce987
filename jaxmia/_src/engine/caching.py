"""Caches keyed on what an object computes, not on which object it is.

The engine caches compiled programs and model structures per model factory and optimizer.
Keyed on object identity (``functools.cache``), every new but equal
``functools.partial(MyNet, 64)`` or ``optax.adam(1e-3)`` would compile again (seconds)
and stay in the cache forever. :func:`structural_key` instead reads an object's
structure: a partial's function and arguments, a function's code and the values in its
closure (how optax keeps an optimizer's hyperparameters), tuples, dicts, numbers and
arrays by value. Objects it cannot read are compared by identity, so a key never
mistakes two different computations for one. :func:`cache_by_structure` is a bounded
(least recently used) cache over such keys.

Example::

    key = structural_key(optax.adam(1e-3))
    assert key == structural_key(optax.adam(1e-3)) != structural_key(optax.adam(2e-3))
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import types
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["MAXSIZE", "CacheInfo", "cache_by_structure", "structural_key"]

MAXSIZE = 32
"""Default number of entries a :func:`cache_by_structure` cache keeps."""

_MAX_DEPTH = 64
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


class _Identity:
    """Compares and hashes by the identity of ``obj`` (and keeps it alive meanwhile)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


def _function_key(fn: types.FunctionType, read: Callable[[Any], Any]) -> tuple:
    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(read(cell.cell_contents))
        except ValueError:  # an empty cell
            cells.append("<empty cell>")
    return (
        types.FunctionType,
        fn.__module__,
        fn.__qualname__,
        fn.__code__,
        read(fn.__defaults__),
        read(fn.__kwdefaults__),
        tuple(cells),
    )


def _value_key(obj: Any) -> Any:
    """``obj`` itself when its type defines equality and it is hashable, else None."""
    if type(obj).__eq__ is object.__eq__:
        return None
    try:
        hash(obj)
    except TypeError:
        return None
    return obj


def structural_key(obj: Any) -> Any:
    """A hashable key, equal for objects that are built the same way.

    Args:
      obj: any Python object, e.g. a model factory or an optax transformation.

    Returns:
      A hashable value. Two ``functools.partial`` objects of the same function and equal
      arguments, two closures of the same code over equal values (``optax.adam(1e-3)``
      twice), equal tuples, dicts, numbers and arrays give equal keys. Anything else
      (an object without its own equality, a cycle) is keyed by identity.
    """
    active: set[int] = set()

    def read(o: Any, depth: int = 0) -> Any:
        if isinstance(o, _SCALARS):
            return (type(o), o)
        if isinstance(o, type | types.CodeType):
            return o
        if depth > _MAX_DEPTH or id(o) in active:
            return _Identity(o)
        active.add(id(o))
        try:
            return _compound(o, lambda v: read(v, depth + 1))
        finally:
            active.discard(id(o))

    return read(obj)


def _compound(o: Any, read: Callable[[Any], Any]) -> Any:
    if isinstance(o, functools.partial):
        return (functools.partial, read(o.func), read(o.args), read(o.keywords))
    if isinstance(o, types.FunctionType):
        return _function_key(o, read)
    if isinstance(o, types.MethodType):
        return (types.MethodType, read(o.__func__), read(o.__self__))
    if isinstance(o, tuple | list):
        return (type(o), tuple(read(v) for v in o))
    if isinstance(o, dict):
        return (type(o), tuple((read(k), read(v)) for k, v in o.items()))
    if isinstance(o, np.ndarray | np.generic | jax.Array):
        try:
            a = np.asarray(o)
            if a.dtype != object:
                return (np.ndarray, str(a.dtype), a.shape, a.tobytes())
        except Exception:  # a tracer or another object NumPy cannot read
            pass
    if dataclasses.is_dataclass(o) and not isinstance(o, type) and _value_key(o) is None:
        fields = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
        return (type(o), read(fields))
    value = _value_key(o)
    return _Identity(o) if value is None else value


class CacheInfo(NamedTuple):
    """Statistics of a :func:`cache_by_structure` cache (like ``functools``' own)."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


def cache_by_structure(maxsize: int = MAXSIZE) -> Callable[[Callable], Callable]:
    """Decorator: memoize a function on the :func:`structural_key` of its arguments.

    Arguments are bound to the signature first, so a default passed explicitly or left
    out gives the same key. Keeps the ``maxsize`` most recently used results. The
    wrapped function has
    ``cache_info()`` (a :class:`CacheInfo`) and ``cache_clear()``.
    """

    def decorate(fn: Callable) -> Callable:
        entries: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        counts = {"hits": 0, "misses": 0}
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def cached(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)  # f(a) and f(a, default) are one call
            bound.apply_defaults()
            key = structural_key(tuple(bound.arguments.items()))
            if key in entries:
                entries.move_to_end(key)
                counts["hits"] += 1
                return entries[key]
            counts["misses"] += 1
            value = fn(*args, **kwargs)
            entries[key] = value
            while len(entries) > maxsize:
                entries.popitem(last=False)
            return value

        def cache_clear() -> None:
            entries.clear()
            counts.update(hits=0, misses=0)

        cached.cache_info = lambda: CacheInfo(
            counts["hits"], counts["misses"], maxsize, len(entries)
        )
        cached.cache_clear = cache_clear
        return cached

    return decorate
