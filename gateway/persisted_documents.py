"""Persisted documents: Apollo's automatic persisted queries (APQ), and trusted documents only.

Documents live in MongoDB's `persisted_documents` collection under `_id` = the sha256 (hex) of
their exact text, so every gateway knows what any gateway stored and a lookup needs no index
but `_id`'s. The store is shared by all organizations: a hash yields its text only to whoever
already knows the text, and the document runs with the caller's own access. Each process keeps
the last 1024 documents it used in memory, so a known hash costs no MongoDB round trip after
its first use there; misses are never cached, so a document stored by another gateway, or
imported, is found on its next use.

APQ (HTTP only: graphql-transport-ws has no `extensions` that Strawberry passes on):
- `extensions.persistedQuery = {version: 1, sha256Hash}` alone runs the stored document, or
  answers `PersistedQueryNotFound` (`PERSISTED_QUERY_NOT_FOUND`), on which Apollo clients send
  the hash again with the query;
- with the query, the hash must be the query's sha256 (else BAD_USER_INPUT); the document runs
  and, if it validated and the caller's key is valid, is stored. Only authenticated callers
  write, and only documents that passed validation; the collection is not otherwise bounded.

Trusted documents only (`LOOM_TRUSTED_DOCUMENTS_ONLY`): a document runs only if an operator
imported it from a manifest (`import_manifest`); APQ stores nothing; documents APQ stored before
are not trusted. Anything else, over HTTP or WebSocket and introspection included, is refused
with FORBIDDEN before validation.
"""

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError, parse
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from gateway.context import Context
from gateway.graphql_errors import classify
from gateway.http_negotiation import is_request_error
from gateway.recently_used import RecentlyUsed
from resolvers.errors import LoomError

log = logging.getLogger("loom.documents")

COLLECTION = "persisted_documents"
APOLLO_MANIFEST_FORMAT = "apollo-persisted-query-manifest"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_of(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


class DocumentRefused(Exception):
    """A persisted-document request that cannot run; it answers with one coded error."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.error = GraphQLError(message, extensions={"code": code})

    def result(self, request_id: str) -> ExecutionResult:
        return ExecutionResult(data=None, errors=[classify(self.error, request_id)])


def not_found() -> DocumentRefused:
    # Apollo clients recognize this message, and the code, and resend with the query.
    return DocumentRefused("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")


def untrusted() -> GraphQLError:
    return GraphQLError(
        "Only trusted documents run on this gateway, and this one is not registered: "
        "an operator registers documents with `loom documents import <manifest>`",
        extensions={"code": "FORBIDDEN"},
    )


def requested_hash(extensions: Mapping[str, Any] | None) -> str | None:
    """The sha256 an APQ request names, None when it names none."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(persisted.get("sha256Hash"), str)
        or not _SHA256.match(persisted["sha256Hash"])
    ):
        raise DocumentRefused(
            "extensions.persistedQuery must be {version: 1, sha256Hash: <64 lowercase hex digits>}",
            "BAD_USER_INPUT",
        )
    return persisted["sha256Hash"]


@dataclass
class Registration:
    """A document sent with its hash that this process does not know yet: stored after it
    ran, if it may be."""

    sha256: str
    query: str


class PersistedDocuments:
    def __init__(self, trusted_only: bool, maxsize: int = 1024) -> None:
        self.trusted_only = trusted_only
        self._known: RecentlyUsed[str, str] = RecentlyUsed(maxsize)
        self._filter: dict[str, Any] = {"trusted": True} if trusted_only else {}

    async def find(self, db: AsyncDatabase, sha256: str) -> str | None:
        """The document stored under `sha256` (only a trusted one in trusted mode)."""
        query = self._known.get(sha256)
        if query is None:
            found = await db[COLLECTION].find_one({"_id": sha256, **self._filter}, {"query": True})
            if found is None:
                return None
            query = found["query"]
            self._known.put(sha256, query)
        return query

    async def resolve(
        self, query: str | None, extensions: Mapping[str, Any] | None, db: AsyncDatabase
    ) -> tuple[str | None, Registration | None]:
        """The query to run for a request, and what to store once it ran."""
        sha256 = requested_hash(extensions)
        if sha256 is None:
            return query, None
        if not query:
            found = await self.find(db, sha256)
            if found is None:
                raise not_found()
            return found, None
        if sha256_of(query) != sha256:
            raise DocumentRefused(
                "extensions.persistedQuery.sha256Hash is not the sha256 of the query",
                "BAD_USER_INPUT",
            )
        if self.trusted_only or self._known.get(sha256) is not None:
            return query, None
        return query, Registration(sha256, query)

    async def register(
        self, registration: Registration, result: ExecutionResult, context: Context
    ) -> None:
        """Store a document that validated, for a caller whose key is valid. A failure here
        is logged and forgotten: the client sends the query again on its next miss."""
        if is_request_error(result):
            return
        try:
            await context.access()
            await context.connections.db[COLLECTION].update_one(
                {"_id": registration.sha256},
                {
                    "$setOnInsert": {
                        "query": registration.query,
                        "trusted": False,
                        "createdAt": datetime.now(UTC),
                    }
                },
                upsert=True,
            )
        except LoomError:
            return
        except PyMongoError as exc:
            log.warning("persisted document not stored request_id=%s: %s", context.request_id, exc)
            return
        self._known.put(registration.sha256, registration.query)

    async def is_trusted(self, db: AsyncDatabase, query: str | None) -> bool:
        return query is not None and await self.find(db, sha256_of(query)) == query


class TrustedDocumentsOnly(SchemaExtension):
    """Refuses, before validation, every document an operator did not register. After
    ValidationCache in the schema's extensions: its verdict would replace this one."""

    def __init__(self, documents: PersistedDocuments) -> None:
        self.documents = documents

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        db = context.context.connections.db
        if not await self.documents.is_trusted(db, context.query):
            context.pre_execution_errors = [untrusted()]
        yield


def _manifest_documents(manifest: object) -> dict[str, str]:
    """{id: body} of an Apollo persisted-query manifest or of a `{hash: query}` map."""
    if isinstance(manifest, dict) and "format" in manifest:
        if manifest["format"] != APOLLO_MANIFEST_FORMAT or manifest.get("version") != 1:
            raise ValueError(f"a manifest's format must be {APOLLO_MANIFEST_FORMAT!r} version 1")
        operations = manifest.get("operations")
        if not isinstance(operations, list):
            raise ValueError("an Apollo manifest's `operations` must be a list")
        documents: dict[str, str] = {}
        for index, operation in enumerate(operations):
            if not (
                isinstance(operation, dict)
                and isinstance(operation.get("id"), str)
                and isinstance(operation.get("body"), str)
            ):
                raise ValueError(f"operation {index} needs a string `id` and `body`")
            documents[operation["id"]] = operation["body"]
        return documents
    if isinstance(manifest, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()
    ):
        return dict(manifest)
    raise ValueError(
        f"a manifest is a {{hash: query}} map or an {APOLLO_MANIFEST_FORMAT!r} document"
    )


async def import_manifest(db: AsyncDatabase, path: Path) -> int:
    """Register every document of a manifest as trusted; the number of documents it holds.

    The whole manifest is checked before anything is written: each id must be the sha256 of
    its document's text (what clients send and what Loom looks documents up by — set
    `hashAlgorithm: "sha256"` in GraphQL Codegen's client preset), and each document must
    parse. Importing again is harmless; a document APQ stored becomes trusted.
    """
    try:
        manifest = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file: {exc}") from exc
    try:
        documents = _manifest_documents(manifest)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    for document_id, body in documents.items():
        if sha256_of(body) != document_id:
            raise ValueError(f"{path}: {document_id!r} is not the sha256 of its document")
        try:
            parse(body)
        except GraphQLSyntaxError as exc:
            raise ValueError(
                f"{path}: document {document_id} does not parse: {exc.message}"
            ) from exc
    if documents:
        now = datetime.now(UTC)
        await db[COLLECTION].bulk_write(
            [
                UpdateOne(
                    {"_id": document_id},
                    {
                        "$set": {"query": body, "trusted": True, "trustedAt": now},
                        "$setOnInsert": {"createdAt": now},
                    },
                    upsert=True,
                )
                for document_id, body in documents.items()
            ]
        )
    return len(documents)
