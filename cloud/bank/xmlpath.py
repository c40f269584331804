"""Walking an ISO 20022 message with the path of every step, for one-line errors.

``Node`` wraps an element of ``xmlsafe.parse_xml`` with its XPath-like path
(``/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/Amt``) and its line, so that every refusal can
say where. Names are local names inside the message's one namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

from cloud.bank.parsed import BankImportError
from cloud.bank.xmlsafe import LineElement


class Node:
    """An element, the file it came from and the path to it."""

    def __init__(self, element: LineElement, path: str, namespace: str, file: str) -> None:
        self.element, self.path, self.namespace, self.file = element, path, namespace, file

    @property
    def line(self) -> int:
        return self.element.sourceline

    def _tag(self, name: str) -> str:
        return "{%s}%s" % (self.namespace, name) if self.namespace else name

    def child(self, *names: str) -> Node | None:
        """The first element along ``names`` (one name per level), or None."""
        node: Node | None = self
        for name in names:
            assert node is not None
            found = node.element.find(node._tag(name))
            if found is None:
                return None
            assert isinstance(found, LineElement)
            node = Node(found, "%s/%s" % (node.path, name), self.namespace, self.file)
        return node

    def children(self, name: str) -> Iterator[Node]:
        """Every child called ``name``, numbered from 1 in their paths."""
        for index, found in enumerate(self.element.findall(self._tag(name)), 1):
            assert isinstance(found, LineElement)
            yield Node(found, "%s/%s[%d]" % (self.path, name, index), self.namespace, self.file)

    def text(self, *names: str) -> str:
        """The stripped text along ``names``; empty when absent."""
        node = self.child(*names)
        return (node.element.text or "").strip() if node is not None else ""

    def required(self, *names: str) -> Node:
        """The element along ``names``; a ``BankImportError`` naming it when absent."""
        node = self.child(*names)
        if node is None:
            raise self.error("missing", *names)
        return node

    def required_text(self, *names: str) -> str:
        text = self.text(*names)
        if not text:
            raise self.error("missing or empty", *names)
        return text

    def first_text(self, *paths: tuple[str, ...]) -> str:
        """The text of the first of ``paths`` present (element names differ by version)."""
        for path in paths:
            text = self.text(*path)
            if text:
                return text
        return ""

    def error(self, message: str, *names: str) -> BankImportError:
        """A refusal at this element (or at ``names`` below it, at this element's line)."""
        path = "/".join((self.path, *names)) if names else self.path
        return BankImportError(self.file, path, self.line, message)
