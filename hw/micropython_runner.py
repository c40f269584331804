"""Run code in real MicroPython: the WebAssembly port of MicroPython, executed by Node.

Tests, benchmarks and the virtual board use this to run the portable core and the firmware
on the interpreter the boards run, not on CPython pretending. Each run starts a fresh VM
(about 0.2 s), copies the device file tree into its in-memory filesystem (the core at
``/lib``, like a board), optionally adds stand-ins for hardware modules the port lacks
(``machine``, ``bluetooth``, ``network``, ``cryptolib``: see ``hw/fakes``), runs the code and
returns what it printed and the exception it raised, if any.

The port's heap grows on demand, so it does not model a board's memory limit; measure with
:meth:`MicroPythonRunner.heap_delta` and compare with the budget instead. This port only
reclaims garbage between top-level calls (a ``gc.collect()`` in the middle of a script
frees nothing: the WebAssembly stack cannot be scanned), so ``run`` accepts a list of
steps that share one VM, and ``heap_delta`` measures between steps.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUNNER_SCRIPT = Path(__file__).resolve().parent / "micropython_runner.mjs"
FAKES_DIR = Path(__file__).resolve().parent / "fakes"
CORE_LIB_DIR = PROJECT_ROOT / "firmware" / "lib"
RUNTIME_PACKAGE = "@micropython/micropython-webassembly-pyscript"

_HEAP_MARK = "__bankiot_heap_delta__"


class MicroPythonUnavailable(RuntimeError):
    """Node or the MicroPython WebAssembly package is not installed."""


class MicroPythonError(Exception):
    """An exception raised by the code running under MicroPython.

    ``type`` is the MicroPython exception class name, ``message`` the text after it and
    ``traceback`` the full traceback as MicroPython printed it.
    """

    def __init__(self, type_: str, traceback: str) -> None:
        last = traceback.strip().splitlines()[-1] if traceback.strip() else type_
        self.type = type_
        self.traceback = traceback
        self.message = last.split(": ", 1)[1] if ": " in last else ""
        super().__init__("MicroPython raised %s" % last)


@dataclass(frozen=True)
class MicroPythonRun:
    """What one run printed, raised and left in the exported directories."""

    stdout: str
    stderr: str
    error: MicroPythonError | None
    files: dict[str, bytes] = field(default_factory=dict)

    def check(self) -> MicroPythonRun:
        """Return self, or raise the MicroPython exception if the code raised one."""
        if self.error is not None:
            raise self.error
        return self


def find_node() -> str:
    """Return the path of the ``node`` executable or raise MicroPythonUnavailable."""
    node = os.environ.get("BANKIOT_NODE") or shutil.which("node")
    if not node:
        raise MicroPythonUnavailable("node not found: install Node.js 20 or newer")
    if not (PROJECT_ROOT / "node_modules" / RUNTIME_PACKAGE / "micropython.mjs").exists():
        raise MicroPythonUnavailable(
            "%s is not installed: run `npm ci` in %s" % (RUNTIME_PACKAGE, PROJECT_ROOT)
        )
    return node


class MicroPythonRunner:
    """Runs scripts in fresh MicroPython VMs with a device file tree mounted.

    ``mounts`` maps device directories to host directories copied in before each run; by
    default the portable core's folder (``firmware/lib``) is mounted at ``/lib``, which is
    on MicroPython's ``sys.path`` as on a board.
    """

    def __init__(
        self,
        mounts: Mapping[str, Path] | None = None,
        *,
        heapsize: int = 1024 * 1024,
        timeout: float = 60.0,
    ) -> None:
        self.node = find_node()
        self.mounts = dict(mounts) if mounts is not None else {"/lib": CORE_LIB_DIR}
        self.heapsize = heapsize
        self.timeout = timeout

    def run(
        self,
        code: str | Sequence[str],
        *,
        fakes: Iterable[str] = (),
        files: Mapping[str, bytes | str] | None = None,
        mounts: Mapping[str, Path] | None = None,
        export: Iterable[str] = (),
    ) -> MicroPythonRun:
        """Run ``code`` in a fresh VM and return what happened.

        ``code`` may be a list of sources run one after the other with shared globals;
        garbage is reclaimed between them. An exception stops the run at its step.

        ``fakes`` names hardware stand-ins from ``hw/fakes`` to install in ``/lib``
        (for example ``("machine", "bluetooth")``); ``files`` adds device files;
        ``export`` lists device directories whose files come back in the result, which is
        how a test carries a board's flash from one boot to the next.
        """
        all_files: dict[str, bytes] = {}
        for name in fakes:
            source = FAKES_DIR / ("%s.py" % name)
            if not source.exists():
                known = sorted(p.stem for p in FAKES_DIR.glob("*.py") if p.stem != "__init__")
                raise ValueError("no fake module %r; known: %s" % (name, ", ".join(known)))
            all_files["/lib/%s.py" % name] = source.read_bytes()
        for path, content in (files or {}).items():
            all_files[path] = content.encode() if isinstance(content, str) else content
        request = {
            "code": code if isinstance(code, str) else list(code),
            "mounts": [
                [str(host), device] for device, host in {**self.mounts, **(mounts or {})}.items()
            ],
            "files": {p: base64.b64encode(c).decode() for p, c in all_files.items()},
            "export": list(export),
            "heapsize": self.heapsize,
        }
        try:
            proc = subprocess.run(
                [self.node, str(RUNNER_SCRIPT)],
                input=json.dumps(request).encode(),
                capture_output=True,
                timeout=self.timeout,
                cwd=PROJECT_ROOT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise MicroPythonError(
                "TimeoutError", "TimeoutError: script ran longer than %.0f s" % self.timeout
            ) from exc
        if proc.returncode != 0:
            raise MicroPythonUnavailable(
                "MicroPython runner failed (exit %d): %s"
                % (proc.returncode, proc.stderr.decode(errors="replace").strip()[-2000:])
            )
        reply = json.loads(proc.stdout)
        error = reply["error"]
        return MicroPythonRun(
            stdout=reply["stdout"],
            stderr=reply["stderr"],
            error=MicroPythonError(error["type"], error["traceback"]) if error else None,
            files={p: base64.b64decode(c) for p, c in reply["files"].items()},
        )

    def heap_delta(self, setup: str, code: str, **kwargs) -> int:
        """Bytes of MicroPython heap still held after running ``code`` (after ``setup``).

        Both sides are measured after ``gc.collect()``, so the result is what ``code``
        keeps alive (what a board would lose for good), not what it allocated on the way.
        Objects must be kept reachable from globals to be counted.
        """
        steps = [
            "import gc\n" + setup,
            "gc.collect()\n__before = gc.mem_alloc()",
            code,
            "gc.collect()\nprint(%r, gc.mem_alloc() - __before)" % _HEAP_MARK,
        ]
        result = self.run(steps, **kwargs).check()
        for line in result.stdout.splitlines():
            if line.startswith(_HEAP_MARK):
                return int(line.split()[1])
        raise MicroPythonError("RuntimeError", "RuntimeError: heap probe printed nothing")
