"""Where there is no long silence, saladcog transcribes exactly what faster-whisper alone would:
the same samples reach the model (audio.stream decodes as faster_whisper.decode_audio does;
asr/clips.without_silence leaves such a clip untouched), so text and segment times are equal,
in process and through the real Cog server."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SPEECH, predict
from saladcog import audio
from saladcog.asr.clips import SILENCE_RMS, SPEECH_PAD_SECONDS, speech_spans, without_silence
from saladcog.asr.transcribe import TranscribeOptions, transcribe
from saladcog.client import data_uri

SR = 16000
# (seconds of silence before, after) each LibriVox clip in its 22.05 kHz version: all shorter
# than MIN_SILENCE_SECONDS, some longer than the padding (an 11.27 s file of the issue ended in
# 0.39 s of silence, of which the old cut took 53 ms).
EDGES = [(0.0, 0.39), (0.3, 0.0), (0.02, 0.6), (0.5, 0.1), (1.2, 1.5)]


@pytest.fixture(scope="module")
def speech_files(clips, tmp_path_factory) -> list:
    """The test clips as shipped, and each LibriVox clip resampled to 22.05 kHz (PyAV) with
    short digital silence at its edges."""
    folder = tmp_path_factory.mktemp("equality")
    files = [clip.wav for clip in clips] + [SPEECH / "goforward.wav"]
    for clip, (before, after) in zip(clips, EDGES):
        samples = audio.decode(clip.wav, 22050)
        silence = [np.zeros(round(s * 22050), dtype=np.float32) for s in (before, after)]
        path = folder / f"{clip.wav.stem}-22k.wav"
        files.append(audio.encode(np.concatenate([silence[0], samples, silence[1]]), 22050, path))
    return files


def engine_segments(model, path) -> list[tuple[str, float, float]]:
    """faster-whisper on the file itself, with the options saladcog's defaults pass it."""
    options = TranscribeOptions()
    segments, _ = model.whisper.transcribe(
        str(path),
        task=options.task,
        language=options.language,
        beam_size=options.beam_size,
        temperature=options.temperatures(),
        initial_prompt=options.initial_prompt,
        condition_on_previous_text=options.condition_on_previous_text,
        word_timestamps=options.word_timestamps,
        vad_filter=options.vad_filter,
    )
    return [(s.text, s.start, s.end) for s in segments]


@pytest.fixture(scope="module")
def engine(tiny_en, speech_files) -> dict:
    return {path: engine_segments(tiny_en, path) for path in speech_files}


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
