"""MetaVoice's speaker encoder: 16 kHz reference audio -> a unit 256-d voice embedding.

A GE2E-style 3-layer LSTM (upstream `fam/quantiser/audio/speaker_encoder/`). The reference is
trimmed of leading/trailing silence, cut into 1.6 s windows that overlap by ~40 %, each window
becomes 160 frames of a 40-band mel power spectrogram, the LSTM's last hidden state goes
through Linear + ReLU and is L2-normalised, and the windows' mean is normalised again.

Upstream computes the mel spectrogram and the trim with librosa; both are re-derived here in
torch/numpy from librosa's definitions (Slaney mel scale and norm, periodic Hann window,
zero-padded centred STFT; RMS of 2048-sample frames hopped by 512 for the trim), so librosa
and its numba stack are not needed at run time.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import CheckpointError
from .gpt import assign_state_dict, read_checkpoint

SAMPLING_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s windows
RATE = 1.3  # windows per second
MIN_COVERAGE = 0.75
TRIM_TOP_DB = 20.0
TRIM_FRAME = 2048
TRIM_HOP = 512
# GE2E training parameters that inference never reads; the only keys a checkpoint may add.
TRAINING_ONLY_KEYS = ("similarity_weight", "similarity_bias")


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    logstep = math.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, f / (200.0 / 3))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    logstep = math.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


def mel_filters(sr: int = SAMPLING_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, 1 + n_fft/2) triangular filters from 0 Hz to sr/2, Slaney area normalisation."""
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrogram (no log), frames = 1 + len(wav) // 160."""
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    spec = torch.stft(
        x, N_FFT, hop_length=HOP, win_length=N_FFT, window=torch.hann_window(N_FFT, periodic=True),
        center=True, pad_mode="constant", return_complex=True,
    )
    power = spec.abs().pow(2)
    return (torch.from_numpy(mel_filters()) @ power).T.numpy()


def trim_silence(wav: np.ndarray, top_db: float = TRIM_TOP_DB) -> np.ndarray:
    """Drop leading/trailing frames more than `top_db` below the loudest frame (librosa's trim)."""
    padded = np.pad(wav.astype(np.float64), TRIM_FRAME // 2)
    n_frames = 1 + (len(padded) - TRIM_FRAME) // TRIM_HOP
    power = np.array(
        [np.mean(padded[i * TRIM_HOP : i * TRIM_HOP + TRIM_FRAME] ** 2) for i in range(n_frames)]
    )
    db = 10.0 * np.log10(np.maximum(1e-10, power)) - 10.0 * np.log10(max(1e-10, float(power.max())))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return wav[:0]
    start = int(loud[0]) * TRIM_HOP
    end = min(len(wav), (int(loud[-1]) + 1) * TRIM_HOP)
    return wav[start:end]


def partial_windows(n_samples: int) -> list[int]:
    """Start frames of the 160-frame windows covering `n_samples` (upstream's partial slices)."""
    samples_per_frame = SAMPLING_RATE // 100
    n_frames = int(np.ceil((n_samples + 1) / samples_per_frame))
    step = int(np.round((SAMPLING_RATE / RATE) / samples_per_frame))  # 77 frames
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    last = starts[-1] * samples_per_frame
    coverage = (n_samples - last) / (PARTIAL_FRAMES * samples_per_frame)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


class SpeakerEncoder(nn.Module):
    def __init__(self, hidden: int = 256, embedding: int = 256, layers: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(W, 160, 40) windows -> (W, 256) unit embeddings."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.norm(raw, dim=1, keepdim=True)

    @torch.inference_mode()
    def embed(self, wav: np.ndarray) -> torch.Tensor:
        """16 kHz mono float audio (already trimmed) -> (256,) unit embedding."""
        starts = partial_windows(len(wav))
        end = (starts[-1] + PARTIAL_FRAMES) * HOP
        if end >= len(wav):
            wav = np.pad(wav, (0, end - len(wav)))
        mel = mel_spectrogram(wav)
        windows = np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])
        device = self.linear.weight.device
        partial = self(torch.from_numpy(windows).to(device))
        mean = partial.mean(dim=0)
        return (mean / torch.linalg.norm(mean, 2)).float().cpu()


def load_speaker_encoder(path: str | os.PathLike) -> SpeakerEncoder:
    """Load `speaker_encoder.pt`: every inference key must be there and nothing unknown besides
    the two GE2E training scalars (upstream loads with strict=False, which would hide a bad file)."""
    ckpt = read_checkpoint(path)
    name = os.path.basename(os.fspath(path))
    if "model_state" not in ckpt:
        raise CheckpointError(f"{name}: no 'model_state' entry (is this speaker_encoder.pt?)")
    state = {k: v for k, v in ckpt["model_state"].items() if k not in TRAINING_ONLY_KEYS}
    with torch.device("meta"):
        model = SpeakerEncoder()
    assign_state_dict(model, state, name)
    return model.float().eval()
