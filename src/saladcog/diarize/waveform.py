"""A whole file's 16 kHz waveform, decoded once, for both transcription and diarization.

Diarization needs the whole recording at once (pyannote clusters speakers across all of it),
and Whisper reads it again clip by clip; decoding twice would double the slowest CPU step. The
samples are streamed block by block (`audio.stream`) into a temporary file of float32 and mapped
read-only: 4 hours at 16 kHz are 0.92 GB on disk, not in memory. Reading a mapped file still
makes its pages resident, and the kernel counts them in the process's RSS until memory runs
short, so `release()` drops them from this process (madvise DONTNEED; they stay in the page
cache and come back on the next read). Callers release after each block (transcription) or each
batch (pyannote's progress hook): what is resident of the waveform stays a few blocks long,
whatever the file's length.
"""

from __future__ import annotations

import contextlib
import mmap
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from saladcog import audio
from saladcog.asr.clips import speech_spans

SAMPLING_RATE = 16000
BLOCK_SECONDS = 30.0


class DiskWaveform:
    def __init__(self, samples: np.memmap | np.ndarray, has_sound: bool):
        self.samples = samples
        self.has_sound = has_sound  # False: all of it is long silence (clips.speech_spans)

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / SAMPLING_RATE

    def release(self) -> None:
        """Drop the mapped pages this process has read (they stay in the page cache)."""
        mapping = getattr(self.samples, "_mmap", None)
        if mapping is not None:
            mapping.madvise(mmap.MADV_DONTNEED)

    def blocks(self, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        """Copies of consecutive blocks, releasing the mapping after each."""
        step = int(seconds * SAMPLING_RATE)
        for start in range(0, self.samples.shape[0], step):
            block = np.array(self.samples[start : start + step])
            self.release()
            yield block


@contextlib.contextmanager
def decoded(path, *, name: str | None = None) -> Iterator[DiskWaveform]:
    """Decode `path` to mono 16 kHz float32 in a temporary file, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="saladcog-waveform-") as scratch:
        raw = Path(scratch) / "samples.f32"
        has_sound = False
        length = 0
        with raw.open("wb") as out:
            for block in audio.stream(path, SAMPLING_RATE, block_seconds=BLOCK_SECONDS, name=name):
                samples = np.ascontiguousarray(block, dtype=np.float32)
                has_sound = has_sound or bool(speech_spans(samples, SAMPLING_RATE))
                out.write(samples.tobytes())
                length += samples.shape[0]
        if length == 0:
            raise audio.AudioError(f"{name or Path(path).name} holds no audio samples")
        # The file is unlinked on exit; the mapping goes with the last array or tensor using it.
        yield DiskWaveform(np.memmap(raw, dtype=np.float32, mode="r", shape=(length,)), has_sound)
