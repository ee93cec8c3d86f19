"""The front door's ASGI app: OpenAI's /v1 audio routes, the loopback upload listener, and every
other path passed through to the Cog server."""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
from pathlib import Path

from saladcog.openai_api import speech, transcription
from saladcog.openai_api.errors import ApiError, bad_request
from saladcog.openai_api.forms import read_form, too_large
from saladcog.openai_api.uploads import Uploads
from saladcog.openai_api.upstream import Upstream

# Names OpenAI's SDKs and tools send, answered by the image's model of that kind.
ASR_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
MAX_JSON_BYTES = 1 << 20
# Between two pieces of one speech another caller may take the runner's slot: wait this long.
PIECE_BUSY_WAIT_S = 120.0


async def _send(send, status: int, content_type: bytes, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


async def _start_stream(send, content_type: str) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]})


async def _chunk(send, body: bytes) -> None:
    if body:
        await send({"type": "http.response.body", "body": body, "more_body": True})


async def _read_json(receive, limit: int):
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise bad_request("the client went away before the request body was complete")
        body += message.get("body", b"")
        if len(body) > limit:
            raise too_large(limit)
        if not message.get("more_body"):
            break
    try:
        return json.loads(body)
    except ValueError as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None


async def _disconnected(receive) -> None:
    """Returns when the caller has gone (after the request body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class OpenAIDoor:
    def __init__(self, upstream: Upstream, uploads: Uploads, *, model: str, spool_dir: Path,
                 loopback_port: int, max_upload_bytes: int, api_key: str | None = None):
        self.upstream = upstream
        self.uploads = uploads
        self.model = model
        self.spool_dir = spool_dir
        self.loopback_port = loopback_port
        self.max_upload_bytes = max_upload_bytes
        self.api_key = api_key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["server"] and scope["server"][1] == self.loopback_port:
            return await self.uploads.serve(scope, receive, send)
        if not (scope["path"] == "/v1" or scope["path"].startswith("/v1/")):
            return await self.upstream.proxy(scope, receive, send)
        started = False

        async def tracked_send(message):
            nonlocal started
            started = True
            await send(message)

        try:
            try:
                await self.route(scope, receive, tracked_send)
            except ApiError:
                raise
            except Exception as e:  # a fault of this server: logged, and answered in OpenAI's shape
                traceback.print_exc()
                raise ApiError(500, f"internal error in the front door: {type(e).__name__}: {e}") from e
        except ApiError as e:
            if started:  # a stream already under way: all that can be done is to end it
                print(f"openai front door: {scope['path']}: {e.message}", file=sys.stderr)
                return
            await _send(send, e.status, b"application/json", e.body(), e.headers)

    async def route(self, scope, receive, send) -> None:
        self.check_key(scope)
        method, path = scope["method"], scope["path"].rstrip("/")
        if method == "GET" and path == "/v1/models":
            return await _send(send, 200, b"application/json", json.dumps(await self.models()).encode())
        if method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            for model in (await self.models())["data"]:
                if model["id"] == name:
                    return await _send(send, 200, b"application/json", json.dumps(model).encode())
            raise ApiError(404, f"model {name!r} is not served here", param="model", code="model_not_found")
        if method == "POST" and path == "/v1/audio/transcriptions":
            return await self.transcribe(scope, receive, send, "transcribe")
        if method == "POST" and path == "/v1/audio/translations":
            return await self.transcribe(scope, receive, send, "translate")
        if method == "POST" and path == "/v1/audio/speech":
            return await self.speak(receive, send)
        raise ApiError(404, f"{method} {scope['path']} is not part of this server's API (audio and models only)",
                       code="unknown_url")

    def check_key(self, scope) -> None:
        if not self.api_key:
            return
        for key, value in scope["headers"]:
            if key == b"authorization" and hmac.compare_digest(value, f"Bearer {self.api_key}".encode()):
                return
        raise ApiError(401, "a valid API key is required: send it as `Authorization: Bearer <key>`",
                       code="invalid_api_key")

    async def kind(self) -> str:
        schema = await self.upstream.input_schema()
        return "transcription" if "audio" in schema else "speech" if "text" in schema else "other"

    async def models(self) -> dict:
        kind = await self.kind()
        aliases = {"transcription": ASR_ALIASES, "speech": TTS_ALIASES}.get(kind, ())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "saladcog"} for name in (self.model, *aliases)
        ]}

    async def check_model(self, name: str | None, kind: str) -> None:
        if await self.kind() != kind:
            raise ApiError(404, f"this server's model ({self.model}) does not do {kind}", code="unknown_url")
        if not name:
            raise bad_request("model is required", "model")
        names = [model["id"] for model in (await self.models())["data"]]
        if name not in names:
            raise ApiError(400, f"model {name!r} is not served here: use one of {', '.join(names)}",
                           param="model", code="model_not_found")

    async def transcribe(self, scope, receive, send, task: str) -> None:
        form = await read_form(scope, receive, self.spool_dir, self.max_upload_bytes)
        try:
            await self.check_model(form.first("model"), "transcription")
            request = transcription.parse_request(form, task)
            if form.upload is None:
                raise bad_request("file is required: the audio to transcribe, as a multipart file part", "file")
            with self.uploads.shared(form.upload) as url:
                output = await self.upstream.predict(request.cog_inputs(url))
        finally:
            form.remove_upload()
        if request.stream:
            await _start_stream(send, "text/event-stream")
            for event in transcription.events(output):
                await _chunk(send, event)
            await send({"type": "http.response.body", "body": b""})
            return
        content_type, body = transcription.render(request, output)
        await _send(send, 200, content_type, body)

    async def speak(self, receive, send) -> None:
        body = await _read_json(receive, MAX_JSON_BYTES)
        await self.check_model(body.get("model") if isinstance(body, dict) else None, "speech")
        schema = await self.upstream.input_schema()
        request = speech.parse_request(body, schema)
        pieces = request.pieces()
        # The first piece runs before anything is sent, so that its errors get a real status.
        output = await self.upstream.predict(request.cog_inputs(pieces[0], schema))
        samples, rate = speech.wav_samples(output)
        encoder = speech.StreamEncoder(request.response_format, rate)
        sse = request.stream_format == "sse"
        await _start_stream(send, "text/event-stream" if sse else speech.CONTENT_TYPES[request.response_format])

        async def emit(data: bytes) -> None:
            if data:
                await _chunk(send, speech.sse_delta(data) if sse else data)

        await emit(encoder.encode(samples))
        # A caller who hangs up (or whose gateway times out) frees the GPU after the current piece.
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            for piece in pieces[1:]:
                if gone.done():
                    return
                output = await self._predict_waiting(request.cog_inputs(piece, schema))
                samples, _ = speech.wav_samples(output)
                await emit(encoder.encode(samples))
        finally:
            gone.cancel()
        await emit(encoder.close())
        if sse:
            await _chunk(send, speech.sse_done(len(request.text.split())))
        await send({"type": "http.response.body", "body": b""})

    async def _predict_waiting(self, inputs: dict) -> dict:
        """A prediction that waits (bounded) for the slot when another caller holds it."""
        deadline = time.monotonic() + PIECE_BUSY_WAIT_S
        while True:
            try:
                return await self.upstream.predict(inputs)
            except ApiError as e:
                if e.status != 429 or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)
