"""Pick the compiled core or its pure-Python twin (``TRIO_PEEPER_FASTCORE``).

``auto`` (default) uses the compiled modules when all of them import and the
twins otherwise; ``cython`` requires the compiled modules; ``python`` uses the
twins. It is all or nothing: compiled and twin classes are never mixed.
"""

from __future__ import annotations

import os
from typing import Literal

_WANT = os.environ.get("TRIO_PEEPER_FASTCORE", "auto")
if _WANT not in ("auto", "cython", "python"):
    msg = f"TRIO_PEEPER_FASTCORE must be 'auto', 'cython' or 'python', got {_WANT!r}"
    raise ImportError(msg)

IMPLEMENTATION: Literal["cython", "python"]

if _WANT == "python":
    from ._cow_py import DELETED as DELETED
    from ._cow_py import SCALARS as SCALARS
    from ._cow_py import Journal as Journal
    from ._cow_py import apply as apply
    from ._cow_py import detach as detach
    from ._cow_py import is_tracked as is_tracked
    from ._ring_py import Ring as Ring
    from ._table_py import TableCore as TableCore
    from ._wheel_py import TimerWheel as TimerWheel

    IMPLEMENTATION = "python"
else:
    try:
        from ._cow import DELETED as DELETED
        from ._cow import SCALARS as SCALARS
        from ._cow import Journal as Journal
        from ._cow import apply as apply
        from ._cow import detach as detach
        from ._cow import is_tracked as is_tracked
        from ._ring import Ring as Ring
        from ._table import TableCore as TableCore
        from ._wheel import TimerWheel as TimerWheel
    except ImportError:
        if _WANT == "cython":
            raise
        from ._cow_py import DELETED as DELETED
        from ._cow_py import SCALARS as SCALARS
        from ._cow_py import Journal as Journal
        from ._cow_py import apply as apply
        from ._cow_py import detach as detach
        from ._cow_py import is_tracked as is_tracked
        from ._ring_py import Ring as Ring
        from ._table_py import TableCore as TableCore
        from ._wheel_py import TimerWheel as TimerWheel

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "cython"

__all__ = ["DELETED", "IMPLEMENTATION", "SCALARS", "Journal", "Ring", "TableCore", "TimerWheel", "apply", "detach", "is_tracked"]
