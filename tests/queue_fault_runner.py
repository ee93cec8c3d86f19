"""A Cog runner for the queue route's fault tests: it fails the way a model can (out of memory,
a refused input) or returns a file of a given size, so that the route's answers to each are
checked on the real Cog server without a model's cost."""

from __future__ import annotations

import tempfile

from cog import BaseRunner, Input, Path


class Faults(BaseRunner):
    def run(
        self,
        fault: str = Input(description="How to fail.", default="none", choices=["none", "out of memory", "bad input"]),
        file_mb: float = Input(description="Size of the file to return, in MB.", default=0.0, ge=0.0, le=64.0),
    ) -> Path:
        if fault == "out of memory":
            raise MemoryError("could not allocate the decoder's cache")
        if fault == "bad input":
            raise ValueError("the text has no readable words")
        out = Path(tempfile.mkdtemp()) / "speech.wav"
        out.write_bytes(b"RIFF" + bytes(int(file_mb * 1_000_000)))
        return out
