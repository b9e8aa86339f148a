"""Parsed GraphQL documents, shared across requests.

Clients send the same few query texts again and again, and parsing one is a tenth of a simple
request's CPU. Strawberry's own ParserCache parses inside its hook, where a parse error escapes
the error classification (the token limit would lose its `limit` extension); this one only
hands over documents that already parsed once, and lets Strawberry parse — and report — the
rest as usual.
"""

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension


class ParsedDocuments:
    """The most recently used documents, by query text and parse options."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._documents: OrderedDict[Any, DocumentNode] = OrderedDict()

    def get(self, key: Any) -> DocumentNode | None:
        document = self._documents.get(key)
        if document is not None:
            self._documents.move_to_end(key)
        return document

    def put(self, key: Any, document: DocumentNode) -> None:
        self._documents[key] = document
        if len(self._documents) > self.maxsize:
            self._documents.popitem(last=False)


class DocumentCache(SchemaExtension):
    def __init__(self, documents: ParsedDocuments) -> None:
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        key = (context.query, tuple(sorted(context.parse_options.items())))
        cached = self.documents.get(key)
        if cached is not None:
            context.graphql_document = cached
        yield
        if cached is None and context.graphql_document is not None:
            self.documents.put(key, context.graphql_document)
