"""What differs between MicroPython and CPython, in one place.

``const`` is a compile-time constant on MicroPython and the identity on CPython, so core
modules can write ``_X = const(3)`` under both interpreters.
"""

try:
    from micropython import const  # pyright: ignore[reportMissingImports, reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        """Return ``x``: CPython has no compile-time constants."""
        return x


try:
    import sys

    IS_MICROPYTHON = sys.implementation.name == "micropython"
except (ImportError, AttributeError):  # pragma: no cover - every port has sys
    IS_MICROPYTHON = True
