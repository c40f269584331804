"""Writing a MicroPython image onto an ESP32 with esptool, behind a small interface.

``ImageWriter`` is what ``bankiot flash`` needs: ``write(port, image)``. ``Esptool`` runs
Espressif's ``esptool`` (PyPI, in the ``field`` extra) as MicroPython's ESP32 instructions
say: erase the flash, then write the image at 0x1000 (where the ESP32's second-stage
bootloader starts; the ESP32-S3 and C3 start at 0), compressed, at 460800 baud. Erasing
also removes whatever the filesystem held, identity included.

esptool needs the chip's own serial line (its ROM bootloader, entered by toggling DTR and
RTS): a ``socket://`` port (the virtual board) has no chip behind it, so it is refused.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

FLASH_OFFSET = "0x1000"
FLASH_BAUD = 460800
TIMEOUT_S = 300.0

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class ImageError(Exception):
    """The image could not be written; the message is one line."""


class ImageWriter(Protocol):
    """Writes a MicroPython firmware image onto the board on ``port``."""

    def write(self, port: str, image: Path) -> None:
        """Write ``image``; ``ImageError`` if it could not."""
        ...


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


class Esptool:
    """``ImageWriter`` with esptool, for an ESP32 (``chip``); ``run`` executes a command
    (replaced in tests by one that records it)."""

    def __init__(
        self, chip: str = "esp32", run: Runner = _run, python: str = sys.executable
    ) -> None:
        self.chip = chip
        self.run = run
        self.python = python

    def commands(self, port: str, image: Path) -> list[list[str]]:
        """The esptool invocations that write ``image`` to ``port``: erase, then write."""
        base = [self.python, "-m", "esptool", "--chip", self.chip, "--port", port]
        return [
            [*base, "erase-flash"],
            [*base, "--baud", str(FLASH_BAUD), "write-flash", "-z", FLASH_OFFSET, str(image)],
        ]

    def write(self, port: str, image: Path) -> None:
        """Erase the flash and write ``image`` (module docstring)."""
        if port.startswith(("socket://", "rfc2217://", "loop://")):
            raise ImageError(
                "esptool needs the board's own serial port, not %s: leave out --firmware" % port
            )
        if not image.is_file():
            raise ImageError("no firmware image at %s" % image)
        for command in self.commands(port, image):
            try:
                done = self.run(command)
            except FileNotFoundError:
                raise ImageError("esptool is not installed: pip install 'bankiot[field]'") from None
            except subprocess.TimeoutExpired:
                raise ImageError("esptool did not finish within %.0f s" % TIMEOUT_S) from None
            if done.returncode != 0:
                output = (done.stderr or done.stdout or "").strip().splitlines()
                detail = output[-1] if output else "exit status %d" % done.returncode
                step = "erase-flash" if "erase-flash" in command else "write-flash"
                raise ImageError("esptool %s failed: %s" % (step, detail))
