"""MetaVoice text handling: upstream's normalisation and the BPE stored in each checkpoint.

Normalisation (`fam/llm/utils.py` `normalize_text`) maps typographic punctuation to ASCII and
collapses whitespace. Upstream refuses any text with a character outside Latin-1 (the BPE was
trained on bytes of Latin-1 text only); here such characters, and control characters (which the
BPE would encode as bytes and the model speak), are left out, and only text with no letter or
digit left is refused. The BPE is a tiktoken `Encoding` rebuilt from the checkpoint's
`meta["tokenizer"]`; ids are shifted by the checkpoint's `offset` and end with end-of-text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import tiktoken

from ..readable import TextError, readable_text


# Upstream's table, code point -> replacement. 2122 (decimal) was meant to be the trade mark
# sign (U+2122) but maps U+084A; kept as upstream has it, so "™" is left out like any other
# character above U+00FF.
_TRANSLATE = {
    8175: "'", 8189: "'", 8190: "'",
    8208: "-", 8209: "-", 8210: "-", 8211: "-", 8212: "-", 8213: "-",
    8214: "||", 8216: "'", 8217: "'", 8218: ",", 8219: "`",
    8220: '"', 8221: '"', 8222: ",,", 8223: '"',
    8228: ".", 8229: "..", 8230: "...",
    8242: "'", 8243: '"', 8245: "'", 8246: '"',
    180: "'", 2122: "TM",
}  # fmt: skip
_SPACES = re.compile(r"\s\s+")


def readable(c: str) -> bool:
    """Latin-1, less control characters other than the whitespace upstream turns into spaces."""
    return ord(c) < 256 and (c in "\t\n\r" or unicodedata.category(c)[0] != "C")


def normalize_text(text: str) -> str:
    text = readable_text(text.translate(_TRANSLATE), readable, str.isalnum, "English in Latin-1 characters")
    for c in "\t\n\r*":
        text = text.replace(c, " ")
    return _SPACES.sub(" ", text.strip())


class BPETokenizer:
    """tiktoken BPE from a checkpoint's `meta["tokenizer"]`, with the stage's id offset."""

    def __init__(self, name: str, pat_str: str, mergeable_ranks: dict[bytes, int],
                 special_tokens: dict[str, int], offset: int | None = None):
        self.encoding = tiktoken.Encoding(
            name=name, pat_str=pat_str, mergeable_ranks=mergeable_ranks, special_tokens=special_tokens
        )
        self.offset = offset or 0

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "BPETokenizer":
        return cls(**meta["tokenizer"])

    @property
    def eot_token(self) -> int:
        return self.encoding.eot_token + self.offset

    def encode(self, text: str) -> list[int]:
        """Ids of normalised `text`, then end-of-text, all shifted by the offset."""
        try:
            ids = self.encoding.encode(text)  # special-token text in the input is refused
        except ValueError as e:
            raise TextError(f"the text contains a reserved token: {e}") from e
        return [i + self.offset for i in ids + [self.encoding.eot_token]]
