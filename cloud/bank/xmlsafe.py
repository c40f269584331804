"""XML in, safely, with the line each element starts on.

defusedxml's parser refuses DTDs' entity declarations (the "billion laughs" bomb) and
external references before anything is expanded. ElementTree keeps no line numbers, so the
tree builder asks the parser's expat for the current line as each element starts and keeps
it on the element (``Element.sourceline``, as lxml names it).
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser


class LineElement(Element):
    """An element that knows the line it starts on."""

    sourceline: int = 0


class XmlRefused(Exception):
    """The XML is broken or unsafe; ``line`` is where the parser stopped."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class _LineBuilder(TreeBuilder):
    def __init__(self) -> None:
        super().__init__(element_factory=LineElement)
        self.parser: Any = None

    def start(self, tag: Any, attrs: Any) -> Element:
        element = super().start(tag, attrs)
        if isinstance(element, LineElement):
            element.sourceline = self.parser.parser.CurrentLineNumber
        return element


def parse_xml(data: bytes) -> LineElement:
    """The root element of ``data``; ``XmlRefused`` with a line if broken or unsafe."""
    builder = _LineBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=False)
    builder.parser = parser
    try:
        parser.feed(data)
        root = parser.close()
    except ParseError as exc:
        line = exc.position[0] if exc.position else 0
        raise XmlRefused(line, "not well-formed XML: %s" % _expat_reason(exc)) from None
    except DefusedXmlException as exc:
        line = parser.parser.CurrentLineNumber
        raise XmlRefused(line, "refused: %s" % _defused_reason(exc)) from None
    assert isinstance(root, LineElement)
    return root


def _expat_reason(exc: ParseError) -> str:
    return str(exc).split(":")[0]


def _defused_reason(exc: DefusedXmlException) -> str:
    name = type(exc).__name__
    return {
        "EntitiesForbidden": "entity declarations are not allowed (entity expansion)",
        "ExternalReferenceForbidden": "external references are not allowed",
        "DTDForbidden": "a DTD is not allowed",
    }.get(name, name)


def local(tag: str) -> str:
    """The local name of ``{namespace}name``."""
    return tag.rpartition("}")[2]
