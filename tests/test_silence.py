"""Silence gives no text: Whisper, given silence, invents "You" or "Thank you."; saladcog cuts
long silences out before decoding (asr/clips.py `without_silence`), so a silent file gives no
segment and speech after a long silence is transcribed in its place and nothing before it."""

from __future__ import annotations

import jiwer
import numpy as np

from conftest import normalize, predict
from saladcog import audio
from saladcog.asr.clips import speech_spans
from saladcog.client import data_uri

SR = 16000
MINUTE = np.zeros(SR * 60, dtype=np.float32)


def test_speech_spans_skip_long_silence_and_keep_pauses(clips):
    speech = clips[0].samples
    pause = np.zeros(int(1.0 * SR), dtype=np.float32)
    signal = np.concatenate([MINUTE[: SR * 30], speech, pause, speech, MINUTE[: SR * 10]])
    spans = speech_spans(signal, SR)
    assert len(spans) == 1, spans  # the 1 s pause inside speech is kept
    start, end = spans[0]
    assert 29.5 * SR <= start <= 30 * SR and (30 + 2 * 7.1 + 1) * SR <= end <= (30 + 2 * 7.1 + 1.5) * SR
    assert speech_spans(MINUTE, SR) == []


def test_minutes_of_silence_give_no_text(whisper_server, tmp_path):
    path = audio.encode([MINUTE] * 12, SR, tmp_path / "silence.flac", "flac")
    body = predict(whisper_server.url(), {"audio": data_uri(path)}).json()
    assert body["status"] == "succeeded", body.get("error")
    output = body["output"]
    assert output["segments"] == [] and output["text"] == "", output["text"][:200]
    assert output["duration"] == 720.0


def test_speech_after_a_long_silence_is_all_that_is_transcribed(whisper_server, clips, tmp_path):
    """15 minutes of silence, then a LibriVox clip: its words, at its time, and nothing else."""
    clip = clips[0]
    path = audio.encode([*[MINUTE] * 15, clip.samples], SR, tmp_path / "late.flac", "flac")
    body = predict(whisper_server.url("127.0.0.1"), {"audio": data_uri(path)}).json()
    assert body["status"] == "succeeded", body.get("error")
    output = body["output"]
    assert jiwer.wer(normalize(clip.text), normalize(output["text"])) <= 0.1, output["text"]
    assert all(segment["start"] >= 899.5 for segment in output["segments"]), output["segments"][0]
