"""Enabling the kiosk's units: a small interface (``Systemd``) and the real one
(``Systemctl``), so tests can record what a deploy asks for.

- The gateway's system unit: ``systemctl --root=ROOT enable`` (systemctl then works on the
  files directly, so it also serves image builders, with ROOT a mounted image); on the
  running system (ROOT ``/``) ``daemon-reload`` first, and ``enable --now`` starts it.
- The screen's user unit: what ``systemctl --user enable`` would do, done on the files
  (the ``WantedBy=graphical-session.target`` link in the user's
  ``~/.config/systemd/user``): systemctl cannot reach another user's manager before that
  user logs in, and never in an image. It starts at the user's next (automatic) login.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from edge.kiosk.deploy_plan import USER_UNITS, DeployError, User

WANTED_BY_USER = "graphical-session.target.wants"
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


class Systemd(Protocol):
    """What a deploy asks of systemd (``user`` None: the system manager)."""

    def is_enabled(self, unit: str, user: User | None) -> bool:
        """Whether ``unit`` is enabled."""
        ...

    def enable(self, unit: str, user: User | None) -> None:
        """Enable ``unit`` (and, on the running system, start a system unit)."""
        ...

    def reload(self) -> None:
        """Make the system manager read changed unit files (nothing offline)."""
        ...


class Systemctl:
    """The real ``Systemd`` for the system whose root is ``root`` (module docstring)."""

    def __init__(self, root: Path, run: Runner = _run, systemctl: str = "systemctl") -> None:
        self.root = root
        self.live = root == Path("/")
        self._run = run
        self._systemctl = systemctl

    def _call(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return self._run([self._systemctl, *args])
        except OSError as exc:
            raise DeployError(
                "cannot run %s: %s" % (self._systemctl, exc.strerror or exc)
            ) from None

    def _checked(self, *args: str) -> None:
        done = self._call(*args)
        if done.returncode != 0:
            said = (done.stderr or done.stdout or "").strip().splitlines()
            raise DeployError(
                "systemctl %s failed: %s" % (" ".join(args), said[-1] if said else done.returncode)
            )

    def _user_link(self, unit: str, user: User) -> Path:
        return self.root / _inside(user.home) / USER_UNITS / WANTED_BY_USER / unit

    def is_enabled(self, unit: str, user: User | None) -> bool:
        if user is not None:
            return self._user_link(unit, user).is_symlink()
        done = self._call("--root=%s" % self.root, "is-enabled", unit)
        return done.returncode == 0 and done.stdout.strip() == "enabled"

    def enable(self, unit: str, user: User | None) -> None:
        if user is not None:
            link = self._user_link(unit, user)
            _owned_folder(link.parent, user)
            link.symlink_to(user.home / USER_UNITS / unit)  # as systemctl --user links it
            if os.geteuid() == 0:
                os.lchown(link, user.uid, user.gid)
            return
        if self.live:
            self._checked("enable", "--now", unit)
        else:
            self._checked("--root=%s" % self.root, "enable", unit)

    def reload(self) -> None:
        if self.live:
            self._checked("daemon-reload")


def _inside(path: Path) -> Path:
    """An absolute path of the target system as a path relative to its root."""
    return path.relative_to(path.anchor) if path.is_absolute() else path


def _owned_folder(folder: Path, user: User) -> None:
    """Create ``folder`` and missing parents up to the user's home, owned by the user."""
    missing = []
    at = folder
    while not at.exists():
        missing.append(at)
        at = at.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
        if os.geteuid() == 0:
            os.chown(path, user.uid, user.gid)
