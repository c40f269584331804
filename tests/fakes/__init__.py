"""Tests of the hardware stand-ins in hw/fakes, on CPython and on MicroPython."""
