"""The waveform decoded once for Whisper and pyannote (saladcog.diarize.waveform): the same
samples as a plain decode, given back in blocks, silence recognised, the temporary file gone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import SPEECH
from saladcog import audio
from saladcog.diarize.waveform import SAMPLING_RATE, decoded


def test_decoded_once_is_the_plain_decode_in_blocks():
    path = SPEECH / "goforward.wav"
    expected = audio.decode(path, SAMPLING_RATE)
    with decoded(path) as waveform:
        scratch = waveform.samples.filename
        assert waveform.has_sound and waveform.duration == expected.shape[0] / SAMPLING_RATE
        np.testing.assert_array_equal(np.asarray(waveform.samples), expected)
        blocks = list(waveform.blocks(seconds=1.0))
        waveform.release()  # the mapping stays readable after its pages are dropped
        np.testing.assert_array_equal(np.asarray(waveform.samples[:100]), expected[:100])
    assert [b.shape[0] for b in blocks[:-1]] == [SAMPLING_RATE] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    assert not Path(scratch).exists()


def test_all_silence_is_known_before_any_model_runs(tmp_path):
    quiet = audio.encode(np.full(5 * SAMPLING_RATE, 1e-4, dtype=np.float32), SAMPLING_RATE, tmp_path / "room.wav")
    with decoded(quiet) as waveform:
        assert not waveform.has_sound
