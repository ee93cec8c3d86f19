"""Cut a long recording into clips at its quietest moments, so no word straddles a cut.

The audio arrives as a stream of blocks; at most one clip (plus one block) is held at a time,
so memory does not grow with the length of the file. Each clip ends in the middle of the longest
quiet stretch in the last `search_seconds` before `clip_seconds`, found on a 200 ms moving RMS:
a pause between words, well away from the words on either side.

`without_silence` then drops the long silent stretches of each clip before any model sees
them: Whisper, given silence, invents text ("You", "Thank you.") rather than saying nothing.
Anything else is left exactly as it was: a clip with no long silence reaches the model sample
for sample as faster-whisper alone would see it (a cut to a frame grid at the edges of a short
file changed what tiny.en heard), and where a silence is cut, the speech on either side keeps
SPEECH_PAD_SECONDS of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

FRAME_SECONDS = 0.02
SMOOTH_FRAMES = 10  # 200 ms: longer than a stop consonant's silence, shorter than a pause
# Silence: every 20 ms frame's RMS under -60 dBFS (digital silence, or a quiet room's floor;
# the pauses of the LibriVox test recordings stay above -55 dBFS) for at least
# MIN_SILENCE_SECONDS, so that the pauses inside speech are never cut out. Any frame above it is
# kept whole: a cut never takes a sample of a frame that holds sound.
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
    """[start, end) sample ranges of `audio` left once its long silences are cut out: the whole
    of it when it has none, [] when it is all silence. A cut keeps SPEECH_PAD_SECONDS of the
    silence next to the sound on either side; at the clip's own edges there is nothing to pad."""
    total = audio.shape[0]
    frame = max(1, int(FRAME_SECONDS * sampling_rate))
    n_frames = -(-total // frame)
    squares = np.zeros(n_frames * frame, dtype=np.float64)
    squares[:total] = audio.astype(np.float64) ** 2
    counts = np.full(n_frames, frame)
    counts[-1] = total - (n_frames - 1) * frame  # the last frame may be short
    silent = np.sqrt(squares.reshape(n_frames, frame).sum(axis=1) / counts) <= SILENCE_RMS
    if silent.all():
        return []
    # Runs of silent frames: [first, last) pairs from the edges of the boolean mask.
    runs = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    pad = round(SPEECH_PAD_SECONDS * sampling_rate)
    shortest = MIN_SILENCE_SECONDS * sampling_rate
    spans, kept_from = [], 0
    for first, last in runs.reshape(-1, 2).tolist():
        quiet_from, quiet_to = first * frame, min(total, last * frame)
        if quiet_to - quiet_from < shortest:
            continue
        cut_from = quiet_from if quiet_from == 0 else quiet_from + pad
        if cut_from > kept_from:
            spans.append((kept_from, cut_from))
        kept_from = quiet_to if quiet_to == total else quiet_to - pad
    if kept_from < total:
        spans.append((kept_from, total))
    return spans


def without_silence(
    clips: Iterable[tuple[float, np.ndarray]], sampling_rate: int
) -> Iterator[tuple[float, np.ndarray]]:
    """The parts of each (offset, samples) clip that are not long silence, as clips of their
    own with their offsets; a silent clip gives nothing and costs no decoding."""
    for offset, samples in clips:
        for start, end in speech_spans(samples, sampling_rate):
            yield offset + start / sampling_rate, samples[start:end]
