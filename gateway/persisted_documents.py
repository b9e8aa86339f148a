"""Persisted documents: Apollo's automatic persisted queries (APQ), and trusted documents only.

Documents live in MongoDB's `persisted_documents` collection, so every gateway knows what any
gateway stored. A document APQ stored belongs to the user who sent it (`_id` = `<userId>:<sha256
of its exact text>`): a hash alone runs only what its caller stored, so nobody learns by probing
hashes that another user — of another organization, perhaps — ran a given text, literals and
all. Documents an operator imported (trusted) are the deployment's own, under `_id` = the hash,
and run for everyone. Each process keeps the last 1024 documents it used in memory, so a known
hash costs no MongoDB round trip after its first use there; misses are never cached, so a
document stored by another gateway, or imported, is found on its next use.

APQ (HTTP only: graphql-transport-ws has no `extensions` that Strawberry passes on):
- `extensions.persistedQuery = {version: 1, sha256Hash}` alone runs the caller's stored
  document (or a trusted one), or answers `PersistedQueryNotFound`
  (`PERSISTED_QUERY_NOT_FOUND`), on which Apollo clients send the hash again with the query;
  a caller without a valid key always gets that answer;
- with the query, the hash must be the query's sha256 (else BAD_USER_INPUT); the document runs
  and, if it validated, the caller's key is valid and it is at most `MAX_STORED_BYTES` long, is
  stored for that caller. Stored documents expire 30 days after they were stored (a TTL index,
  gateway/indexes.py); clients register them again on their next miss.

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
MAX_STORED_BYTES = 64 * 1024
"""The longest document APQ stores (a 5,000-token document is well under it); a longer one
runs, unstored, so neither MongoDB nor the in-memory cache holds megabytes of comments."""


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

    key: str
    query: str


async def _owner(context: Context) -> str | None:
    """Whose APQ documents a request may name: its caller's, None without a valid key."""
    try:
        return str((await context.access()).user_id)
    except LoomError:
        return None


class PersistedDocuments:
    def __init__(self, trusted_only: bool, maxsize: int = 1024) -> None:
        self.trusted_only = trusted_only
        self._known: RecentlyUsed[str, str] = RecentlyUsed(maxsize)

    async def find(self, db: AsyncDatabase, sha256: str, owner: str | None) -> str | None:
        """The document `owner` stored under `sha256`, or the trusted one (only that in trusted
        mode, or without an owner)."""
        keys = [sha256] if self.trusted_only or owner is None else [f"{owner}:{sha256}", sha256]
        for key in keys:
            if (query := self._known.get(key)) is not None:
                return query
        found = await db[COLLECTION].find_one(
            {"$or": [{"_id": keys[0]}, {"_id": sha256, "trusted": True}]},
            {"query": 1, "trusted": 1},
        )
        if found is None or (found["_id"] == sha256 and found.get("trusted") is not True):
            return None
        self._known.put(found["_id"], found["query"])
        return found["query"]

    async def resolve(
        self, query: str | None, extensions: Mapping[str, Any] | None, context: Context
    ) -> tuple[str | None, Registration | None]:
        """The query to run for a request, and what to store once it ran."""
        sha256 = requested_hash(extensions)
        if sha256 is None:
            return query, None
        owner = None if self.trusted_only else await _owner(context)
        if not query:
            found = await self.find(context.connections.db, sha256, owner)
            if found is None:
                raise not_found()
            return found, None
        if sha256_of(query) != sha256:
            raise DocumentRefused(
                "extensions.persistedQuery.sha256Hash is not the sha256 of the query",
                "BAD_USER_INPUT",
            )
        key = f"{owner}:{sha256}"
        if owner is None or self._known.get(key) is not None:
            return query, None
        if len(query.encode()) > MAX_STORED_BYTES:
            return query, None
        return query, Registration(key, query)

    async def register(
        self, registration: Registration, result: ExecutionResult, context: Context
    ) -> None:
        """Store a document that validated, for a caller whose key is valid. A failure here
        is logged and forgotten: the client sends the query again on its next miss."""
        if is_request_error(result):
            return
        try:
            await context.connections.db[COLLECTION].update_one(
                {"_id": registration.key},
                {
                    "$setOnInsert": {
                        "query": registration.query,
                        "trusted": False,
                        "createdAt": datetime.now(UTC),
                    }
                },
                upsert=True,
            )
        except PyMongoError as exc:
            log.warning("persisted document not stored request_id=%s: %s", context.request_id, exc)
            return
        self._known.put(registration.key, registration.query)

    async def is_trusted(self, db: AsyncDatabase, query: str | None) -> bool:
        return query is not None and await self.find(db, sha256_of(query), None) == query


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
