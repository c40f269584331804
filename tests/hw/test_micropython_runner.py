"""The MicroPython runner really runs MicroPython, with the device tree and fakes in place."""

from __future__ import annotations

import pytest

from hw.micropython_runner import MicroPythonError, MicroPythonRunner


def test_runs_micropython_not_cpython(micropython: MicroPythonRunner) -> None:
    out = micropython.run("import sys\nprint(sys.implementation.name)").check().stdout
    assert out.strip() == "micropython"


def test_rejects_syntax_that_cpython_accepts(micropython: MicroPythonRunner) -> None:
    # Positional-only parameters are valid CPython 3.8+ and a syntax error in MicroPython.
    source = "def f(a, /, b):\n    return a + b\n"
    compile(source, "<cpython>", "exec")  # CPython accepts it
    run = micropython.run(source)
    assert run.error is not None and run.error.type == "SyntaxError"


def test_micropython_only_builtins_exist(micropython: MicroPythonRunner) -> None:
    out = (
        micropython.run(
            "import micropython, gc\nX = micropython.const(7)\nprint(X, gc.mem_alloc() > 0)"
        )
        .check()
        .stdout
    )
    assert out.split() == ["7", "True"]


def test_exceptions_come_back_typed_with_traceback(micropython: MicroPythonRunner) -> None:
    run = micropython.run("def f():\n    raise ValueError('bad frame')\nf()")
    assert isinstance(run.error, MicroPythonError)
    assert run.error.type == "ValueError"
    assert run.error.message == "bad frame"
    assert "line 2" in run.error.traceback
    with pytest.raises(MicroPythonError):
        run.check()


def test_core_is_mounted_at_lib_like_a_board(micropython: MicroPythonRunner) -> None:
    out = (
        micropython.run(
            "import bankiot_core, sys\nprint(bankiot_core.__file__, '/lib' in sys.path)"
        )
        .check()
        .stdout
    )
    assert out.split() == ["/lib/bankiot_core/__init__.py", "True"]


def test_files_and_export_carry_flash_between_boots(micropython: MicroPythonRunner) -> None:
    first = micropython.run(
        "import os\n"
        "n = int(open('/data/boots').read())\n"
        "open('/data/boots.tmp', 'w').write(str(n + 1))\n"
        "os.rename('/data/boots.tmp', '/data/boots')",
        files={"/data/boots": "41"},
        export=["/data"],
    ).check()
    assert first.files == {"/data/boots": b"42"}
    second = micropython.run("print(open('/data/boots').read())", files=first.files).check()
    assert second.stdout.strip() == "42"


def test_fake_hardware_modules_are_injectable(micropython: MicroPythonRunner) -> None:
    bare = micropython.run("import machine")
    assert bare.error is not None and bare.error.type == "ImportError"
    out = (
        micropython.run("import machine\nprint(len(machine.unique_id()))", fakes=("machine",))
        .check()
        .stdout
    )
    assert out.strip() == "6"
    with pytest.raises(ValueError, match="no fake module"):
        micropython.run("pass", fakes=("no_such_module",))


def test_heap_probe_measures_what_code_keeps(micropython: MicroPythonRunner) -> None:
    nothing = micropython.heap_delta("", "x = None")
    kept = micropython.heap_delta("", "buffers = [bytearray(1000) for _ in range(8)]")
    # 2 MB of garbage made on the way must not count: only what stays reachable.
    churn = micropython.heap_delta(
        "",
        "buffers = [bytearray(1000) for _ in range(8)]\nfor _ in range(20):\n"
        "    junk = bytearray(100000)\njunk = None",
    )
    assert nothing < 128  # a new global may grow the globals dict
    assert 8000 <= kept < 9000
    assert 8000 <= churn < 9000


def test_steps_share_globals_and_stop_at_the_failing_step(
    micropython: MicroPythonRunner,
) -> None:
    run = micropython.run(["x = 41", "x += 1\nprint(x)", "raise OSError(5)", "print('no')"])
    assert run.stdout.split() == ["42"]
    assert run.error is not None and run.error.type == "OSError"


# What a board's port answers (py/mperrno.h, the POSIX numbers): the VM's file system
# reports WASI numbers (ENOENT 44), which the runner translates as the virtual board does.
FILE_ERRORS = """
import errno, os
out = []
try:
    open("/missing")
except OSError as e:
    out.append([e.errno, e.errno == errno.ENOENT])
try:
    os.mkdir("/lib")
except OSError as e:
    out.append([e.errno, e.errno == errno.EEXIST])
try:
    os.listdir("/lib/bankiot_core/__init__.py")
except OSError as e:
    out.append([e.errno])  # ENOTDIR: not in the port's errno module, 20 on a board
print(out)
"""


def test_file_errors_carry_a_boards_errno(micropython: MicroPythonRunner) -> None:
    out = micropython.run(FILE_ERRORS).check().stdout.strip()
    assert out == "[[2, True], [17, True], [20]]"
