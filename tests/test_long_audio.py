"""Long recordings: clip-by-clip decoding keeps every word exactly once, in order, in time."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest

from conftest import normalize, predict
from saladcog import audio
from saladcog.asr.clips import clips, quietest_point
from saladcog.asr.transcribe import TranscribeOptions, transcribe

SR = 16000


def test_quietest_point_falls_in_the_pause(clips):
    speech = clips[0].samples
    pause = np.zeros(int(0.4 * SR), dtype=np.float32)
    signal = np.concatenate([speech, pause, clips[1].samples])
    cut = quietest_point(signal, 0, len(signal), SR)
    assert len(speech) <= cut <= len(speech) + len(pause)


def test_clips_cover_the_stream_exactly():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(SR * 95).astype(np.float32)
    signal[SR * 17 : SR * 18] = 0  # a pause inside the first search window
    blocks = np.array_split(signal, 13)  # blocks of odd sizes, as a decoder delivers them
    pieces = list(clips(blocks, SR, clip_seconds=20, search_seconds=5))
    offsets = [offset for offset, _ in pieces]
    assert np.array_equal(np.concatenate([p for _, p in pieces]), signal)
    assert offsets[0] == 0 and all(a < b for a, b in zip(offsets, offsets[1:]))
    assert 17 <= offsets[1] <= 18  # cut in the pause
    assert all(len(p) <= 20 * SR for _, p in pieces)


def test_clip_boundaries_lose_and_double_no_word(tiny_en, clips, tmp_path):
    """Dense speech (0.3 s pauses) cut into 20 s clips: the words of all clips come out once,
    in order, as when the whole file is decoded at once."""
    pause = np.zeros(int(0.3 * SR), dtype=np.float32)
    sequence = clips * 3
    path = tmp_path / "dense.wav"
    audio.encode(np.concatenate([p for c in sequence for p in (c.samples, pause)]), SR, path)
    reference = normalize(" ".join(c.text for c in sequence))
    clipped = transcribe(tiny_en, path, TranscribeOptions(clip_seconds=20))
    assert clipped.detected.duration > 70
    starts = [s.start for s in clipped.segments]
    assert starts == sorted(starts) and clipped.segments[-1].end <= clipped.detected.duration + 0.5
    assert [s.id for s in clipped.segments] == list(range(1, len(clipped.segments) + 1))
    whole = transcribe(tiny_en, path, TranscribeOptions(clip_seconds=600))
    against_whole = jiwer.process_words(reference, normalize(whole.text))
    against_clipped = jiwer.process_words(reference, normalize(clipped.text))
    # Cutting may change a word the model hears without context (a substitution), but it
    # must not drop or repeat one: deletions and insertions are those of the uncut decoding.
    assert against_clipped.deletions == against_whole.deletions
    assert against_clipped.insertions == against_whole.insertions
    assert against_clipped.wer <= 0.08


@pytest.fixture(scope="module")
def half_hour(clips, tmp_path_factory, file_server):
    """31 minutes: 12 rounds of the five clips (1.5 s apart), each round followed by 2 minutes
    of silence; served over HTTP (as a user's URL input would be) as MP3."""
    gap = np.zeros(int(1.5 * SR), dtype=np.float32)
    silence = np.zeros(120 * SR, dtype=np.float32)
    pieces, spans, t = [], [], 0.0
    for _ in range(12):
        for clip in clips:
            samples = clip.samples
            spans.append((t, t + len(samples) / SR, clip.text))
            pieces += [samples, gap]
            t += len(samples) / SR + 1.5
        pieces.append(silence)
        t += 120
    root, base = file_server
    audio.encode(np.concatenate(pieces), SR, root / "half-hour.mp3", "mp3")
    return f"{base}/half-hour.mp3", spans, t


def test_half_hour_file_through_the_server(whisper_server, half_hour):
    url, spans, total = half_hour
    assert total >= 30 * 60
    # The mode for long files: VAD plus the batched pipeline, whose windows follow the pauses.
    inputs = {"audio": url, "vad_filter": True, "batch_size": 8, "word_timestamps": True}
    body = predict(whisper_server.url("[::1]"), inputs, timeout=900).json()
    assert body["status"] == "succeeded", body.get("error")
    output = body["output"]
    assert output["duration"] == pytest.approx(total, abs=1.0)
    words = [w for s in output["segments"] for w in s["words"]]
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    for start, end, text in spans:
        # Each clip's words, by their own timestamps: all there, once, in order.
        heard = normalize("".join(w["word"] for w in words if start - 0.5 <= w["start"] < end + 0.5))
        assert jiwer.wer(text, heard) <= 0.25, (start, text, heard)
    reference = normalize(" ".join(text for _, _, text in spans))
    measures = jiwer.process_words(reference, normalize(output["text"]))
    assert measures.insertions <= 1 and measures.wer <= 0.05, (measures.insertions, measures.wer)
