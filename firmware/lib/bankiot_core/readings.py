"""The records every decoder returns and every filter consumes.

A ``Reading`` is one measured value: ``metric`` follows BTHome's object names where one
exists (``temperature``, ``humidity``, ``battery``, ``button`` ...; ``heart_rate`` and
``rr_intervals`` for the Heart Rate Measurement), ``value`` is already scaled (an int where
the format's factor is 1, else a float; a str for text and events; bytes for raw; a list
for RR intervals), ``unit`` is the SI-style unit string or ``""`` for none.

Records are namedtuples: immutable, small on MicroPython, and equal by value.
"""

from collections import namedtuple

Reading = namedtuple("Reading", ("metric", "value", "unit"))
