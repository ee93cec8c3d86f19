"""Sentence splitting for long text, with MeloTTS's rules (its `split_sentences_latin`/`txtsplit`).

Pieces aim for `desired` characters and never exceed `max_length`: a piece ends at the first
sentence or clause boundary ("!", "?", or "." / "," before a space) once it is long enough; a run
that reaches `max_length` is cut back to its last boundary, else to a space. Text shorter than
`desired` stays one piece. The generator reads the text once, so pieces stream out of a chapter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_PUNCT_ONLY = re.compile(r"^[\s.,;:!?]*$")
# Punctuation the splitter writes in ASCII before anything else reads the text.
TO_ASCII = {"。": ".", "！": ".", "？": ".", "；": ".", "，": ",", "“": '"', "”": '"', "‘": "'", "’": "'"}
_TO_ASCII = str.maketrans(TO_ASCII)


def _prepare(text: str) -> str:
    text = text.translate(_TO_ASCII)
    text = re.sub(r"[<>()\[\]\"«»]+", "", text)
    # Upstream's quote rules never fire: quotes are deleted above. Newlines become spaces.
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"([,.?!])", r"\1 ", text)  # a boundary is punctuation followed by a space
    return re.sub(r"\s+", " ", text)


def _chunks(text: str, desired: int, max_length: int) -> Iterator[str]:
    end = len(text) - 1
    pos = -1
    start = 0  # current piece is text[start:pos + 1]
    boundaries: list[int] = []

    def peek(delta: int) -> str:
        # Upstream never looks at the last character and treats "nothing" as matching any set.
        p = pos + delta
        return text[p] if 0 <= p < end else ""

    while pos < end:
        pos += 1
        c = text[pos]
        length = pos + 1 - start
        if length >= max_length:
            if boundaries and length > desired / 2:
                pos = boundaries[-1]
            else:
                while c not in "!?. " and pos > 0 and pos + 1 - start > desired:
                    pos -= 1
                    c = text[pos]
            yield text[start : pos + 1]
            start, boundaries = pos + 1, []
        elif c in "!?" or (c in ".," and peek(1) in " "):
            while pos < end and pos + 1 - start < max_length and peek(1) in "!?.":
                pos += 1
            boundaries.append(pos)
            if pos + 1 - start >= desired:
                yield text[start : pos + 1]
                start, boundaries = pos + 1, []
    yield text[start:]


def split_sentences(text: str, desired: int = 256, max_length: int = 512) -> Iterator[str]:
    """Yield the pieces MeloTTS would synthesize one by one (stripped, never punctuation-only)."""
    for piece in _chunks(_prepare(text), desired, max_length):
        piece = piece.strip()
        if piece and not _PUNCT_ONLY.match(piece):
            yield piece
