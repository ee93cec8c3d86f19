"""Cog's own API on the door's port (/predictions, /health-check, /openapi.json, …): each request
streamed through to the Cog server with the app's one httpx.AsyncClient, and its answer streamed
back as it comes (Cog's server-sent events included).

What the door adds: `/shutdown` is never passed through from outside (it would stop the
instance); while the door drains, /health-check answers DRAINING and new predictions get 503;
async predictions with a webhook are tracked for the drain (saladcog.door.drain).
"""

from __future__ import annotations

import contextlib
import json

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from saladcog.door.errors import ApiError

# Hop-by-hop headers (RFC 9110 §7.6.1) and Host belong to one connection, not to the request.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "expect",
              "upgrade", "host"}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _is_new_prediction(request: Request) -> bool:
    path = request.url.path.rstrip("/")
    return (request.method == "POST" and path == "/predictions") or (
        request.method == "PUT" and path.startswith("/predictions/") and path.count("/") == 2)


async def health_check(request: Request) -> Response:
    if request.app.state.door.drain.draining:
        return JSONResponse({"status": "DRAINING"})
    return await pass_through(request)


async def shutdown(request: Request) -> Response:
    raise ApiError(403, "POST /shutdown is not served through the front door: it would stop the instance",
                   code="forbidden")


async def pass_through(request: Request) -> Response:
    door = request.app.state.door
    new_prediction = _is_new_prediction(request)
    if new_prediction:
        door.drain.refuse_when_draining()
    tracked = new_prediction and "respond-async" in request.headers.get("prefer", "")
    headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    if tracked and has_body:
        # Read whole to learn its webhook for the drain: coglet reads the whole body too.
        content = await request.body()
    else:
        content = request.stream() if has_body else None
    cog: httpx.AsyncClient = request.app.state.cog
    target = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    if request.url.query:
        target += "?" + request.url.query
    # A sync prediction is in flight until its answer has gone out: the drain waits for it.
    counted = new_prediction and not tracked
    if counted:
        door.drain.begin_request()
    try:
        response = await cog.send(cog.build_request(request.method, target, headers=headers, content=content),
                                  stream=True)
    except httpx.TransportError as e:
        if counted:
            door.drain.end_request()
        return Response(f"the Cog server does not answer: {e}", status_code=502, media_type="text/plain")
    if tracked and response.status_code == 202:
        with contextlib.suppress(ValueError, TypeError):  # not JSON: Cog would not have accepted it
            door.drain.track(json.loads(content))

    async def relay():
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()
            if counted:
                door.drain.end_request()

    return StreamingResponse(relay(), status_code=response.status_code,
                             headers={k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP})


routes = [
    Route("/health-check", health_check, methods=["GET", "HEAD"]),
    Route("/shutdown", shutdown, methods=METHODS),
    Route("/{path:path}", pass_through, methods=METHODS),
]
