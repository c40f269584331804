"""Tests of the portable core (firmware/lib/bankiot_core), on CPython and on MicroPython."""
