"""Who said each segment and each word: speaker turns matched to transcript timings.

The rule is WhisperX's, which users of diarized transcripts already parse: a span (segment or
word) gets the speaker whose turns overlap it the longest in total; a span that no turn
overlaps gets the speaker of the nearest turn; with no turns at all it is `UNKNOWN`. Turns are
pyannote's exclusive diarization (one speaker at a time, made for transcripts); overlapping
turns work too. Ties go to the speaker who spoke first in the span (then the earlier turn), so
the answer never depends on the order the turns came in.

Pure functions on plain data: no model, no torch. A long file has thousands of turns and tens of
thousands of words, so turns are searched by bisection (a prefix maximum of their ends makes
that valid for overlapping turns as well), not scanned for every word.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import string
from collections.abc import Iterable, Sequence

UNKNOWN = "UNKNOWN"


@dataclasses.dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


class TurnIndex:
    """Turns sorted by start, searchable by time."""

    def __init__(self, turns: Iterable[Turn]):
        self.turns = sorted((t for t in turns if t.end > t.start), key=lambda t: (t.start, t.end))
        self._starts = [t.start for t in self.turns]
        # (latest end, minus the first turn that has it) among the first i+1 turns: it never
        # decreases, so bisection finds the first turn that can reach past a time even when
        # turns overlap.
        self._reach = list(itertools.accumulate(((t.end, -i) for i, t in enumerate(self.turns)), max))

    def speaker(self, start: float, end: float) -> str:
        """The speaker of the span [start, end): largest overlap, else nearest turn, else UNKNOWN."""
        if not self.turns:
            return UNKNOWN
        first = bisect.bisect_right(self._reach, (start, 0))
        overlap: dict[str, float] = {}
        for turn in itertools.islice(self.turns, first, None):
            if turn.start >= end:
                break
            shared = min(turn.end, end) - max(turn.start, start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            # max() keeps the first of equals; dicts keep the order speakers first appeared in.
            return max(overlap, key=overlap.__getitem__)
        return self._nearest(start, end)

    def _nearest(self, start: float, end: float) -> str:
        """The speaker of the turn with the smallest gap to a span no turn overlaps; the earlier
        turn on a tie. A zero-length span inside a turn has a negative gap to it."""
        after = bisect.bisect_left(self._starts, end)  # the first turn starting at or after the span
        candidates = []
        if after:  # of the turns starting before the span, the one that ends latest
            reach, minus_index = self._reach[after - 1]
            candidates.append((start - reach, 0, -minus_index))
        if after < len(self.turns):
            candidates.append((self.turns[after].start - end, 1, after))
        return self.turns[min(candidates)[2]].speaker


def label_segments(segments: Sequence[dict], turns: Iterable[Turn]) -> list[dict]:
    """Copies of segment dicts (`start`, `end`, optional `words` with `start`, `end`) with a
    `speaker` on each segment and each word."""
    index = turns if isinstance(turns, TurnIndex) else TurnIndex(turns)
    labelled = []
    for segment in segments:
        shaped = {**segment, "speaker": index.speaker(segment["start"], segment["end"])}
        if "words" in segment:
            shaped["words"] = [{**w, "speaker": index.speaker(w["start"], w["end"])} for w in segment["words"]]
        labelled.append(shaped)
    return labelled


def _letters(n: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: the labels OpenAI gives speakers it does not know by name."""
    label = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        label = string.ascii_uppercase[rest] + label
    return label


def diarized_json(output: dict) -> dict:
    """OpenAI's `response_format=diarized_json` body (`TranscriptionDiarized` in its SDK) from
    the WhisperDiarize runner's output. Speakers are renamed A, B, … in label order
    (SPEAKER_00 is A), as OpenAI names speakers it was given no names for; UNKNOWN stays."""
    labels = sorted({turn["speaker"] for turn in output["speakers"]})
    names = {label: _letters(i) for i, label in enumerate(labels)}
    return {
        "task": "transcribe",
        "duration": output["duration"],
        "text": output["text"],
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{i}",
                "start": s["start"],
                "end": s["end"],
                "text": s["text"].strip(),
                "speaker": names.get(s["speaker"], s["speaker"]),
            }
            for i, s in enumerate(output["segments"])
            if s["text"].strip()
        ],
        "usage": {"type": "duration", "seconds": output["duration"]},
    }
