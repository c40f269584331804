"""Running a scenario module under real MicroPython: the one way the core tests do it.

A scenario module (``tests/core/*_scenario*.py``) is written in the common subset of
CPython and MicroPython; the CPython test imports it, and ``run_scenario`` installs the same
file as ``/lib/<name>.py`` on the virtual board, calls one of its functions with JSON-ready
arguments, and returns what it printed, decoded from JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

from hw.micropython_runner import MicroPythonRunner


def run_scenario(
    micropython: MicroPythonRunner, module: ModuleType, function: str, *args: Any
) -> Any:
    """``module.function(*args)`` under MicroPython; its JSON-decoded result."""
    name = module.__name__.rsplit(".", 1)[-1]
    source = Path(str(module.__file__)).read_text()
    code = "import json, %s\nprint(json.dumps(%s.%s(*json.loads(%r))))\n" % (
        name,
        name,
        function,
        json.dumps(list(args)),
    )
    run = micropython.run(code, files={"/lib/%s.py" % name: source}).check()
    return json.loads(run.stdout)
