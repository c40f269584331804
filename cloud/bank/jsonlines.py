"""JSON in with the line each object starts on (``json`` keeps no positions).

The decoder uses the standard library's pure-Python scanner with its object parser wrapped:
each object becomes a ``LineDict``, a dict that also knows its line. Errors are
``json.JSONDecodeError`` with ``lineno`` as usual.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from bisect import bisect_right
from typing import Any


class LineDict(dict):
    """A JSON object and the line it starts on."""

    line: int = 0


def loads(text: str) -> Any:
    """``json.loads(text)`` where every object is a ``LineDict``."""
    newlines = [index for index, char in enumerate(text) if char == "\n"]
    decoder = json.JSONDecoder()

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[LineDict, int]:
        found, end = json.decoder.JSONObject(s_and_end, *args)  # pyright: ignore[reportAttributeAccessIssue]
        result = LineDict(found)
        result.line = bisect_right(newlines, s_and_end[1] - 1) + 1
        return result, end

    decoder.parse_object = parse_object  # type: ignore[method-assign]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # pyright: ignore[reportAttributeAccessIssue]
    return decoder.decode(text)
