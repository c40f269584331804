"""The software version the board reports (``running`` records, health, diagnostics).

``bankiot firmware build --version X.Y.Z`` writes this module afresh into the bundle; the
value here is what a board runs from a development tree.
"""

SOFTWARE = "0.0.0-dev"
