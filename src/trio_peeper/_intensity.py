"""Restart intensity: pure, sync, the clock passed in (OTP's ``MaxR`` in ``MaxT``)."""

from __future__ import annotations

import math
from collections import deque

from ._util import final


def check_intensity(max_restarts: object, max_seconds: object) -> None:
    """Validate supervisor flags where they enter."""
    if type(max_restarts) is not int or max_restarts < 0:
        msg = f"max_restarts must be an int >= 0, got {max_restarts!r}"
        raise ValueError(msg)
    if (
        not isinstance(max_seconds, (int, float))
        or isinstance(max_seconds, bool)
        or not 0 < max_seconds <= math.inf
    ):
        msg = f"max_seconds must be a number > 0, got {max_seconds!r}"
        raise ValueError(msg)


@final
class Intensity:
    """Counts restarts in a sliding window; `add` says when there were too many.

    As in OTP, a restart at time ``now`` is allowed while at most
    ``max_restarts`` restarts (this one included) happened in the last
    ``max_seconds``, the edge included (``now - t <= max_seconds``, as
    OTP's ``R >= Now - Period``).
    """

    __slots__ = ("_times", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        check_intensity(max_restarts, max_seconds)
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self._times: deque[float] = deque()

    @property
    def count(self) -> int:
        """Restarts inside the window as of the last `add`."""
        return len(self._times)

    def _expire(self, now: float) -> None:
        times = self._times
        while times and now - times[0] > self.max_seconds:
            times.popleft()

    def would_exceed(self, now: float) -> bool:
        """Would a restart at *now* exceed the intensity? (Nothing is recorded.)"""
        self._expire(now)
        return len(self._times) + 1 > self.max_restarts

    def add(self, now: float) -> bool:
        """Record a restart at *now*; True when that exceeds the intensity."""
        self._times.append(now)
        self._expire(now)
        return len(self._times) > self.max_restarts
