"""Parsed GraphQL documents, shared across requests.

Clients send the same few query texts again and again, and parsing one is a tenth of a simple
request's CPU. Strawberry's own ParserCache parses inside its hook, where a parse error escapes
the error classification (the token limit would lose its `limit` extension); this one only
hands over documents that already parsed once, and lets Strawberry parse — and report — the
rest as usual.
"""

from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension

from gateway.recently_used import RecentlyUsed

ParsedDocuments = RecentlyUsed[Any, DocumentNode]
"""Documents by query text and parse options."""


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
