"""`GET /items/{id}/file` (and `/versions/{version}/items/{id}/file`): an item's bytes, and
`GET /commands/{id}/archive`: an export's archive — streamed from GridFS, for callers who may
see them."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.context import bearer_key
from resolvers.access import Access
from resolvers.commands import get_command
from resolvers.errors import LoomError, NotFound, Unauthenticated
from resolvers.files import CHUNK, open_content
from resolvers.inputs import object_id
from resolvers.interchange.exports import open_archive
from resolvers.items import get_item
from resolvers.versions.lifecycle import get_version

_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404, "BAD_USER_INPUT": 400}


def _error(error: LoomError, request_id: str) -> JSONResponse:
    body = {"error": {"message": error.message, "code": error.code, "requestId": request_id}}
    return JSONResponse(body, status_code=_STATUS.get(error.code, 400))


Opened = tuple[Any, str, dict[str, str]]
"""A GridFS stream, its media type and its headers."""


async def item_file(request: Request) -> Response:
    async def find(access: Access) -> dict[str, Any]:
        return await get_item(access, object_id(request.path_params["item_id"]))

    return await _serve(request, lambda access: _item_content(access, find))


async def version_item_file(request: Request) -> Response:
    """An item's bytes as a dataset version holds it (the live item may be gone)."""

    async def find(access: Access) -> dict[str, Any]:
        version = await get_version(access, object_id(request.path_params["version_id"]))
        item_id = object_id(request.path_params["item_id"])
        item = await access.db.version_items.find_one(
            {"versionId": version["_id"], "itemId": item_id}
        )
        if item is None:
            raise NotFound("Item not found in this version", id=str(item_id))
        return item

    return await _serve(request, lambda access: _item_content(access, find))


async def export_archive(request: Request) -> Response:
    """An export's archive (resolvers/interchange/exports.py), once its command succeeded."""

    async def open_it(access: Access) -> Opened:
        command = await get_command(access, object_id(request.path_params["command_id"]))
        stream = await open_archive(access.db, command)
        if stream is None:
            raise NotFound("This command has no archive (yet)", id=str(command["_id"]))
        disposition = f'attachment; filename="{stream.filename}"'
        return stream, "application/zip", {"Content-Disposition": disposition}

    return await _serve(request, open_it)


async def _item_content(
    access: Access, find: Callable[[Access], Awaitable[dict[str, Any]]]
) -> Opened:
    item = await find(access)
    stream = await open_content(access.db, item["sha256"])
    if stream is None:
        raise NotFound("The item's file is missing", id=str(item.get("itemId", item["_id"])))
    headers = {
        "ETag": f'"{item["sha256"]}"',
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(item['name'])}",
    }
    return stream, item["mimetype"], headers


async def _serve(request: Request, open_it: Callable[[Access], Awaitable[Opened]]) -> Response:
    """Authenticate as the gateway does, open what the route serves, stream it."""
    db = request.app.state.connections.db
    request_id = request.scope["state"]["request_id"]
    try:
        key = bearer_key(request.headers)
        if key is None:
            raise Unauthenticated("Send an API key: 'Authorization: Bearer <key>'")
        access, _ = await request.app.state.auth_cache.authenticate(db, key)
        stream, media_type, headers = await open_it(access)
    except LoomError as exc:
        return _error(exc, request_id)

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await stream.read(CHUNK):
            yield chunk

    headers = {"Content-Length": str(stream.length), **headers}
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)
