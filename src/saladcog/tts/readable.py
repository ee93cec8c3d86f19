"""What a TTS model cannot read is left out of the text; text with nothing readable is refused.

Each model says which characters it can read (`readable`) and which of those carry speech
(`speakable`: letters and digits of its script). Emoji, control characters and other scripts
would otherwise reach the model as unknown tokens, which it speaks as noise or as "unk".
"""

from __future__ import annotations

import re
from collections.abc import Callable

SHOWN = 10  # characters named in an error
# A terminal escape sequence (ESC [ 3 1 m, ESC ] … BEL) is one control, not the letters it is
# spelled with: it is read as its ESC alone, which no model reads.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


class TextError(ValueError):
    """The text cannot be spoken by this model; the message says why."""


def _describe(chars: list[str]) -> str:
    names = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars[:SHOWN])
    return names + (f" and {len(chars) - SHOWN} more" if len(chars) > SHOWN else "")


def readable_text(text: str, readable: Callable[[str], bool], speakable: Callable[[str], bool], reads: str) -> str:
    """`text` without the characters the model cannot read; TextError if nothing speakable is left.

    `reads` says in the user's terms what the model reads, for the error message.
    """
    text = _ESCAPE_SEQUENCE.sub("\x1b", text)
    kept = "".join(c for c in text if readable(c))
    if any(speakable(c) for c in kept):
        return kept
    unreadable = list(dict.fromkeys(c for c in text if not readable(c) or (c.isalnum() and not speakable(c))))
    if unreadable:
        raise TextError(f"the text has nothing this model can read (it reads {reads}): {_describe(unreadable)}")
    if not kept.strip():
        raise TextError("the text is empty: there is nothing to speak")
    raise TextError("the text has nothing to say: only punctuation or symbols")
