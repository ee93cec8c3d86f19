"""Split long text into pieces MetaVoice-1B can speak in one pass.

One pass covers at most ~12 s of audio (the second stage sees 1024 positions, text included),
and quality drops well before that, so the text is cut into pieces of at most two sentences and
at most `MAX_PIECE_CHARS` characters (upstream's own UI limit). A sentence longer than that is cut
at the last clause boundary (, ; :) or space before the limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

MAX_PIECE_CHARS = 220
SENTENCES_PER_PIECE = 2
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _cut_long(sentence: str, limit: int) -> Iterator[str]:
    while len(sentence) > limit:
        window = sentence[: limit + 1]
        cut = max(window.rfind(c) for c in ",;:")
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit  # one unbroken word longer than the limit: cut it
        else:
            cut += 1
        yield sentence[:cut].strip()
        sentence = sentence[cut:].strip()
    if sentence:
        yield sentence


def split_text(text: str, limit: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """Yield pieces of at most two sentences and at most `limit` characters, in order."""
    piece: list[str] = []
    for sentence in _sentences(text):
        for part in _cut_long(sentence, limit):
            joined = " ".join(piece + [part])
            if piece and (len(piece) >= SENTENCES_PER_PIECE or len(joined) > limit):
                yield " ".join(piece)
                piece = []
            piece.append(part)
    if piece:
        yield " ".join(piece)
