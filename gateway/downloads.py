"""`GET /items/{id}/file`: an item's bytes, streamed from GridFS, for callers who may see it."""

from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.context import bearer_key
from resolvers.errors import LoomError, NotFound, Unauthenticated
from resolvers.files import CHUNK, open_content
from resolvers.inputs import object_id
from resolvers.items import get_item

_STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404, "BAD_USER_INPUT": 400}


def _error(error: LoomError, request_id: str) -> JSONResponse:
    body = {"error": {"message": error.message, "code": error.code, "requestId": request_id}}
    return JSONResponse(body, status_code=_STATUS.get(error.code, 400))


async def item_file(request: Request) -> Response:
    db = request.app.state.connections.db
    request_id = request.scope["state"]["request_id"]
    try:
        key = bearer_key(request.headers)
        if key is None:
            raise Unauthenticated("Send an API key: 'Authorization: Bearer <key>'")
        access, _ = await request.app.state.auth_cache.authenticate(db, key)
        item = await get_item(access, object_id(request.path_params["item_id"]))
        stream = await open_content(db, item["sha256"])
        if stream is None:
            raise NotFound("The item's file is missing", id=str(item["_id"]))
    except LoomError as exc:
        return _error(exc, request_id)

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await stream.read(CHUNK):
            yield chunk

    return StreamingResponse(
        chunks(),
        media_type=item["mimetype"],
        headers={
            "Content-Length": str(item["size"]),
            "ETag": f'"{item["sha256"]}"',
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(item['name'])}",
        },
    )
