"""Pure-Python twin of ``_fastcore._ring``: the mailbox ring buffer.

Layout: a power-of-two list of slots, ``_head`` indexes the oldest item and
``_size`` counts items; slot ``(head + i) & mask`` holds the i-th oldest.
Invariants: ``0 <= size <= len(slots)``; free slots hold ``None`` so the ring
never keeps a popped item alive. Complexity: push/push_front/pop/peek O(1)
amortised (the ring doubles when full and never shrinks below its capacity
hint); drain(n) O(n).
"""

from __future__ import annotations

from collections.abc import Iterator

_EMPTY = "pop from an empty ring"


class Ring:
    """An unbounded FIFO of Python objects (bounds are the mailbox's business)."""

    __slots__ = ("_head", "_mask", "_size", "_slots")

    def __init__(self, capacity: int = 8) -> None:
        if type(capacity) is not int or capacity < 1:
            msg = f"capacity must be a positive int, got {capacity!r}"
            raise ValueError(msg)
        n = 1
        while n < capacity:
            n <<= 1
        self._slots: list[object] = [None] * n
        self._head = 0
        self._size = 0
        self._mask = n - 1

    def _grow(self) -> None:
        old, head, size = self._slots, self._head, self._size
        n = len(old) * 2
        slots: list[object] = [None] * n
        for i in range(size):
            slots[i] = old[(head + i) & self._mask]
        self._slots, self._head, self._mask = slots, 0, n - 1

    def push(self, item: object) -> None:
        """Append *item* at the back."""
        if self._size == len(self._slots):
            self._grow()
        self._slots[(self._head + self._size) & self._mask] = item
        self._size += 1

    def push_front(self, item: object) -> None:
        """Put *item* at the front, to be popped next."""
        if self._size == len(self._slots):
            self._grow()
        self._head = (self._head - 1) & self._mask
        self._slots[self._head] = item
        self._size += 1

    def pop(self) -> object:
        """Remove and return the oldest item; `IndexError` when empty."""
        if self._size == 0:
            raise IndexError(_EMPTY)
        head = self._head
        item = self._slots[head]
        self._slots[head] = None
        self._head = (head + 1) & self._mask
        self._size -= 1
        return item

    def peek(self) -> object:
        """Return the oldest item without removing it; `IndexError` when empty."""
        if self._size == 0:
            msg = "peek at an empty ring"
            raise IndexError(msg)
        return self._slots[self._head]

    def drain(self, n: int = -1) -> list[object]:
        """Remove and return up to *n* oldest items (all when *n* < 0), oldest first."""
        if type(n) is not int:
            msg = f"n must be an int, got {n!r}"
            raise TypeError(msg)
        count = self._size if n < 0 or n > self._size else n
        out = [self.pop() for _ in range(count)]
        return out

    def clear(self) -> None:
        """Drop every item."""
        self.drain()

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size != 0

    def __iter__(self) -> Iterator[object]:
        """Iterate over a snapshot, oldest first."""
        slots, head, mask = self._slots, self._head, self._mask
        return iter([slots[(head + i) & mask] for i in range(self._size)])

    def __repr__(self) -> str:
        return f"Ring(len={self._size})"
