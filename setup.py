"""Build the compiled half of ``_fastcore``; metadata lives in pyproject.toml.

``_fastcore._ring`` is Cython, cythonized at build_ext time (setuptools hands
``.pyx`` sources to Cython's build_ext, so an sdist carries the ``.pyx``);
``_fastcore._wheel_cffi`` is the self-contained C of the timer wheel, compiled
through cffi (API mode) from src/_fastcore/_wheel_build.py.
``TRIO_PEEPER_DEBUG=1`` builds both ``-O0 -g -UNDEBUG``, Cython with line tracing.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

DEBUG = os.environ.get("TRIO_PEEPER_DEBUG") == "1"

if sys.platform == "win32":
    compile_args: list[str] = []
elif DEBUG:
    compile_args = ["-O0", "-g", "-UNDEBUG"]
else:
    compile_args = ["-O2"]

ring = Extension(
    "_fastcore._ring",
    ["src/_fastcore/_ring.pyx"],
    depends=["src/_fastcore/_ring.pxd"],
    extra_compile_args=compile_args,
    define_macros=[("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [],
)
ring.cython_directives = {"linetrace": DEBUG}  # type: ignore[attr-defined]
ring.cython_c_in_temp = True  # type: ignore[attr-defined]

table = Extension(
    "_fastcore._table",
    ["src/_fastcore/_table.pyx"],
    depends=["src/_fastcore/_table.pxd"],
    extra_compile_args=compile_args,
    define_macros=[("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [],
)
table.cython_directives = {"linetrace": DEBUG}  # type: ignore[attr-defined]
table.cython_c_in_temp = True  # type: ignore[attr-defined]

cow = Extension(
    "_fastcore._cow",
    ["src/_fastcore/_cow.pyx"],
    depends=["src/_fastcore/_cow.pxd"],
    extra_compile_args=compile_args,
    define_macros=[("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [],
)
cow.cython_directives = {"linetrace": DEBUG}  # type: ignore[attr-defined]
cow.cython_c_in_temp = True  # type: ignore[attr-defined]

setup(
    ext_modules=[ring, table, cow],
    cffi_modules=["src/_fastcore/_wheel_build.py:ffibuilder"],
)
