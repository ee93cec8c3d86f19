"""Cut a long recording into clips at its quietest moments, so no word straddles a cut.

The audio arrives as a stream of blocks; at most one clip (plus one block) is held at a time,
so memory does not grow with the length of the file. Each clip ends in the middle of the longest
quiet stretch in the last `search_seconds` before `clip_seconds`, found on a 200 ms moving RMS:
a pause between words, well away from the words on either side.

`without_silence` then drops the silent stretches of each clip before any model sees them:
Whisper, given silence, invents text ("You", "Thank you.") rather than saying nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

FRAME_SECONDS = 0.02
SMOOTH_FRAMES = 10  # 200 ms: longer than a stop consonant's silence, shorter than a pause
# Silence: a 200 ms RMS under -60 dBFS (digital silence, or a quiet room's floor; the pauses of
# the LibriVox test recordings stay above -55 dBFS) lasting at least MIN_SILENCE_SECONDS, so
# that the pauses inside speech are never cut out.
SILENCE_RMS = 10 ** (-60 / 20)
MIN_SILENCE_SECONDS = 2.0
# Speech keeps this much of the silence on each side: word onsets and tails stay whole.
SPEECH_PAD_SECONDS = 0.25


def quietest_point(audio: np.ndarray, start: int, end: int, sampling_rate: int) -> int:
    """Sample index in [start, end) in the middle of the longest quiet stretch of `audio`.

    Quiet: a 200 ms moving RMS within 10% (of the range up to the median) of the minimum. The
    middle of the longest such stretch keeps the cut away from the edges of speech; a cut just
    before a word's onset leaves a fragment that Whisper would turn into invented words.
    """
    frame = max(1, int(FRAME_SECONDS * sampling_rate))
    n_frames = (end - start) // frame
    if n_frames <= SMOOTH_FRAMES:
        return end
    window = audio[start : start + n_frames * frame].reshape(n_frames, frame)
    energy = np.sqrt(np.mean(window.astype(np.float64) ** 2, axis=1))
    smoothed = np.convolve(energy, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="valid")
    floor = smoothed.min()
    quiet = smoothed <= floor + 0.1 * (np.median(smoothed) - floor)
    # Runs of quiet frames: [first, last) pairs from the edges of the boolean mask.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    runs = edges.reshape(-1, 2)
    lengths = runs[:, 1] - runs[:, 0]
    # The longest run; among equals the last, so that the clip stays as long as possible.
    first, last = runs[len(lengths) - 1 - int(np.argmax(lengths[::-1]))]
    return int(start + ((first + last) // 2 + SMOOTH_FRAMES // 2) * frame)


def clips(
    blocks: Iterable[np.ndarray],
    sampling_rate: int,
    clip_seconds: float,
    search_seconds: float = 30.0,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (offset in seconds, samples) for consecutive clips covering the whole stream."""
    clip_len = int(clip_seconds * sampling_rate)
    search_len = min(int(search_seconds * sampling_rate), clip_len // 2)
    buffer = np.zeros(0, dtype=np.float32)
    consumed = 0
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if buffer.size else block
        while buffer.shape[0] >= clip_len:
            cut = quietest_point(buffer, clip_len - search_len, clip_len, sampling_rate)
            yield consumed / sampling_rate, buffer[:cut]
            buffer = buffer[cut:]
            consumed += cut
    if buffer.size:
        yield consumed / sampling_rate, buffer


def speech_spans(audio: np.ndarray, sampling_rate: int) -> list[tuple[int, int]]:
    """[start, end) sample ranges of `audio` that are not long silence; [] when all silent."""
    frame = max(1, int(FRAME_SECONDS * sampling_rate))
    n_frames = -(-audio.shape[0] // frame)
    padded = np.zeros(n_frames * frame, dtype=np.float32)
    padded[: audio.shape[0]] = audio
    energy = np.sqrt(np.mean(padded.reshape(n_frames, frame).astype(np.float64) ** 2, axis=1))
    # A centred 200 ms moving average, one value per frame even when there are fewer frames.
    full = np.convolve(energy, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES)
    smoothed = full[(SMOOTH_FRAMES - 1) // 2 : (SMOOTH_FRAMES - 1) // 2 + n_frames]
    sound = np.flatnonzero(smoothed > SILENCE_RMS)
    if sound.size == 0:
        return []
    min_gap = int(MIN_SILENCE_SECONDS / FRAME_SECONDS)
    breaks = np.flatnonzero(np.diff(sound) > min_gap)
    firsts = sound[np.concatenate([[0], breaks + 1])]
    lasts = sound[np.concatenate([breaks, [sound.size - 1]])]
    pad = int(SPEECH_PAD_SECONDS / FRAME_SECONDS)
    return [
        (max(0, (first - pad) * frame), min(audio.shape[0], (last + 1 + pad) * frame))
        for first, last in zip(firsts.tolist(), lasts.tolist())
    ]


def without_silence(
    clips: Iterable[tuple[float, np.ndarray]], sampling_rate: int
) -> Iterator[tuple[float, np.ndarray]]:
    """The parts of each (offset, samples) clip that are not long silence, as clips of their
    own with their offsets; a silent clip gives nothing and costs no decoding."""
    for offset, samples in clips:
        for start, end in speech_spans(samples, sampling_rate):
            yield offset + start / sampling_rate, samples[start:end]
