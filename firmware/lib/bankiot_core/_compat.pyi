# Types of _compat for both checkers: MicroPython's const() and its CPython fallback are
# the same function to callers. (Stub files never go onto a board.)
from typing import TypeVar

_T = TypeVar("_T")

def const(x: _T) -> _T: ...

IS_MICROPYTHON: bool
