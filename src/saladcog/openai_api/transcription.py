"""/v1/audio/transcriptions and /v1/audio/translations: OpenAI's form fields → the Whisper
runner's inputs, and its output → OpenAI's response shapes (json, text, srt, vtt, verbose_json,
and the `transcript.text.delta` / `transcript.text.done` server-sent events)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

from saladcog.openai_api import languages
from saladcog.openai_api import sse
from saladcog.openai_api.errors import bad_request
from saladcog.openai_api.forms import Form

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
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

    def cog_inputs(self, audio_url: str) -> dict:
        inputs = {
            "audio": audio_url,
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


def parse_request(form: Form, task: str) -> TranscriptionRequest:
    """Check the form fields the way OpenAI does; name the field at fault."""
    request = TranscriptionRequest(task=task)
    fmt = form.first("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise bad_request(f"response_format {fmt!r} is not supported: use one of {', '.join(RESPONSE_FORMATS)}",
                          "response_format")
    request.response_format = fmt
    if task == "transcribe":
        request.language = (form.first("language") or "").strip().lower() or None
    request.prompt = form.first("prompt") or None
    temperature = form.first("temperature")
    if temperature:
        try:
            request.temperature = float(temperature)
        except ValueError:
            raise bad_request(f"temperature must be a number, got {temperature!r}", "temperature") from None
    granularities = form.fields.get("timestamp_granularities[]", []) + form.fields.get("timestamp_granularities", [])
    for granularity in granularities:
        if granularity not in GRANULARITIES:
            raise bad_request(f"timestamp_granularities {granularity!r} is not supported: use word or segment",
                              "timestamp_granularities")
    if granularities and fmt != "verbose_json":
        raise bad_request("timestamp_granularities needs response_format verbose_json", "timestamp_granularities")
    request.granularities = tuple(granularities)
    request.stream = (form.first("stream") or "false").strip().lower() == "true"
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


def render(request: TranscriptionRequest, output: dict) -> tuple[bytes, bytes]:
    """(content type, body) of the answer in `request.response_format`."""
    fmt = request.response_format
    if fmt == "json":
        return b"application/json", json.dumps({"text": output["text"], "usage": _usage(output)}).encode()
    if fmt == "verbose_json":
        return b"application/json", json.dumps(verbose(request, output)).encode()
    text = output["text"] if fmt == "text" else output["transcription"]
    return b"text/plain; charset=utf-8", (text.strip("\n") + "\n").encode()


def events(output: dict) -> Iterator[bytes]:
    """The transcript as server-sent events: one text delta per segment, then the whole text."""
    texts = [segment["text"] for segment in output["segments"] if segment["text"].strip()]
    for number, text in enumerate(texts):
        delta = text.strip() if number == 0 else " " + text.strip()
        yield sse.event({"type": "transcript.text.delta", "delta": delta})
    yield sse.event({"type": "transcript.text.done", "text": output["text"]})

