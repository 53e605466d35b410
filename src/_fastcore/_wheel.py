"""Compiled ``_fastcore._wheel``: the hashed timer wheel (twin: ``_wheel_py``).

The wheel itself is self-contained C (wheel_impl.c, through cffi): deadlines,
ticks, handles, buckets and a handle table, with O(1) insert and cancel.
This module is a thin shell that keeps the Python objects and validates.

Layout: ``_items[node]`` holds the item of the entry in C node ``node`` (None
once the node is free or fired; the list doubles when the C pool hands out a
node index past its end). ``_odd`` maps a node to its deadline when that deadline
was not a ``float`` (an ``int``, say) so `next_deadline` returns the very
object the twin returns. ``_next`` is the next handle, numbered as the twin
numbers them.
Invariants: one FFI crossing per insert (float deadline) and cancel (int
handle); expire crosses once when at most ``_BATCH`` entries fire, then once
per further batch. The C calls keep the GIL (see _wheel_build.py), so each is
atomic for other threads; like the twin, a wheel is not meant to be shared.
Complexity: as the twin: insert/cancel O(1); expire O(visited buckets + fired
entries); next_deadline O(nslots) worst case.

Deadlines are compared as C doubles: exact for every float and every value a
double represents exactly (ints up to 2**53 ...). A deadline or *now* that is
not such a value (an int above 2**53, ``Fraction(1, 3)``) is compared through
its nearest double, where the twin compares exactly.
"""

from __future__ import annotations

import math
from typing import final

from ._wheel_cffi import ffi, lib

_MAX_TICK = 2**62
_BATCH = 256  # node indices returned per crossing by expire

_new = lib.tw_new
_free = lib.tw_free
_insert = lib.tw_insert
_cancel = lib.tw_cancel
_find = lib.tw_find
_expire = lib.tw_expire
_take = lib.tw_take
_next_deadline = lib.tw_next_deadline
_next_index = lib.tw_next_index
_len = lib.tw_len
_unpack = ffi.unpack
_NOTFINITE = lib.TW_NOTFINITE


@final
class TimerWheel:
    """Deadlines (floats, in the owner's clock) mapped to opaque items."""

    __slots__ = ("_buf", "_items", "_next", "_odd", "_res", "_w")

    def __init__(self, resolution: float = 0.01, slots: int = 1024, now: float = 0.0) -> None:
        if not (isinstance(resolution, (int, float)) and 0 < resolution < math.inf):
            msg = f"resolution must be a positive finite number, got {resolution!r}"
            raise ValueError(msg)
        if type(slots) is not int or slots < 2 or slots & (slots - 1):
            msg = f"slots must be a power of two >= 2, got {slots!r}"
            raise ValueError(msg)
        res = float(resolution)
        start = float(now)
        _check_tick(start, res)
        try:
            wheel = _new(res, slots, start)
        except OverflowError:  # more slots than a uint64_t counts
            wheel = ffi.NULL
        if wheel == ffi.NULL:
            raise MemoryError
        self._w = ffi.gc(wheel, _free)
        self._res = res
        self._buf = ffi.new("uint32_t[]", _BATCH)
        self._items: list[object] = []  # [node index] -> item
        self._odd: dict[int, object] = {}  # {node index: deadline that is not a float}
        self._next = 1

    def insert(self, deadline: float, item: object) -> int:
        """Schedule *item* at *deadline*; returns a handle (an int > 0, never reused)."""
        if type(deadline) is not float:
            return self._insert_odd(deadline, item)
        handle = self._next
        node = _insert(self._w, deadline, handle)
        if node < 0:
            _insert_failed(node, deadline)
        self._next = handle + 1
        try:
            self._items[node] = item
        except IndexError:  # a node the pool never handed out before
            self._grow_items(node, item)
        return handle

    def _grow_items(self, node: int, item: object) -> None:
        # double, so that growing the C pool costs O(log n) IndexErrors
        items = self._items
        items += [None] * max(node + 1 - len(items), len(items), 64)
        items[node] = item

    def _insert_odd(self, deadline: float, item: object) -> int:
        _check_tick(deadline, self._res)  # the twin's checks, errors and all
        handle = self.insert(float(deadline), item)
        self._odd[_find(self._w, handle)] = deadline
        return handle

    def cancel(self, handle: int) -> bool:
        """Forget a pending entry; False when it already fired, was cancelled or is unknown."""
        if type(handle) is not int:
            return self._cancel_odd(handle)
        try:
            node = _cancel(self._w, handle)
        except OverflowError:  # beyond int64: never a handle
            return False
        if node < 0:
            return False
        self._items[node] = None
        if self._odd:
            self._odd.pop(node, None)
        return True

    def _cancel_odd(self, handle: object) -> bool:
        # The twin pops *handle* from a dict of int handles: a pending handle h
        # matches when hash(handle) == hash(h) == h and h == handle (True, 1.0);
        # an unhashable handle raises TypeError, unless the dict is empty
        if not _len(self._w):
            return False
        key = hash(handle)
        if _find(self._w, key) < 0 or not key == handle:
            return False
        return self.cancel(key)

    def expire(self, now: float) -> list[object]:
        """Remove and return the items whose deadline is <= *now*, by (deadline, insertion)."""
        if type(now) is not float:
            _check_tick(now, self._res)
            now = float(now)
        buf = self._buf
        count = _expire(self._w, now, buf, _BATCH)
        if count <= 0:
            if count == 0:
                return []
            _insert_failed(count, now)
        if count <= _BATCH:
            nodes = _unpack(buf, count)
        else:
            nodes = _unpack(buf, _BATCH)
            while len(nodes) < count:
                nodes += _unpack(buf, _take(self._w, buf, _BATCH))
        items = self._items
        fired = [items[node] for node in nodes]
        for node in nodes:
            items[node] = None
        if self._odd:
            for node in nodes:
                self._odd.pop(node, None)
        return fired

    def next_deadline(self) -> float:
        """The earliest pending deadline, or ``math.inf`` when nothing is pending."""
        best: float = _next_deadline(self._w)
        if self._odd:
            node = _next_index(self._w)
            if node in self._odd:
                return self._odd[node]  # type: ignore[return-value]
        return best

    def __len__(self) -> int:
        return _len(self._w)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"TimerWheel(pending={_len(self._w)})"


def _check_tick(t: float, res: float) -> None:
    """Run the twin's ``_tick`` checks on *t*, raising exactly what it raises."""
    if not -math.inf < t < math.inf:
        msg = f"deadline must be a finite number, got {t!r}"
        raise ValueError(msg)
    q = t / res
    if q >= _MAX_TICK or q <= -_MAX_TICK:
        return
    math.floor(q)


def _insert_failed(code: int, value: float) -> None:
    if code == _NOTFINITE:
        msg = f"deadline must be a finite number, got {value!r}"
        raise ValueError(msg)
    raise MemoryError
