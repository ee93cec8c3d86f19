"""/v1/models: the model this image serves, under its own name and OpenAI's names for its kind."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from saladcog.door.errors import ApiError


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "saladcog"}


async def list_models(request: Request) -> JSONResponse:
    names = await request.app.state.door.models()
    return JSONResponse({"object": "list", "data": [_model(name) for name in names]})


async def retrieve_model(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    if name not in await request.app.state.door.models():
        raise ApiError(404, f"model {name!r} is not served here", param="model", code="model_not_found")
    return JSONResponse(_model(name))


async def not_served(request: Request) -> JSONResponse:
    raise ApiError(404, f"{request.method} {request.url.path} is not part of this server's API (audio and models "
                   "only)", code="unknown_url")


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{name:path}", retrieve_model, methods=["GET"]),
    # Anything else under /v1 is OpenAI's, never Cog's: answered here, not passed through.
    Route("/v1", not_served, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/v1/{rest:path}", not_served, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
]
