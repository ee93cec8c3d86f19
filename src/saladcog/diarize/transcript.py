"""A transcript with speakers: decode once, transcribe, then diarize, one stage after the other.

Whisper and pyannote both read the one decoded waveform (`waveform.decoded`). They run one after
the other, never at once, so that on an 8-12 GB card their memory peaks do not add up: Whisper's
weights stay loaded, and pyannote's working memory is handed back after each file
(`pipeline.diarize`). Segments and words then get their speakers from the exclusive turns.
"""

from __future__ import annotations

import dataclasses
import time

from faster_whisper.transcribe import Segment

from saladcog import audio
from saladcog.asr.model import LoadedModel, check_request
from saladcog.asr.transcribe import Detected, TranscribeOptions, segment_dict, transcribe_blocks
from saladcog.diarize import pipeline as diarization
from saladcog.diarize.speakers import TurnIndex, label_segments
from saladcog.diarize.waveform import decoded


@dataclasses.dataclass
class DiarizedTranscript:
    detected: Detected
    segments: list[Segment]
    diarization: diarization.Diarization | None  # None: not asked for
    transcription_seconds: float  # decoding included
    diarization_seconds: float

    def segment_dicts(self, with_words: bool) -> list[dict]:
        """Segments as JSON (transcribe.segment_dict), each segment and word with its speaker."""
        shaped = [segment_dict(s, with_words=True) for s in self.segments]
        if self.diarization is not None:
            shaped = label_segments(shaped, TurnIndex(self.diarization.exclusive_turns))
        if not with_words:
            for segment in shaped:
                segment.pop("words", None)
        return shaped


def transcribe_and_diarize(
    model: LoadedModel,
    pipeline,
    path,
    options: TranscribeOptions,
    *,
    name: str | None = None,
    diarize: bool = True,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> DiarizedTranscript:
    """Speakers are matched word by word, so `options` should ask for word timestamps."""
    diarization.check_speaker_counts(num_speakers, min_speakers, max_speakers)
    check_request(model, options.task, options.language)
    started = time.perf_counter()
    info = audio.probe(path, name=name)
    with decoded(path, name=name) as waveform:
        segments, detected = transcribe_blocks(model, waveform.blocks(), info.duration, options)
        segments = list(segments)
        transcribed = time.perf_counter()
        found = None
        if diarize:
            found = diarization.diarize(
                pipeline, waveform, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers
            )
    return DiarizedTranscript(
        detected=detected,
        segments=segments,
        diarization=found,
        transcription_seconds=transcribed - started,
        diarization_seconds=time.perf_counter() - transcribed,
    )
