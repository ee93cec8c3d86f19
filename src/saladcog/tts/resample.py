"""Band-limited resampling by a rational factor, as upstream's hand-off to the converter does it.

Upstream re-reads MeloTTS's 44.1 kHz output with librosa 0.9 (`load(sr=22050)`), which runs
resampy's "kaiser_best" filter; resampy 0.4 (what that librosa installs today) defines it as a
Kaiser-windowed sinc with 50 zero crossings, roll-off 0.9173 and Kaiser beta 12.98. Each output
sample is the sum of the input samples within the filter's wings, weighted by the filter at their
distance (scaled by the rate ratio when downsampling); resampy reads the filter from a table of
2**13 points per zero crossing, and its wings end a ratio's step before the table does. Here the
filter is evaluated exactly at the same distances (for 2:1 those are table points, so the weights
are the same) and applied as a polyphase conv1d in float64. resampy yields floor(n * new / orig)
samples and librosa pads with zeros to ceil(n * new / orig): so does `resample`.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

ZEROS, ROLLOFF, BETA = 50, 0.9173473712608761, 12.984585247040416
TABLE_POINTS = 2**13  # resampy's filter table resolution, which decides where its wings end


def kaiser_sinc(u: torch.Tensor) -> torch.Tensor:
    """The filter at `u` zero crossings of the unscaled sinc (|u| <= ZEROS)."""
    u = u.abs()
    window = torch.special.i0(BETA * torch.sqrt((1 - (u / ZEROS) ** 2).clamp(min=0)))
    return ROLLOFF * torch.sinc(ROLLOFF * u) * window / torch.special.i0(torch.tensor(BETA, dtype=u.dtype))


def _wing(start: float, step: int) -> torch.Tensor:
    """Filter positions of one wing whose first tap lies `start` (in zero crossings) from the output
    sample; the taps follow `step` table points apart, as resampy walks its table."""
    table_end = ZEROS * TABLE_POINTS + 1
    taps = (table_end - int(start * TABLE_POINTS)) // step
    return start + torch.arange(taps, dtype=torch.float64) * step / TABLE_POINTS


def _kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """[new, orig + 2 * width] weights: row j gives output phase j from a window of the input."""
    scale = min(1.0, new / orig)
    step = int(scale * TABLE_POINTS)
    rows = []
    for phase in range(new):
        base, rem = divmod(phase * orig, new)  # this phase sits rem/new after input sample `base`
        left = _wing(scale * rem / new, step)  # inputs base, base - 1, ...
        right = _wing(scale - scale * rem / new, step)  # inputs base + 1, base + 2, ...
        rows.append((base, kaiser_sinc(left) * scale, kaiser_sinc(right) * scale))
    width = max(max(len(left), len(right)) for _, left, right in rows)
    kernel = torch.zeros(new, orig + 2 * width, dtype=torch.float64)
    for phase, (base, left, right) in enumerate(rows):
        centre = width + base
        kernel[phase, centre - len(left) + 1 : centre + 1] = left.flip(0)
        kernel[phase, centre + 1 : centre + 1 + len(right)] = right
    return kernel, width


def resample(x: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Mono float tensor [samples] from orig_sr to new_sr; length ceil(len * new / orig)."""
    if orig_sr == new_sr:
        return x
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    kernel, width = _kernel(orig, new)
    n = x.numel()
    y = F.pad(x.reshape(1, 1, -1).double(), (width, width + orig))
    y = F.conv1d(y, kernel[:, None, :], stride=orig)  # [1, new, frames]
    computed = y[0].T.reshape(-1)[: new * n // orig]
    return F.pad(computed, (0, math.ceil(new * n / orig) - computed.numel())).to(x.dtype)
