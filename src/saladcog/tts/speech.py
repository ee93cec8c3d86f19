"""What the TTS runners share: write synthesized pieces to a file as they come, and report."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from saladcog import audio
from saladcog.outputs import output_path


@dataclasses.dataclass
class Speech:
    path: Path
    audio_seconds: float
    pieces: int

    def metrics(self, text: str, started: float) -> dict:
        """words, audio seconds, processing seconds (since `started`), words per second."""
        seconds = time.perf_counter() - started
        words = len(text.split())
        return {
            "words": words,
            "audio_seconds": round(self.audio_seconds, 3),
            "processing_seconds": round(seconds, 3),
            "words_per_second": round(words / seconds, 3) if seconds else 0.0,
            "pieces": self.pieces,
        }


def write_speech(pieces: Iterable[np.ndarray], sample_rate: int, fmt: str) -> Speech:
    """Encode each piece as soon as it is synthesized: memory stays flat for a whole chapter."""
    path = output_path(f"speech.{fmt}")  # replaces the previous prediction's file
    counted = Speech(path=path, audio_seconds=0.0, pieces=0)

    def count(blocks: Iterable[np.ndarray]):
        for block in blocks:
            if block.size:
                counted.pieces += 1
                counted.audio_seconds += block.size / sample_rate
                yield block

    audio.encode(count(pieces), sample_rate, path, fmt)
    return counted
