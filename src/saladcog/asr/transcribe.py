"""Transcribe a media file of any length with faster-whisper, clip by clip.

The file is decoded as a stream and cut into clips (2 minutes by default) at quiet points
(`clips.py`); each clip is transcribed on its own and its timestamps are shifted by the clip's
offset, so peak memory depends on the clip length, not on the file's. Long silences are cut
out of the clips before decoding (`clips.without_silence`): silence gives no text. The language
detected on the first clip with sound is kept for the rest. Each clip starts without the
previous clip's text as a prompt (the user's `initial_prompt` opens every clip): Whisper tends
to repeat a prompt where a clip's speech ends, and a clip always ends.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator

import numpy as np
from faster_whisper import BatchedInferencePipeline
from faster_whisper.transcribe import Segment, TranscriptionInfo, Word

from saladcog import audio
from saladcog.asr.clips import clips, without_silence
from saladcog.asr.formats import to_text
from saladcog.asr.model import LoadedModel, check_request

SAMPLING_RATE = 16000
# Whisper sees 30 s at a time; the batched pipeline is given windows no longer than this.
WINDOW_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    task: str = "transcribe"
    language: str | None = None  # None: detect on the first clip
    word_timestamps: bool = False
    vad_filter: bool = False
    batch_size: int = 1  # > 1: faster-whisper's batched pipeline
    beam_size: int = 5
    temperature: float = 0.0
    temperature_increment_on_fallback: float = 0.2
    initial_prompt: str | None = None
    condition_on_previous_text: bool = True
    # Feature extraction over a clip costs ~1 MB per second of it at its peak: 2-minute clips
    # keep that transient small; Whisper itself only ever sees 30 s windows.
    clip_seconds: float = 120.0

    def engine_arguments(self, language: str | None) -> dict:
        """The arguments of faster-whisper's `transcribe` that these options set."""
        return dict(
            language=language,
            task=self.task,
            beam_size=self.beam_size,
            temperature=self.temperatures(),
            initial_prompt=self.initial_prompt,
            condition_on_previous_text=self.condition_on_previous_text,
            word_timestamps=self.word_timestamps,
            vad_filter=self.vad_filter,
        )

    def temperatures(self) -> list[float]:
        """The starting temperature, then the fallbacks up to 1.0 (as openai/whisper does)."""
        if self.temperature_increment_on_fallback <= 0:
            return [self.temperature]
        steps = np.arange(self.temperature, 1.0 + 1e-6, self.temperature_increment_on_fallback)
        return [round(float(t), 4) for t in steps]


@dataclasses.dataclass(frozen=True)
class Detected:
    language: str
    language_probability: float
    duration: float  # seconds of audio in the file


@dataclasses.dataclass
class Transcription:
    detected: Detected
    segments: list[Segment]
    processing_seconds: float

    @property
    def text(self) -> str:
        return to_text(self.segments)

    @property
    def real_time_factor(self) -> float:
        return self.processing_seconds / self.detected.duration if self.detected.duration else 0.0


def _seconds(value: float) -> float:
    return round(float(value), 3)


def _shift(segment: Segment, offset: float, segment_id: int) -> Segment:
    words = segment.words
    if words is not None:
        words = [
            dataclasses.replace(w, start=_seconds(w.start + offset), end=_seconds(w.end + offset))
            for w in words
        ]
    return dataclasses.replace(
        segment,
        id=segment_id,
        seek=segment.seek + round(offset * 100),
        start=_seconds(segment.start + offset),
        end=_seconds(segment.end + offset),
        words=words,
    )


def _run_clip(
    model: LoadedModel,
    samples: np.ndarray,
    options: TranscribeOptions,
    language: str | None,
) -> tuple[Iterator[Segment], TranscriptionInfo]:
    common = options.engine_arguments(language)
    if options.batch_size <= 1:
        return model.whisper.transcribe(samples, **common)
    pipeline = BatchedInferencePipeline(model.whisper)
    windows = None
    if not options.vad_filter:
        # Without VAD the pipeline needs windows: cut at quiet points, as for clips.
        windows = [
            {"start": offset, "end": offset + len(piece) / SAMPLING_RATE}
            for offset, piece in clips([samples], SAMPLING_RATE, WINDOW_SECONDS, search_seconds=5.0)
        ]
    return pipeline.transcribe(
        samples, batch_size=options.batch_size, clip_timestamps=windows, **common
    )


def transcribe_stream(
    model: LoadedModel,
    path,
    options: TranscribeOptions = TranscribeOptions(),
    *,
    name: str | None = None,
) -> tuple[Iterator[Segment], Detected]:
    """Check the request and the file, detect the language on the first clip with sound, then
    return a generator of segments (timestamps relative to the whole file) and what was
    detected. `name` is how errors name the file (its URL, "the uploaded audio")."""
    check_request(model, options.task, options.language)
    info = audio.probe(path, name=name)
    blocks = audio.stream(path, SAMPLING_RATE, block_seconds=WINDOW_SECONDS, name=name)
    return transcribe_blocks(model, blocks, info.duration, options)


def transcribe_blocks(
    model: LoadedModel,
    blocks: Iterable[np.ndarray],
    duration: float,
    options: TranscribeOptions = TranscribeOptions(),
) -> tuple[Iterator[Segment], Detected]:
    """`transcribe_stream` on 16 kHz blocks decoded already (the diarizing runner decodes a
    file once for Whisper and pyannote); the request is the caller's to check."""
    clip_iter = without_silence(clips(blocks, SAMPLING_RATE, options.clip_seconds), SAMPLING_RATE)
    first = next(clip_iter, None)
    if first is None:  # all silence: nothing to detect, nothing to say
        detected = Detected(
            language=options.language or ("" if model.multilingual else "en"),
            language_probability=0.0,
            duration=round(duration, 3),
        )
        return iter(()), detected
    first_offset, first_samples = first
    first_segments, first_info = _run_clip(model, first_samples, options, options.language)
    detected = Detected(
        language=first_info.language,
        language_probability=round(float(first_info.language_probability), 4),
        duration=round(duration, 3),
    )

    def generate() -> Iterator[Segment]:
        next_id = 1
        offset, segments = first_offset, first_segments
        while True:
            for segment in segments:
                yield _shift(segment, offset, next_id)
                next_id += 1
            try:
                offset, samples = next(clip_iter)
            except StopIteration:
                return
            segments, _ = _run_clip(model, samples, options, detected.language)

    return generate(), detected


def transcribe(
    model: LoadedModel,
    path,
    options: TranscribeOptions = TranscribeOptions(),
    *,
    name: str | None = None,
) -> Transcription:
    started = time.perf_counter()
    segments, detected = transcribe_stream(model, path, options, name=name)
    collected = list(segments)
    return Transcription(
        detected=detected, segments=collected, processing_seconds=time.perf_counter() - started
    )


def segment_dict(segment: Segment, with_words: bool = True) -> dict:
    """A segment as JSON, in the shape of openai/whisper's (and replicate's cog-whisper)."""
    shaped = {
        "id": segment.id,
        "seek": segment.seek,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": float(segment.temperature),
        "avg_logprob": round(float(segment.avg_logprob), 4),
        "compression_ratio": round(float(segment.compression_ratio), 4),
        "no_speech_prob": round(float(segment.no_speech_prob), 4),
    }
    if with_words and segment.words is not None:
        shaped["words"] = [_word_dict(w) for w in segment.words]
    return shaped


def _word_dict(word: Word) -> dict:
    return {
        "start": word.start,
        "end": word.end,
        "word": word.word,
        "probability": round(float(word.probability), 4),
    }
