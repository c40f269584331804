"""The rules in force: the shipped defaults and every ``*.toml`` in the rules folder
(``<data dir>/rules`` unless ``EVENT_RULES_DIR`` says otherwise), reloaded when a file
changes, so operations change rules without a deploy.

A folder that does not parse (a TOML error, a bad key, an id in two files) leaves the
previous rules running: the error is logged once, as the one line ``rules.RuleError`` gives,
and kept in ``RuleLibrary.error`` until a good set replaces it. Files are read in name
order; a rule in a file replaces a shipped one with the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud.events import defaults
from cloud.events.rules import RuleError, RuleSet, combine, parse_rules

log = logging.getLogger(__name__)

PATTERN = "*.toml"


def rules_folder(config: Mapping[str, Any]) -> Path:
    """The rules folder of an app's configuration."""
    explicit = config.get("EVENT_RULES_DIR")
    return Path(explicit) if explicit else Path(config["DATA_DIR"]) / "rules"


def shipped() -> RuleSet:
    """The shipped default rules alone."""
    return RuleSet(parse_rules(defaults.SOURCE, defaults.TEXT), (defaults.SOURCE,))


def load_folder(folder: Path | None, with_defaults: bool = True) -> RuleSet:
    """The rules of ``folder`` (none if it does not exist) over the shipped defaults;
    ``RuleError`` (one line) if a file is unreadable or wrong."""
    files = []
    for path in _files(folder):
        try:
            files.append((path.name, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError("%s: cannot be read: %s" % (path.name, exc)) from None
    return combine(files, shipped() if with_defaults else None)


def _files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(path for path in folder.glob(PATTERN) if path.is_file())


def _signature(folder: Path | None) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in _files(folder):
        try:
            stat = path.stat()
        except OSError:
            continue  # removed between the listing and now: the next look sees it
        out.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


class RuleLibrary:
    """The rules of one folder, reloaded on change (module docstring)."""

    def __init__(self, folder: Path | None, with_defaults: bool = True) -> None:
        self.folder = folder
        self.with_defaults = with_defaults
        self.error: str | None = None
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._rules = shipped() if with_defaults else RuleSet()

    def current(self) -> RuleSet:
        """The rules in force, after reloading the folder if a file changed."""
        signature = _signature(self.folder)
        if signature != self._signature:
            self._signature = signature
            try:
                self._rules = load_folder(self.folder, self.with_defaults)
            except RuleError as exc:
                self.error = str(exc)
                log.error("rules not reloaded, the previous ones keep running: %s", exc)
            else:
                if self.error is not None:
                    log.info("rules reloaded: %d rules", len(self._rules.rules))
                self.error = None
        return self._rules
