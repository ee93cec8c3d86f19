"""OpenVoice's hand-off from MeloTTS (44.1 kHz) to the converter (22.05 kHz), as upstream does it:
a 16-bit WAV written by soundfile, read back by librosa 0.9, resampled by resampy 0.4's kaiser_best.

The reference figures were measured with resampy 0.4.3 and soundfile 0.14 (libsndfile 1.2.2),
run out of tree; the filter that resampy had before 0.4 (64 zero crossings, roll-off 0.9476,
beta 14.77) and rounding to x * 32767 both fail these tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saladcog.tts.openvoice.engine import pcm16_round_trip
from saladcog.tts.resample import resample


def _tone_gain(freq: float) -> float:
    t = np.arange(44100) / 44100
    y = resample(torch.from_numpy(np.sin(2 * np.pi * freq * t).astype(np.float32)), 44100, 22050).numpy()
    return float(np.abs(y[2000:-2000]).max())  # away from the edges, where the filter is cut


def test_gain_near_the_band_edge_is_resampy_0_4s():
    assert _tone_gain(10_000) == pytest.approx(0.67225, abs=2e-4)  # the old kaiser_best: 0.99
    assert _tone_gain(1_000) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "position, samples, support",
    [
        # an impulse on an even input sample lands on an output sample: y[100] is the filter's peak
        (200, {100: 0.4586736858, 101: 0.0407616533, 110: -0.0064132931, 124: 7.39116731e-05}, (51, 149)),
        (201, {100: 0.3154341280, 101: 0.3154341280, 110: 0.0104232626, 124: -0.0015475239}, (51, 150)),
    ],
)
def test_impulse_response_matches_resampy_kaiser_best(position, samples, support):
    x = torch.zeros(401)
    x[position] = 1
    y = resample(x, 44100, 22050).numpy()
    assert len(y) == 201 and y[200] == 0  # resampy gives 200 samples, librosa pads to ceil(401 / 2)
    for index, value in samples.items():
        assert y[index] == pytest.approx(value, abs=1e-7), index
    nonzero = np.flatnonzero(y)
    assert (nonzero.min(), nonzero.max()) == support  # 50 zero crossings at half rate: 99 samples a wing


@pytest.mark.parametrize(
    "rates, length, samples, support",
    [
        ((22050, 44100), 802, {400: 0.9173473716, 401: 0.6308682561, 403: -0.1952136904, 449: 0.0026269695}, (302, 498)),
        # 160:147, where resampy steps through its table by int(0.91875 * 2**13) points, not 0.91875
        ((48000, 44100), 369, {183: 0.3234125674, 184: 0.7716451287, 185: -0.1036072820, 230: 3.24515895e-06}, (135, 232)),
    ],
)
def test_other_ratios_match_resampy(rates, length, samples, support):
    x = torch.zeros(401)
    x[200] = 1
    y = resample(x, *rates).numpy()
    assert len(y) == length
    for index, value in samples.items():
        assert y[index] == pytest.approx(value, abs=1e-7), index
    nonzero = np.flatnonzero(y)
    assert (nonzero.min(), nonzero.max()) == support


def test_pcm16_round_trip_is_soundfiles_floor_times_32768():
    floats = np.array([0.3, -0.3, 0.7, -0.7, 1.5, -1.5, 2.5, 32767.67, 32768, -32768, 40000, -40000], np.float32) / 32768
    ints = pcm16_round_trip(floats) * 32768
    # libsndfile 1.2 via soundfile 0.14 stores these floats as exactly these int16 values
    assert ints.tolist() == [0, -1, 0, -1, 1, -2, 2, 32767, 32767, -32768, 32767, -32768]
    assert pcm16_round_trip(floats).dtype == np.float32
