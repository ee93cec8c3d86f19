"""/v1/audio/transcriptions and /v1/audio/translations: OpenAI's form fields → the Whisper
runner's inputs, and its output → OpenAI's response shapes (json, text, srt, vtt, verbose_json,
and the `transcript.text.delta` / `transcript.text.done` server-sent events).

The upload is read with Starlette's `request.form` (one file, few and small fields), which spools
it to an anonymous temporary file; the runner reads that same file through a one-time handle
(saladcog.handoff), so it is written to disk once and deleted when the request ends.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from saladcog import handoff
from saladcog.diarize.speakers import diarized_json
from saladcog.door import languages, sse
from saladcog.door.errors import ApiError, bad_request

# Text fields are a model name, a language, a prompt: a few KiB at most.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 64

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
# Answered only by a runner that tells speakers apart (predict.py:WhisperDiarize).
DIARIZING_INPUT = "num_speakers"
GRANULARITIES = ("word", "segment")
# The runner's `transcription` input for each OpenAI format (subtitles are cut by the runner).
SUBTITLES = {"srt": "srt", "vtt": "vtt"}


@dataclasses.dataclass
class TranscriptionRequest:
    task: str  # transcribe | translate
    response_format: str = "json"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    granularities: tuple[str, ...] = ()
    stream: bool = False

    def cog_inputs(self, audio: str) -> dict:
        inputs = {
            "audio": audio,
            "task": self.task,
            "transcription": SUBTITLES.get(self.response_format, "plain text"),
            "word_timestamps": "word" in self.granularities,
        }
        if self.language:
            inputs["language"] = self.language
        if self.prompt:
            inputs["initial_prompt"] = self.prompt
        if self.temperature is not None:
            inputs["temperature"] = self.temperature
        return inputs


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def parse_request(form: FormData, task: str) -> TranscriptionRequest:
    """Check the form fields the way OpenAI does; name the field at fault."""
    request = TranscriptionRequest(task=task)
    fmt = _field(form, "response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise bad_request(f"response_format {fmt!r} is not supported: use one of {', '.join(RESPONSE_FORMATS)}",
                          "response_format")
    request.response_format = fmt
    if task == "transcribe":
        request.language = (_field(form, "language") or "").strip().lower() or None
    request.prompt = _field(form, "prompt") or None
    temperature = _field(form, "temperature")
    if temperature:
        try:
            request.temperature = float(temperature)
        except ValueError:
            request.temperature = math.nan
        if not math.isfinite(request.temperature):
            raise bad_request(f"temperature must be a finite number, got {temperature!r}", "temperature")
    granularities = [g for g in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
                     if isinstance(g, str)]
    for granularity in granularities:
        if granularity not in GRANULARITIES:
            raise bad_request(f"timestamp_granularities {granularity!r} is not supported: use word or segment",
                              "timestamp_granularities")
    if granularities and fmt != "verbose_json":
        raise bad_request("timestamp_granularities needs response_format verbose_json", "timestamp_granularities")
    request.granularities = tuple(granularities)
    request.stream = (_field(form, "stream") or "false").strip().lower() == "true"
    return request


def _usage(output: dict) -> dict:
    return {"type": "duration", "seconds": round(output["duration"], 3)}


def verbose(request: TranscriptionRequest, output: dict) -> dict:
    """OpenAI's verbose_json: segments numbered from 0, words (when asked) in one list."""
    body = {
        "task": request.task,
        "language": languages.name(output["detected_language"]),
        "duration": output["duration"],
        "text": output["text"],
    }
    if "segment" in request.granularities or not request.granularities:
        body["segments"] = [
            {key: value for key, value in segment.items() if key != "words"} | {"id": number}
            for number, segment in enumerate(output["segments"])
        ]
    if "word" in request.granularities:
        body["words"] = [
            {"word": word["word"].strip(), "start": word["start"], "end": word["end"]}
            for segment in output["segments"] for word in segment.get("words", [])
        ]
    body["usage"] = _usage(output)
    return body


def render(request: TranscriptionRequest, output: dict) -> Response:
    """The answer in `request.response_format`."""
    fmt = request.response_format
    if request.stream:
        return StreamingResponse(events(output), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
    if fmt == "json":
        return Response(json.dumps({"text": output["text"], "usage": _usage(output)}), media_type="application/json")
    if fmt == "verbose_json":
        return Response(json.dumps(verbose(request, output)), media_type="application/json")
    if fmt == "diarized_json":
        return Response(json.dumps(diarized_json(output)), media_type="application/json")
    text = output["text"] if fmt == "text" else output["transcription"]
    return Response(text.strip("\n") + "\n", media_type="text/plain; charset=utf-8")


def events(output: dict) -> Iterator[bytes]:
    """The transcript as server-sent events: one text delta per segment, then the whole text."""
    texts = [segment["text"] for segment in output["segments"] if segment["text"].strip()]
    for number, text in enumerate(texts):
        delta = text.strip() if number == 0 else " " + text.strip()
        yield sse.event({"type": "transcript.text.delta", "delta": delta})
    yield sse.event({"type": "transcript.text.done", "text": output["text"]})



def safe_filename(name: str) -> str:
    """The base name of what the caller sent, with only characters safe in a message and a log."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    return base[:100] or "upload"


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request is larger than this server accepts ({limit // 1_000_000} MB)",
                    code="request_too_large")


def _bounded(request: Request, limit: int) -> Request:
    """`request` whose body, however it is sent (Content-Length or chunked), stops at `limit` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large(limit)
    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large(limit)
        return message

    return Request(request.scope, receive)


async def read_form(request: Request, limit: int) -> FormData:
    """The multipart form, its one file spooled by Starlette; 400 or 413 names what is wrong."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "multipart/form-data":
        raise bad_request("the request must be multipart/form-data (with the audio in a `file` part)")
    try:
        return await _bounded(request, limit).form(max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except HTTPException as e:  # Starlette's words for a malformed form or one over its limits
        raise bad_request(f"the multipart form is not acceptable: {e.detail}") from None
    except ClientDisconnect:
        raise bad_request("the client went away before the upload was complete") from None


async def transcribe(request: Request, task: str) -> Response:
    door = request.app.state.door
    door.drain.refuse_when_draining()
    form = await read_form(request, door.max_upload_bytes)
    try:
        await door.check_model(_field(form, "model"), "transcription")
        parsed = parse_request(form, task)
        if parsed.response_format == "diarized_json" and DIARIZING_INPUT not in await door.runner.input_schema():
            raise bad_request(f"response_format diarized_json needs a model that tells speakers apart "
                              f"(the whisper-diarize image); this server's model ({door.model}) does not",
                              "response_format")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad_request("file is required: the audio to transcribe, as a multipart file part", "file")
        # fileno() moves a small upload from memory to its (anonymous) temporary file.
        handle, link = handoff.issue(upload.file.fileno(), safe_filename(upload.filename or "upload"))
        try:
            with door.drain.in_flight():
                output = await door.runner.predict(parsed.cog_inputs(handle), request)
        finally:
            link.unlink(missing_ok=True)
    finally:
        await form.close()
    return render(parsed, output)


async def transcriptions(request: Request) -> Response:
    return await transcribe(request, "transcribe")


async def translations(request: Request) -> Response:
    return await transcribe(request, "translate")


routes = [
    Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    Route("/v1/audio/translations", translations, methods=["POST"]),
]
