"""Transcripts as plain text, SubRip (.srt) and WebVTT (.vtt)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: the TTS images have no faster-whisper
    from faster_whisper.transcribe import Segment


def timestamp(seconds: float, decimal_marker: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def to_text(segments: Sequence[Segment]) -> str:
    return " ".join(segment.text.strip() for segment in segments if segment.text.strip())


def _cues(segments: Sequence[Segment], speakers: Sequence[str] | None):
    """(start, end, text) of each segment with text; `[SPEAKER_00] ` before the text when the
    segments' speakers are given (one per segment), as diarizing subtitle tools write it."""
    labels = speakers if speakers is not None else [None] * len(segments)
    return [
        (s.start, s.end, f"[{speaker}] {s.text.strip()}" if speaker else s.text.strip())
        for s, speaker in zip(segments, labels, strict=True)
        if s.text.strip()
    ]


def to_srt(segments: Sequence[Segment], speakers: Sequence[str] | None = None) -> str:
    blocks = [
        f"{i}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(segments, speakers), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment], speakers: Sequence[str] | None = None) -> str:
    blocks = [
        f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{text}\n"
        for start, end, text in _cues(segments, speakers)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)
