"""Decode any media file that FFmpeg reads (audio or video) to mono float32 at a chosen rate.

Long files are decoded block by block (`stream`), so memory stays flat whatever their length;
`probe` checks a file before any model time is spent on it, and refuses audio longer than the
server's cap (SALADCOG_MAX_AUDIO_SECONDS) from the header before reading on. The header and the
packets' timestamps are the file's own word and may lie, so `stream` counts the samples it
decodes and stops at the same cap. Only a length the container declares can make a file
"truncated" or "too long" in `probe`: a length FFmpeg estimated from the bit rate (MP3 without
a Xing header, raw ADTS AAC) is a guess, wrong for any variable bit rate. Samples come out as
`faster_whisper.decode_audio` gives them (resampled to 16-bit, then scaled to float), so a
model sees the very input it would see when called on the file itself. Every problem with
the input is raised as `AudioError`, whose message names the file as the caller knows it
(`name`: its URL, "the uploaded audio"; by default the file's own name) and what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import av.logging
import numpy as np

# Shorter than this there is no word to recognise or voice to clone: refuse rather than guess.
MIN_SECONDS = 0.25
# A file whose packets end this much before its header's duration is truncated.
_TRUNCATION_TOLERANCE_S = 0.5
# The longest audio a server accepts (SALADCOG_MAX_AUDIO_SECONDS): 4 hours.
DEFAULT_MAX_AUDIO_SECONDS = 4 * 3600.0


def max_audio_seconds() -> float:
    return float(os.environ.get("SALADCOG_MAX_AUDIO_SECONDS") or DEFAULT_MAX_AUDIO_SECONDS)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class AudioError(ValueError):
    """The input cannot be used as audio; the message says why."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    path: Path
    duration: float  # seconds, from the packets actually present
    sample_rate: int  # the file's own rate
    channels: int
    codec: str


def _open(path: Path, name: str):
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise AudioError(f"cannot read {name}: {e.strerror}") from e
    if size == 0:
        raise AudioError(f"{name} is empty (0 bytes)")
    try:
        with _ffmpeg_warnings() as warnings:
            container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise AudioError(
            f"{name} is not an audio or video file that FFmpeg can read ({e.strerror})"
        ) from e
    if not container.streams.audio:
        container.close()
        raise AudioError(f"{name} has no audio stream")
    return container, any(_BIT_RATE_ESTIMATE in text for _, _, text in warnings)


# What FFmpeg says (libavformat, estimate_timings_from_bit_rate) when no stream of the file
# declares a length and it divides the file's size by a bit rate instead. PyAV 18 does not
# expose AVFormatContext.duration_estimation_method; this warning is how FFmpeg marks it.
_BIT_RATE_ESTIMATE = "Estimating duration from bitrate"
# PyAV's log level is process-wide: one opening at a time turns it on and back off.
_log_lock = threading.Lock()


@contextlib.contextmanager
def _ffmpeg_warnings():
    """The FFmpeg warnings logged by this thread inside the block, as (level, source, text)."""
    with _log_lock:
        level = av.logging.get_level()
        av.logging.set_level(av.logging.WARNING)
        try:
            with av.logging.Capture(local=True) as logs:
                yield logs
        finally:
            av.logging.set_level(level)


def _too_long(name: str, length: str, limit: float) -> AudioError:
    return AudioError(
        f"{name} is too long: {length}; this server accepts at most {_clock(limit)} "
        "(h:mm:ss, SALADCOG_MAX_AUDIO_SECONDS)"
    )


def probe(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    max_seconds: float | None = None,
    first_seconds: float | None = None,
) -> AudioInfo:
    """Check that `path` holds a whole, long-enough audio stream; read no samples.

    Demuxing (not decoding) the packets is fast even for hours of audio, and it tells the
    real length: a truncated file whose header promises more is refused here, but only when
    the container declares that length (a bit-rate estimate promises nothing). Audio longer
    than `max_seconds` (default: the server's cap) is refused from its header when the header
    says so, else as soon as the packets pass the cap (`stream` checks the decoded samples
    against the same cap: timestamps may lie). With `first_seconds`, only that much is
    checked: the caller uses no more (a voice reference).
    """
    path = Path(path)
    name = name or path.name
    limit = max_audio_seconds() if max_seconds is None else max_seconds
    container, estimated = _open(path, name)
    with container:
        stream = container.streams.audio[0]
        declared = None if estimated else _declared_duration(container, stream)
        if declared is not None and declared > limit and first_seconds is None:
            raise _too_long(name, f"its header says {_clock(declared)}", limit)
        time_base = stream.time_base
        end = 0.0
        first = None
        packet_bytes = 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                start = float(packet.pts * time_base)
                first = start if first is None else min(first, start)
                end = max(end, start + float((packet.duration or 0) * time_base))
                packet_bytes += packet.size
                if first_seconds is not None and end - first >= first_seconds:
                    break
                if end - first > limit:
                    raise _too_long(name, f"more than {_clock(limit)} of audio", limit)
        except av.error.FFmpegError as e:
            raise AudioError(f"{name} is corrupt: {e.strerror}") from e
        if first is None:
            raise AudioError(f"{name} contains no audio data")
        duration = end - first
        reached_end = first_seconds is None or duration < first_seconds
        if reached_end and declared is not None and declared - duration > max(
            _TRUNCATION_TOLERANCE_S, 0.02 * declared
        ):
            # Cut short, the bytes present hold as much audio as their bit rate says; damaged
            # inside, the demuxer read bytes that gave no audio. A variable bit rate is only an
            # average, hence the margin of a tenth of the whole.
            bit_rate = stream.bit_rate or stream.codec_context.bit_rate
            unreadable = packet_bytes * 8 / bit_rate - duration if bit_rate else 0.0
            if unreadable > max(_TRUNCATION_TOLERANCE_S, 0.1 * declared):
                raise AudioError(
                    f"{name} is damaged inside: its header says {declared:.2f} s, its data "
                    f"should hold {packet_bytes * 8 / bit_rate:.2f} s, but only {duration:.2f} s "
                    "of it can be read as audio"
                )
            raise AudioError(
                f"{name} is truncated: its header says {declared:.2f} s "
                f"but only {duration:.2f} s of audio is present"
            )
        if duration < MIN_SECONDS:
            raise AudioError(
                f"{name} is too short: {duration:.2f} s of audio, "
                f"at least {MIN_SECONDS} s is needed"
            )
        codec = stream.codec_context
        return AudioInfo(
            path=path,
            duration=duration,
            sample_rate=codec.sample_rate or 0,
            channels=codec.channels or 0,
            codec=codec.name or "",
        )


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def stream(
    path: str | os.PathLike,
    sampling_rate: int = 16000,
    block_seconds: float = 30.0,
    *,
    name: str | None = None,
    first_seconds: float | None = None,
    max_seconds: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield the audio as mono float32 blocks of `block_seconds` (the last may be shorter);
    with `first_seconds`, stop reading the file once that much has been yielded. Past
    `max_seconds` of decoded audio (default: the server's cap) raise `AudioError`, whatever
    the file's header and timestamps say; nothing beyond the cap is yielded."""
    path = Path(path)
    name = name or path.name
    limit = max_audio_seconds() if max_seconds is None else max_seconds
    cap = int(limit * sampling_rate)
    block = max(1, int(block_seconds * sampling_rate))
    remaining = None if first_seconds is None else int(first_seconds * sampling_rate)
    # faster_whisper.decode_audio's resampler: to 16-bit, scaled to float below.
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=sampling_rate)
    pending: list[np.ndarray] = []
    pending_len = 0
    decoded = 0
    container, _ = _open(path, name)
    with container:
        frames = container.decode(audio=0)
        while remaining is None or remaining > 0:
            try:
                frame = next(frames)
            except StopIteration:
                frame = None
            except av.error.InvalidDataError:
                continue  # one damaged frame: skip it, as FFmpeg's own tools do
            except av.error.FFmpegError as e:
                raise AudioError(f"{name} could not be decoded: {e.strerror}") from e
            if frame is not None:
                frame.pts = None  # resample by sample count; broken timestamps must not matter
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
                pending.append(samples)
                pending_len += samples.shape[0]
                decoded += samples.shape[0]
            if decoded > cap and (first_seconds is None or first_seconds > limit):
                raise _too_long(name, f"more than {_clock(limit)} of audio", limit)
            while True:
                size = block if remaining is None else min(block, remaining)
                if size <= 0 or pending_len < size:
                    break
                joined = np.concatenate(pending)
                yield joined[:size]
                remaining = None if remaining is None else remaining - size
                rest = joined[size:]
                pending, pending_len = ([rest] if rest.size else []), rest.shape[0]
            if frame is None:
                break
    if pending_len and (remaining is None or remaining > 0):
        yield np.concatenate(pending)[:remaining]


def decode(
    path: str | os.PathLike,
    sampling_rate: int = 16000,
    *,
    name: str | None = None,
    first_seconds: float | None = None,
) -> np.ndarray:
    """The file (or its first `first_seconds`) as one mono float32 array, after `probe` has
    accepted it. Memory is bounded by what is returned, never by the file's length."""
    probe(path, name=name, first_seconds=first_seconds)
    blocks = list(
        stream(path, sampling_rate, block_seconds=60.0, name=name, first_seconds=first_seconds)
    )
    if not blocks:
        raise AudioError(f"{name or Path(path).name} contains no decodable audio")
    return np.concatenate(blocks)


def encode(
    samples: np.ndarray | Iterable[np.ndarray],
    sampling_rate: int,
    path: str | os.PathLike,
    fmt: str = "wav",
) -> Path:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV or FLAC, or as MP3 (192 kb/s).

    `samples` may be one array or an iterable of blocks (a generator of synthesized pieces):
    each block is written as it comes, so a long text's audio is never held whole in memory.
    """
    path = Path(path)
    blocks = [samples] if isinstance(samples, np.ndarray) else samples
    codecs = {"wav": "pcm_s16le", "flac": "flac", "mp3": "libmp3lame"}
    if fmt not in codecs:
        raise ValueError(f"unknown audio format {fmt!r}: expected one of {', '.join(codecs)}")
    with av.open(str(path), mode="w", format=fmt) as container:
        out = container.add_stream(codecs[fmt], rate=sampling_rate, layout="mono")
        if fmt == "mp3":
            out.bit_rate = 192_000
        step = sampling_rate  # one second per frame keeps the frames small
        for block in blocks:
            pcm = np.clip(np.asarray(block, dtype=np.float32).reshape(-1), -1.0, 1.0)
            pcm16 = np.round(pcm * 32767.0).astype(np.int16)
            for start in range(0, len(pcm16), step):
                frame = av.AudioFrame.from_ndarray(
                    pcm16[start : start + step].reshape(1, -1), format="s16", layout="mono"
                )
                frame.sample_rate = sampling_rate
                for packet in out.encode(frame):
                    container.mux(packet)
        for packet in out.encode(None):
            container.mux(packet)
    return path

