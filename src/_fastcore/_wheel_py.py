"""Pure-Python twin of ``_fastcore._wheel``: a hashed timer wheel.

Most call deadlines are cancelled long before they fire, so insert and cancel
must be O(1) and a cancelled entry must leave nothing behind (a heap with lazy
deletion would fill with dead entries).

Layout: ``nslots`` (a power of two) buckets; an entry with deadline ``d`` has
tick ``t = floor(d / resolution)`` clamped to ``[-2**62, 2**62]`` (so it fits
the C twin's int64 and a quotient that overflows to -inf is not an error),
raised to the cursor if it is already in the past, and lives in bucket
``t & mask``. Ticks only order entries: ``tick`` is monotonic in the deadline,
which is all that the proofs in `expire` and `next_deadline` use. ``_where`` maps a
handle to its bucket so cancel is O(1).
Invariants: every pending entry's tick is >= ``_cursor``; ticks below the
cursor have been fully expired; an entry whose tick was raised to the cursor
sits at the current cursor tick; handles are never reused.
Complexity: insert/cancel O(1); expire O(visited buckets + entries in them),
at most one revolution; next_deadline O(nslots) worst case, and is only
called by the single timer task when it wakes.
"""

from __future__ import annotations

import math

_MAX_TICK = 2**62


class TimerWheel:
    """Deadlines (floats, in the owner's clock) mapped to opaque items."""

    __slots__ = ("_count", "_cursor", "_mask", "_next_handle", "_res", "_slots", "_where")

    def __init__(self, resolution: float = 0.01, slots: int = 1024, now: float = 0.0) -> None:
        if not (isinstance(resolution, (int, float)) and 0 < resolution < math.inf):
            msg = f"resolution must be a positive finite number, got {resolution!r}"
            raise ValueError(msg)
        if type(slots) is not int or slots < 2 or slots & (slots - 1):
            msg = f"slots must be a power of two >= 2, got {slots!r}"
            raise ValueError(msg)
        self._res = float(resolution)
        self._mask = slots - 1
        # bucket: {handle: (deadline, tick, item)}
        self._slots: list[dict[int, tuple[float, int, object]]] = [{} for _ in range(slots)]
        self._where: dict[int, dict[int, tuple[float, int, object]]] = {}
        self._cursor = self._tick(float(now))
        self._next_handle = 1
        self._count = 0

    def _tick(self, t: float) -> int:
        if not -math.inf < t < math.inf:
            msg = f"deadline must be a finite number, got {t!r}"
            raise ValueError(msg)
        q = t / self._res
        if q >= _MAX_TICK:
            return _MAX_TICK
        if q <= -_MAX_TICK:
            return -_MAX_TICK
        return math.floor(q)

    def insert(self, deadline: float, item: object) -> int:
        """Schedule *item* at *deadline*; returns a handle (an int > 0, never reused)."""
        tick = self._tick(deadline)
        if tick < self._cursor:
            tick = self._cursor
        bucket = self._slots[tick & self._mask]
        handle = self._next_handle
        self._next_handle = handle + 1
        bucket[handle] = (deadline, tick, item)
        self._where[handle] = bucket
        self._count += 1
        return handle

    def cancel(self, handle: int) -> bool:
        """Forget a pending entry; False when it already fired, was cancelled or is unknown."""
        bucket = self._where.pop(handle, None)
        if bucket is None:
            return False
        del bucket[handle]
        self._count -= 1
        return True

    def expire(self, now: float) -> list[object]:
        """Remove and return the items whose deadline is <= *now*, by (deadline, insertion)."""
        end = self._tick(now)
        if self._count == 0:
            if end > self._cursor:
                self._cursor = end
            return []
        fired: list[tuple[float, int, object]] = []
        # *now* may be earlier than the cursor (the clock the owner passes is
        # not ours to trust): entries raised to the cursor tick can still be
        # due, and they all sit in the cursor's bucket
        last = min(max(end, self._cursor), self._cursor + self._mask)
        tick = self._cursor
        while tick <= last:
            bucket = self._slots[tick & self._mask]
            if bucket:
                due = [h for h, entry in bucket.items() if entry[0] <= now]
                for h in due:
                    deadline, _, item = bucket.pop(h)
                    del self._where[h]
                    fired.append((deadline, h, item))
            tick += 1
        if end > self._cursor:
            self._cursor = end
        self._count -= len(fired)
        fired.sort(key=_order)
        return [entry[2] for entry in fired]

    def next_deadline(self) -> float:
        """The earliest pending deadline, or ``math.inf`` when nothing is pending."""
        if self._count == 0:
            return math.inf
        best = math.inf
        cursor, mask = self._cursor, self._mask
        for tick in range(cursor, cursor + mask + 1):
            bucket = self._slots[tick & mask]
            if not bucket:
                continue
            current = False
            for deadline, etick, _ in bucket.values():
                if deadline < best:
                    best = deadline
                if etick <= tick:
                    current = True
            if current:
                # entries in later buckets of this revolution tick later, and
                # entries of later revolutions are a whole revolution away
                return best
        return best

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"TimerWheel(pending={self._count})"


def _order(entry: tuple[float, int, object]) -> tuple[float, int]:
    return entry[0], entry[1]
