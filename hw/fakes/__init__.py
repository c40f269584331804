"""Stand-ins for MicroPython hardware modules that the WebAssembly test runtime lacks.

Each file here is MicroPython source installed into the virtual device's /lib by the
MicroPython runner (``fakes=("machine", ...)``). They mirror the boards' interfaces (the
official stubs are the reference) and add underscore-prefixed hooks for tests to drive them.
They are never copied onto a real board.
"""
