"""The front door's Starlette app: OpenAI's audio routes (routers/), SaladCloud's job-queue route
(routers/queue.py, loopback only), and every other path passed through to the Cog server
(routers/cog.py, mounted last).

`create_app(cog_url, ...)` builds it. `app.state.cog` is the one `httpx.AsyncClient` to the Cog
server (base_url = cog_url) that every route uses; `app.state.door` holds the door's settings,
the runner and the drain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac

import httpx
from starlette.applications import Starlette
from starlette.requests import Request

from saladcog.door.runner import CallerGone, Runner
from saladcog.door.drain import Drain
from saladcog.door.errors import ApiError, bad_request
from saladcog.door.routers import cog, models, queue, speech, transcriptions

# Names OpenAI's SDKs and tools send, answered by the image's model of that kind.
ASR_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# The one path open without the key: the platform's probes call it.
OPEN_PATHS = ("/health-check",)
DEFAULT_MAX_UPLOAD_BYTES = 1_000_000_000  # the Salad gateway's own limit


@dataclasses.dataclass
class Door:
    runner: Runner
    model: str
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    drain: Drain = dataclasses.field(default_factory=Drain)

    async def models(self) -> list[str]:
        kind = await self.runner.kind()
        return [self.model, *{"transcription": ASR_ALIASES, "speech": TTS_ALIASES}.get(kind, ())]

    async def check_model(self, name: str | None, kind: str) -> None:
        if await self.runner.kind() != kind:
            raise ApiError(404, f"this server's model ({self.model}) does not do {kind}", code="unknown_url")
        if not name:
            raise bad_request("model is required", "model")
        names = await self.models()
        if name not in names:
            raise ApiError(400, f"model {name!r} is not served here: use one of {', '.join(names)}",
                           param="model", code="model_not_found")


class RequireKey:
    """ASGI middleware: with a key set, every path but /health-check needs `Authorization:
    Bearer <key>` (the scheme in any case, as RFC 9110 says). The queue route needs none from
    loopback (SaladCloud's job-queue worker in the container sends none) and answers nobody else."""

    def __init__(self, app, api_key: str | None):
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.api_key or scope["path"] in OPEN_PATHS or self.has_key(scope) \
                or (scope["path"] == queue.PATH and queue.from_loopback(scope.get("client"))):
            return await self.app(scope, receive, send)
        error = ApiError(401, "a valid API key is required: send it as `Authorization: Bearer <key>`",
                         code="invalid_api_key")
        await error.response()(scope, receive, send)

    def has_key(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key.encode()):
                    return True
        return False


async def _api_error(request: Request, error: ApiError):
    return error.response()


async def _caller_gone(request: Request, error: CallerGone):
    # Nobody reads this answer: the caller hung up and its prediction was cancelled.
    return ApiError(499, "the client closed the request").response()


async def _fault(request: Request, error: Exception):
    """A fault of the door itself, answered in OpenAI's shape (Starlette then logs it)."""
    return ApiError(500, f"internal error in the front door: {type(error).__name__}: {error}").response()


def create_app(cog_url: str, *, model: str, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               api_key: str | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        async with app.state.cog:
            yield

    app = Starlette(
        routes=[*transcriptions.routes, *speech.routes, *queue.routes, *models.routes, *cog.routes],
        exception_handlers={ApiError: _api_error, CallerGone: _caller_gone, Exception: _fault},
        lifespan=lifespan,
    )
    # No read timeout: a sync prediction takes as long as the audio needs.
    app.state.cog = httpx.AsyncClient(base_url=cog_url, timeout=httpx.Timeout(5.0, read=None))
    app.state.door = Door(Runner(app.state.cog), model, max_upload_bytes)
    app.add_middleware(RequireKey, api_key=api_key)
    return app
