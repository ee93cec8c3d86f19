"""Transcripts as plain text, SubRip (.srt) and WebVTT (.vtt)."""

from __future__ import annotations

from collections.abc import Sequence

from faster_whisper.transcribe import Segment


def timestamp(seconds: float, decimal_marker: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def to_text(segments: Sequence[Segment]) -> str:
    return " ".join(segment.text.strip() for segment in segments if segment.text.strip())


def _cues(segments: Sequence[Segment]):
    return [s for s in segments if s.text.strip()]


def to_srt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text.strip()}\n"
        for s in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)
