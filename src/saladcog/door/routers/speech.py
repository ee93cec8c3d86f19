"""/v1/audio/speech: OpenAI's request → the TTS runner's inputs, one prediction per piece of
text, and the pieces' audio encoded on the fly into the format the caller asked for.

Why pieces: a Cog runner returns its file only when the prediction ends, so one prediction for
the whole text would send nothing until all of it is synthesized. The engines already speak
long text piece by piece (MeloTTS's sentence splitter, `saladcog.tts.textsplit`); the front
door splits the same way and asks the runner for one piece at a time, so the first sentence
plays while the next is synthesized, through Cog's API unchanged (no second runner, and
/predictions keeps its shape).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import struct
import sys
import time
import wave

import av
import numpy as np

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from saladcog.cogwire import decode_data_uri
from saladcog.door import sse
from saladcog.door.errors import ApiError, bad_request, busy
from saladcog.tts.readable import TextError, readable_text
from saladcog.tts.textsplit import split_sentences

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
                 "marin", "cedar")
# OpenAI's formats: (container, codec) for PyAV; wav and pcm are written here as they come.
CODECS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"), "flac": ("flac", "flac")}
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
# OpenAI documents pcm as raw 16-bit little-endian mono at 24 kHz; Opus encodes at 48 kHz.
PCM_RATE = 24000
OPUS_RATE = 48000
# What the runner's own speaker is called when it has no `speaker` input (MetaVoice).
DEFAULT_SPEAKER = "default"
# OpenAI's own limit on `input`; a runner that declares a lower maxLength for `text` gets that.
OPENAI_MAX_INPUT_CHARS = 4096
MAX_JSON_BYTES = 1 << 20
# Between two pieces of one speech another caller may take the runner's slot: wait this long.
PIECE_BUSY_WAIT_S = 120.0


def _check_readable(text: str, where: str) -> None:
    """Refuse text with no letter or digit to speak, naming what could not be read. The runner
    checks against its own model's characters; this is the part every model shares."""
    try:
        readable_text(text, str.isprintable, str.isalnum, "letters and digits")
    except TextError as e:
        raise bad_request(f"{where}: {e}", "input") from None


@dataclasses.dataclass
class SpeechRequest:
    text: str
    speaker: str | None  # the runner's speaker, None when it has no speaker input
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: str = "audio"
    seed: int | None = None  # not OpenAI's: same seed, same audio (the runners' `seed`)

    def pieces(self) -> list[str]:
        """The text as the engine would split it, each piece checked for something to read
        before anything is sent: a piece the runner would refuse must not cut a stream after 200.
        Text with no piece at all is sent whole, so that the runner refuses it in its own words."""
        _check_readable(self.text, "input")
        pieces = list(split_sentences(self.text))
        if not pieces:
            return [self.text]
        for number, piece in enumerate(pieces, 1):
            _check_readable(piece, f"input, piece {number} of {len(pieces)} ({piece[:40]!r})")
        return pieces


    def cog_inputs(self, piece: str, schema: dict) -> dict:
        inputs = {"text": piece, "output_format": "wav"}
        if self.speaker is not None:
            inputs["speaker"] = self.speaker
        if "speed" in schema:
            inputs["speed"] = self.speed
        if self.seed is not None and "seed" in schema:
            inputs["seed"] = self.seed
        return inputs


def voices(schema: dict) -> dict[str, str | None]:
    """Every voice name the caller may use → the runner's speaker: the runner's own speakers, and
    OpenAI's names spread over them in order."""
    speakers = schema.get("speaker", {}).get("enum") or []
    if not speakers:
        return {name: None for name in (DEFAULT_SPEAKER, *OPENAI_VOICES)}
    mapping = {name: speakers[i % len(speakers)] for i, name in enumerate(OPENAI_VOICES)}
    mapping.update({speaker: speaker for speaker in speakers})
    return mapping


def parse_request(body, schema: dict) -> SpeechRequest:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    for field in ("model", "input", "voice"):
        if field not in body:
            raise bad_request(f"{field} is required", field)
    text = body["input"]
    if not isinstance(text, str):
        raise bad_request("input must be a string", "input")
    limit = min(OPENAI_MAX_INPUT_CHARS, schema.get("text", {}).get("maxLength") or OPENAI_MAX_INPUT_CHARS)
    if len(text) > limit:
        raise bad_request(f"input is {len(text):,} characters long; at most {limit:,} are accepted", "input")
    voice = body["voice"]
    voice = voice.get("id") if isinstance(voice, dict) else voice
    known = voices(schema)
    if voice not in known:
        raise bad_request(f"voice {voice!r} is not available: use one of {', '.join(known)}", "voice")
    fmt = body.get("response_format") or "mp3"
    if fmt not in RESPONSE_FORMATS:
        raise bad_request(f"response_format {fmt!r} is not supported: use one of {', '.join(RESPONSE_FORMATS)}",
                          "response_format")
    speed = body.get("speed", 1.0)
    if not isinstance(speed, (int, float)) or isinstance(speed, bool):
        raise bad_request("speed must be a number", "speed")
    if "speed" not in schema and speed != 1.0:
        raise bad_request("this model speaks at one speed only: speed must be 1.0", "speed")
    stream_format = body.get("stream_format") or "audio"
    if stream_format not in ("audio", "sse"):
        raise bad_request(f"stream_format {stream_format!r} is not supported: use audio or sse", "stream_format")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise bad_request("seed must be an integer", "seed")
    return SpeechRequest(text, known[voice], fmt, float(speed), stream_format, seed)


def wav_samples(output: dict) -> tuple[np.ndarray, int]:
    """The runner's WAV output (a data URI) as 16-bit samples and their rate."""
    _, data = decode_data_uri(output["audio"])
    with wave.open(io.BytesIO(data)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


class _Sink:
    """A write-only file for PyAV: what the muxer writes is collected until taken."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


class StreamEncoder:
    """Encode 16-bit mono pieces as they come; each call returns the bytes ready to send."""

    def __init__(self, fmt: str, rate: int):
        self.fmt = fmt
        self.rate = rate
        self.out_rate = {"pcm": PCM_RATE, "opus": OPUS_RATE}.get(fmt, rate)
        self.resampler = (
            av.AudioResampler(format="s16", layout="mono", rate=self.out_rate) if self.out_rate != rate else None
        )
        self.sink = _Sink()
        self.container = self.stream = None
        if fmt in CODECS:
            container, codec = CODECS[fmt]
            self.container = av.open(self.sink, mode="w", format=container)
            self.stream = self.container.add_stream(codec, rate=self.out_rate, layout="mono")
        elif fmt == "wav":
            # Length unknown while streaming: RIFF and data sizes 0xFFFFFFFF, as OpenAI sends them.
            self.sink.write(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt "
                            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
                            + b"data" + struct.pack("<I", 0xFFFFFFFF))

    def _frames(self, samples: np.ndarray | None):
        frame = None
        if samples is not None:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.rate
        if self.resampler is None:
            return [] if frame is None else [frame]
        return self.resampler.resample(frame)

    def _write(self, frames) -> None:
        for frame in frames:
            if self.stream is None:
                self.sink.write(frame.to_ndarray().astype("<i2").tobytes())
            else:
                for packet in self.stream.encode(frame):
                    self.container.mux(packet)

    def encode(self, samples: np.ndarray) -> bytes:
        self._write(self._frames(samples))
        return self.sink.take()

    def close(self) -> bytes:
        self._write(self._frames(None))
        if self.stream is not None:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
        return self.sink.take()


def sse_delta(chunk: bytes) -> bytes:
    return sse.event({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")})


def sse_done(words: int) -> bytes:
    # Token usage has no meaning here; OpenAI's shape needs it, so words stand for input tokens.
    return sse.event({"type": "speech.audio.done", "usage": {"input_tokens": words, "output_tokens": 0,
                                                           "total_tokens": words}})



async def _predict_waiting(runner, inputs: dict) -> dict:
    """A prediction that waits (bounded) for the slot when another caller holds it."""
    deadline = time.monotonic() + PIECE_BUSY_WAIT_S
    while True:
        try:
            return await runner.predict(inputs)
        except ApiError as e:
            if e.status != busy().status or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def _read_json(request: Request):
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_JSON_BYTES:
        raise ApiError(413, f"the request is larger than {MAX_JSON_BYTES:,} bytes", code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, f"the request is larger than {MAX_JSON_BYTES:,} bytes", code="request_too_large")
    try:
        return json.loads(body)
    except ValueError as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None


async def create_speech(request: Request) -> StreamingResponse:
    door = request.app.state.door
    door.drain.refuse_when_draining()
    body = await _read_json(request)
    await door.check_model(body.get("model") if isinstance(body, dict) else None, "speech")
    schema = await door.runner.input_schema()
    parsed = parse_request(body, schema)
    pieces = parsed.pieces()
    # The first piece runs before anything is sent, so that its errors get a real status.
    with door.drain.in_flight():
        first = await door.runner.predict(parsed.cog_inputs(pieces[0], schema), request)
    samples, rate = wav_samples(first)
    encoder = StreamEncoder(parsed.response_format, rate)
    sse_stream = parsed.stream_format == "sse"

    def framed(data: bytes) -> bytes:
        return sse_delta(data) if sse_stream and data else data

    async def audio():
        # A caller who hangs up (or whose gateway times out) ends this generator: the piece
        # running then is cancelled (Runner.predict), and no further piece starts.
        with door.drain.in_flight():
            yield framed(encoder.encode(samples))
            try:
                for piece in pieces[1:]:
                    output = await _predict_waiting(door.runner, parsed.cog_inputs(piece, schema))
                    yield framed(encoder.encode(wav_samples(output)[0]))
            except ApiError as e:  # the answer has started: all that can be done is to end it
                print(f"front door: /v1/audio/speech: {e.message}", file=sys.stderr)
                return
            yield framed(encoder.close())
            if sse_stream:
                yield sse_done(len(parsed.text.split()))

    media_type = "text/event-stream" if sse_stream else CONTENT_TYPES[parsed.response_format]
    return StreamingResponse(audio(), media_type=media_type, headers={"Cache-Control": "no-store"})


routes = [Route("/v1/audio/speech", create_speech, methods=["POST"])]
