"""Normalising-flow layers, run in the reverse (sampling) direction only, plus the converter's
forward pass through its residual coupling layers.

The rational-quadratic spline follows Durkan et al. 2019 ("Neural Spline Flows") with linear
tails, as VITS uses it; only the inverse is needed to sample durations.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from saladcog.tts.openvoice.attentions import Encoder
from saladcog.tts.openvoice.modules import WN, DDSConv

MIN_BIN = 1e-3  # minimum bin width, height and derivative


class Flip(nn.Module):
    """Reverses the channel order; has no parameters (a placeholder index in the checkpoint)."""

    def forward(self, x, x_mask, g=None, reverse=True):
        return torch.flip(x, [1])


class ElementwiseAffine(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x, x_mask, g=None, reverse=True):
        return (x - self.m) * torch.exp(-self.logs) * x_mask


def _inverse_rq_spline(y, widths, heights, derivatives, bound: float):
    """Inverse monotonic rational-quadratic spline on [-bound, bound], identity outside.

    y: [...]; widths, heights: [..., K]; derivatives: [..., K - 1] (inner knots).
    """
    num_bins = widths.shape[-1]
    # End derivatives fixed so that min_derivative + softplus(c) = 1: the spline joins the identity tails.
    end = math.log(math.exp(1 - MIN_BIN) - 1)
    derivatives = F.pad(derivatives, (1, 1), value=end)

    def knots(unnormalised):
        size = MIN_BIN + (1 - MIN_BIN * num_bins) * F.softmax(unnormalised, dim=-1)
        cum = F.pad(torch.cumsum(size, dim=-1), (1, 0), value=0.0)
        cum = 2 * bound * cum - bound
        cum[..., 0] = -bound
        cum[..., -1] = bound
        return cum, cum[..., 1:] - cum[..., :-1]

    cumwidths, widths = knots(widths)
    cumheights, heights = knots(heights)
    derivatives = MIN_BIN + F.softplus(derivatives)

    inside = (y >= -bound) & (y <= bound)
    yi = torch.where(inside, y, torch.zeros_like(y))  # keeps the math finite for tail entries
    # Bin search over the knot heights; the last edge is nudged up so y == bound falls in the last bin.
    edges = cumheights.clone()
    edges[..., -1] += 1e-6
    idx = (torch.sum(yi[..., None] >= edges, dim=-1) - 1)[..., None]

    def pick(t):
        return t.gather(-1, idx)[..., 0]

    in_cumwidths, in_widths = pick(cumwidths), pick(widths)
    in_cumheights, in_heights = pick(cumheights), pick(heights)
    delta = heights / widths
    in_delta = pick(delta)
    d0, d1 = pick(derivatives), derivatives[..., 1:].gather(-1, idx)[..., 0]

    s = d0 + d1 - 2 * in_delta
    dy = yi - in_cumheights
    a = dy * s + in_heights * (in_delta - d0)
    b = in_heights * d0 - dy * s
    c = -in_delta * dy
    root = (2 * c) / (-b - torch.sqrt(b.pow(2) - 4 * a * c))
    x = root * in_widths + in_cumwidths
    return torch.where(inside, x, y)


class ConvFlow(nn.Module):
    """Spline coupling layer: x1 is transformed by a spline whose knots are predicted from x0."""

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int, n_layers: int,
                 num_bins: int = 10, tail_bound: float = 5.0):
        super().__init__()
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.half_channels = in_channels // 2
        self.pre = nn.Conv1d(self.half_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers)
        self.proj = nn.Conv1d(filter_channels, self.half_channels * (num_bins * 3 - 1), 1)

    def forward(self, x, x_mask, g=None, reverse=True):
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        h = self.proj(self.convs(self.pre(x0), x_mask, g=g)) * x_mask
        b, c, t = x0.shape
        h = h.reshape(b, c, -1, t).permute(0, 1, 3, 2)  # [b, c, t, 3K - 1]
        k, scale = self.num_bins, math.sqrt(self.filter_channels)
        x1 = _inverse_rq_spline(x1, h[..., :k] / scale, h[..., k : 2 * k] / scale, h[..., 2 * k :], self.tail_bound)
        return torch.cat([x0, x1], 1) * x_mask


class TransformerCouplingLayer(nn.Module):
    """Mean-only affine coupling whose shift comes from a transformer encoder (MeloTTS flow)."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, n_layers: int, n_heads: int,
                 filter_channels: int, gin_channels: int = 0):
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, gin_channels=gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)

    def forward(self, x, x_mask, g=None, reverse=True):
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        m = self.post(self.enc(self.pre(x0) * x_mask, x_mask, g=g)) * x_mask
        x1 = (x1 - m) * x_mask
        return torch.cat([x0, x1], 1)


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling whose shift comes from a WaveNet stack (converter flow)."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int = 0):
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)

    def forward(self, x, x_mask, g=None, reverse=True):
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        m = self.post(self.enc(self.pre(x0) * x_mask, x_mask, g=g)) * x_mask
        x1 = (x1 - m) * x_mask if reverse else m + x1 * x_mask
        return torch.cat([x0, x1], 1)


class CouplingBlock(nn.Module):
    """flows.{0,2,4,6} are coupling layers, the odd indices Flips (no parameters)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.flows = nn.ModuleList()
        for layer in layers:
            self.flows.append(layer)
            self.flows.append(Flip())

    def forward(self, x, x_mask, g=None, reverse=True):
        flows = reversed(self.flows) if reverse else self.flows
        for flow in flows:
            x = flow(x, x_mask, g=g, reverse=reverse)
        return x
