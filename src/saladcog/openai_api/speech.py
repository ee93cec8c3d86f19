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

import base64
import dataclasses
import io
import struct
import wave

import av
import numpy as np

from saladcog.client import decode_data_uri
from saladcog.openai_api import sse
from saladcog.openai_api.errors import bad_request
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


@dataclasses.dataclass
class SpeechRequest:
    text: str
    speaker: str | None  # the runner's speaker, None when it has no speaker input
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: str = "audio"
    seed: int | None = None  # not OpenAI's: same seed, same audio (the runners' `seed`)

    def pieces(self) -> list[str]:
        """The text as the engine would split it; text with no speakable piece is sent whole,
        so that the runner refuses it with its own message."""
        return list(split_sentences(self.text)) or [self.text]

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

