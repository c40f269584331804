"""Wiping a board's identity (decommission): only the board of the device named.

``open_board_of`` opens the board's raw REPL and reads ``/identity/enrollment.json``: a board
that holds another device's identity is refused (the wrong board in the technician's
hand), one without identity is accepted (nothing to lose), one that does not answer gives
None. ``wipe`` overwrites the private files (key, envelope key, WiFi settings) with zeros,
then removes the identity, the WiFi settings, the data (queue of sealed batches) and the
releases; the firmware stays, so the board says "not provisioned" at its next start.
littlefs writes the zeros to fresh blocks (it never rewrites in place), so the old bytes
may remain in free blocks until reused: ``esptool erase-flash`` is the way to erase all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from provisioning import board_files
from provisioning.board_identity import ENROLLMENT, PRIVATE, WIPED
from provisioning.repl import BoardNotAnswering, RawRepl, ReplError


class WrongBoard(ReplError):
    """The board on the port holds another device's identity."""


@dataclass
class Board:
    """An open board and the uid its identity names (None: it has none)."""

    repl: RawRepl
    uid: str | None


def open_board_of(port: str, uid: str) -> Board | None:
    """The board on ``port`` if it is device ``uid`` (or has no identity); None if it does
    not answer; ``WrongBoard`` if it is another device."""
    try:
        repl = RawRepl(port)
    except BoardNotAnswering:
        return None
    try:
        repl.enter()
        raw = board_files.read_file(repl, ENROLLMENT)
    except BoardNotAnswering:
        repl.close()
        return None
    found = None
    if raw is not None:
        try:
            found = json.loads(raw).get("uid")
        except (ValueError, AttributeError):
            found = None  # a damaged record: the board is wiped as it is
    if found is not None and found != uid:
        repl.close()
        raise WrongBoard("the board on %s is %s, not %s: nothing was changed" % (port, found, uid))
    return Board(repl, found)


def wipe(repl: RawRepl, port: str) -> str:
    """Wipe the board's identity and data (module docstring); one line saying so."""
    board_files.overwrite_and_remove(repl, PRIVATE)
    board_files.remove(repl, WIPED)
    return "the board on %s is wiped: %s removed" % (port, ", ".join(WIPED))
