"""cffi build script for ``_fastcore._wheel_cffi`` (API mode, out of line).

setuptools runs it through ``cffi_modules`` (see setup.py); run it directly
(``python src/_fastcore/_wheel_build.py``) to compile in place for debugging.
The C interface is declared once, in wheel_impl.h between the cffi markers.
``TRIO_PEEPER_DEBUG=1`` builds ``-O0 -g -UNDEBUG``.
"""

from __future__ import annotations

import os
import re
import sys

from cffi import FFI

# Relative to the project root, where setuptools runs this script; sources of
# an extension must be relative paths.
_HERE = os.path.relpath(os.path.dirname(os.path.abspath(__file__)))
_HEADER = os.path.join(_HERE, "wheel_impl.h")
_SOURCE = os.path.join(_HERE, "wheel_impl.c")


def _declarations() -> str:
    with open(_HEADER, encoding="utf-8") as f:
        text = f.read()
    found = re.search(r"/\* cffi-begin \*/(.*)/\* cffi-end \*/", text, re.DOTALL)
    if found is None:
        msg = f"{_HEADER!r} lacks the cffi-begin/cffi-end markers"
        raise RuntimeError(msg)
    return found.group(1)


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return []
    if os.environ.get("TRIO_PEEPER_DEBUG") == "1":
        return ["-O0", "-g", "-UNDEBUG"]
    # tick() must round exactly like Python's float division and math.floor
    return ["-O2", "-fno-fast-math"]


# cffi wraps every call in Py_BEGIN/END_ALLOW_THREADS and saves/restores errno
# (about 45 of the 75 ns a call costs here). The wheel's functions take tens of
# ns, never block, never call back into Python and never set errno, so this
# module keeps the GIL and skips errno: the generated wrappers use these macros
# textually after our preamble. Keeping the GIL also makes each call atomic with
# respect to other Python threads, which the wheel relies on (it has no lock).
_PREAMBLE = """
#include "wheel_impl.h"
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
#undef _cffi_restore_errno
#undef _cffi_save_errno
#define _cffi_restore_errno() ((void)0)
#define _cffi_save_errno() ((void)0)
"""

ffibuilder = FFI()
ffibuilder.cdef(_declarations())
ffibuilder.set_source(
    "_fastcore._wheel_cffi",
    _PREAMBLE,
    sources=[_SOURCE],
    include_dirs=[_HERE],
    depends=[_HEADER],
    extra_compile_args=_compile_args(),
    libraries=[] if sys.platform == "win32" else ["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(_HERE, os.pardir), verbose=True)
