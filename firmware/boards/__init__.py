"""Board support: one module per board (pins, LED, button, watchdog limits, flash layout).

``app.board.current()`` picks the module for the running port (``sys.platform``).
"""
