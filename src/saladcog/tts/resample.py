"""Band-limited resampling by a rational factor (Kaiser-windowed sinc, polyphase via conv1d).

Upstream hands MeloTTS's 44.1 kHz output to the 22.05 kHz converter through librosa 0.9's resampy
"kaiser_best" filter; this uses that filter's parameters (64 zero crossings, roll-off 0.9475937,
Kaiser beta 14.7697) in torchaudio's formulation, so samples agree closely but not bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

ZEROS, ROLLOFF, BETA = 64, 0.9475937167399596, 14.769656459379492


def _kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    base = min(orig, new) * ROLLOFF
    width = math.ceil(ZEROS * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None, :]) * base
    t = t.clamp(-ZEROS, ZEROS)
    window = torch.special.i0(BETA * torch.sqrt(1 - (t / ZEROS) ** 2)) / torch.special.i0(torch.tensor(BETA, dtype=torch.float64))
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t)) * window * base / orig
    return kernel.float(), width


def resample(x: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Mono float tensor [samples] from orig_sr to new_sr; length ceil(len * new / orig)."""
    if orig_sr == new_sr:
        return x
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    kernel, width = _kernel(orig, new)
    n = x.numel()
    y = F.pad(x.reshape(1, 1, -1), (width, width + orig))
    y = F.conv1d(y, kernel[:, None, :], stride=orig)  # [1, new, frames]
    return y[0].T.reshape(-1)[: math.ceil(new * n / orig)]
