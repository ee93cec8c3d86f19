"""Where there is no long silence, saladcog transcribes exactly what faster-whisper alone would:
the same samples reach the model (audio.stream decodes as faster_whisper.decode_audio does;
asr/clips.without_silence leaves such a clip untouched), so text and segment times are equal,
in process and through the real Cog server."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SPEECH, engine_segments, predict, resampled_with_edges
from saladcog import audio
from saladcog.asr.clips import SILENCE_RMS, SPEECH_PAD_SECONDS, speech_spans, without_silence
from saladcog.asr.transcribe import transcribe
from saladcog.client import data_uri

SR = 16000


@pytest.fixture(scope="module")
def speech_files(clips, tmp_path_factory) -> list:
    """The test clips as shipped, and each LibriVox clip at 22.05 kHz with short silent edges."""
    shipped = [clip.wav for clip in clips] + [SPEECH / "goforward.wav"]
    return shipped + resampled_with_edges(tmp_path_factory.mktemp("equality"))


@pytest.fixture(scope="module")
def engine(tiny_en, speech_files) -> dict:
    return {
        path: [(s.text, s.start, s.end) for s in engine_segments(tiny_en, path)]
        for path in speech_files
    }


def test_decoded_samples_are_faster_whispers(speech_files):
    from faster_whisper import decode_audio

    for path in speech_files:
        streamed = np.concatenate(list(audio.stream(path, SR, block_seconds=1.0)))
        assert np.array_equal(streamed, decode_audio(str(path), SR)), path.name


def test_a_clip_without_long_silence_reaches_the_model_unchanged(speech_files):
    for path in speech_files:
        samples = audio.decode(path, SR)
        [(offset, kept)] = list(without_silence([(3.0, samples)], SR))
        assert offset == 3.0 and np.array_equal(kept, samples), path.name


def test_a_long_silence_is_cut_keeping_the_padding_and_every_sound(clips):
    speech = clips[0].samples
    silence = np.zeros(3 * SR, dtype=np.float32)
    signal = np.concatenate([silence, speech, silence[: int(2.5 * SR)], speech, silence[:SR]])
    spans = speech_spans(signal, SR)
    assert len(spans) == 2, spans  # the 3 s and 2.5 s silences cut, the last 1 s kept
    frame = int(0.02 * SR)
    loud = [
        (first, first + frame)
        for first in range(0, signal.shape[0], frame)
        if np.sqrt(np.mean(signal[first : first + frame].astype(np.float64) ** 2)) > SILENCE_RMS
    ]
    # Every 20 ms frame that holds sound is kept whole.
    assert all(any(s <= a and b <= e for s, e in spans) for a, b in loud)
    # Each cut ends exactly SPEECH_PAD_SECONDS before the next sound and starts as long after
    # the sound before it (at the file's start, nothing to pad).
    pad = round(SPEECH_PAD_SECONDS * SR)
    cuts = [(0, spans[0][0]), (spans[0][1], spans[1][0])]
    for cut_start, cut_end in cuts:
        assert min(a for a, _ in loud if a >= cut_end) == cut_end + pad
        if cut_start:
            assert max(b for _, b in loud if b <= cut_start) == cut_start - pad
    assert spans[1][1] == signal.shape[0]


def test_transcripts_equal_the_engines_in_process(tiny_en, speech_files, engine):
    for path in speech_files:
        result = transcribe(tiny_en, path)
        ours = [(s.text, s.start, s.end) for s in result.segments]
        assert ours == engine[path], path.name


def test_transcripts_equal_the_engines_through_the_server(whisper_server, speech_files, engine):
    for path in speech_files:
        body = predict(whisper_server.url("[::1]"), {"audio": data_uri(path)}).json()
        assert body["status"] == "succeeded", body.get("error")
        served = [(s["text"], s["start"], s["end"]) for s in body["output"]["segments"]]
        assert served == engine[path], path.name
