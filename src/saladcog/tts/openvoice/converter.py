"""OpenVoice v2 ToneColorConverter, inference only.

Loads `converter/config.json` + `converter/checkpoint.pth` of myshell-ai/OpenVoiceV2 strictly.
`extract_se` turns reference audio into a 256-d tone colour embedding; `convert` re-voices audio
from a source embedding to a target one (tau scales the posterior noise, default 0.3 as upstream).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from saladcog.tts.checkpoint import CheckpointError
from saladcog.tts.openvoice.checkpoint import load_weight_normed, read_checkpoint
from saladcog.tts.openvoice.flows import CouplingBlock, ResidualCouplingLayer
from saladcog.tts.openvoice.modules import Generator, PosteriorEncoder


@dataclasses.dataclass(frozen=True)
class ConverterConfig:
    sampling_rate: int = 22050
    filter_length: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    inter_channels: int = 192
    hidden_channels: int = 192
    resblock_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = dataclasses.field(default_factory=lambda: [[1, 3, 5]] * 3)
    upsample_rates: list[int] = dataclasses.field(default_factory=lambda: [8, 8, 2, 2])
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [16, 16, 4, 4])
    gin_channels: int = 256
    zero_g: bool = True

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "ConverterConfig":
        raw = json.loads(Path(path).read_text())
        data, model = raw["data"], raw["model"]
        if model.get("resblock", "1") != "1" or data.get("n_speakers", 0) != 0:
            raise CheckpointError(f"{path}: not a v2 tone colour converter config (resblock '1', n_speakers 0)")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in model.items() if k in fields}
        kwargs.update({k: data[k] for k in ("sampling_rate", "filter_length", "hop_length", "win_length") if k in data})
        return cls(**kwargs)


def spectrogram(y: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """Linear magnitude spectrogram [B, n_fft/2+1, frames] of y [B, samples], as upstream's center=False STFT."""
    pad = (n_fft - hop) // 2
    y = F.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(y, n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win, device=y.device),
                      center=False, normalized=False, onesided=True, return_complex=True)
    return torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-6)


class ReferenceEncoder(nn.Module):
    """Spectrogram [B, T, F] -> tone colour embedding [B, gin]: 6 strided 2-D convs, a GRU, a projection."""

    def __init__(self, spec_channels: int, gin_channels: int):
        super().__init__()
        filters = [1, 32, 32, 64, 64, 128, 128]
        self.spec_channels = spec_channels
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(filters[i], filters[i + 1], kernel_size=3, stride=2, padding=1)) for i in range(6)
        )
        freq = spec_channels
        for _ in range(6):
            freq = (freq - 3 + 2) // 2 + 1
        self.gru = nn.GRU(input_size=filters[-1] * freq, hidden_size=128, batch_first=True)
        self.proj = nn.Linear(128, gin_channels)
        self.layernorm = nn.LayerNorm(spec_channels)

    def forward(self, spec):
        out = self.layernorm(spec.reshape(spec.size(0), 1, -1, self.spec_channels))
        for conv in self.convs:
            out = F.relu(conv(out))
        out = out.transpose(1, 2)
        out = out.reshape(out.size(0), out.size(1), -1)
        _, hidden = self.gru(out)
        return self.proj(hidden.squeeze(0))


class ToneColorConverter(nn.Module):
    def __init__(self, cfg: ConverterConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg
        spec_channels = c.filter_length // 2 + 1
        self.dec = Generator(c.inter_channels, c.resblock_kernel_sizes, c.resblock_dilation_sizes, c.upsample_rates,
                             c.upsample_initial_channel, c.upsample_kernel_sizes, gin_channels=c.gin_channels)
        self.enc_q = PosteriorEncoder(spec_channels, c.inter_channels, c.hidden_channels, 5, 1, 16, gin_channels=c.gin_channels)
        self.flow = CouplingBlock([
            ResidualCouplingLayer(c.inter_channels, c.hidden_channels, 5, 1, 4, gin_channels=c.gin_channels)
            for _ in range(4)
        ])
        self.ref_enc = ReferenceEncoder(spec_channels, c.gin_channels)

    @property
    def sampling_rate(self) -> int:
        return self.cfg.sampling_rate

    @property
    def hop_length(self) -> int:
        return math.prod(self.cfg.upsample_rates)

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if audio.numel() <= (c.filter_length - c.hop_length) // 2:
            raise ValueError(f"audio too short for the converter: {audio.numel()} samples at {c.sampling_rate} Hz")
        return spectrogram(audio.reshape(1, -1), c.filter_length, c.hop_length, c.win_length)

    @torch.inference_mode()
    def extract_se(self, segments: list[torch.Tensor]) -> torch.Tensor:
        """Mean embedding [1, gin, 1] over reference segments (mono float at `sampling_rate`)."""
        ses = [self.ref_enc(self.spectrogram(seg).transpose(1, 2)).unsqueeze(-1) for seg in segments]
        return torch.stack(ses).mean(0)

    @torch.inference_mode()
    def convert(self, audio: torch.Tensor, src_se: torch.Tensor, tgt_se: torch.Tensor, *, tau: float = 0.3,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Re-voice mono audio at `sampling_rate` from src_se to tgt_se; returns frames * hop samples."""
        spec = self.spectrogram(audio)
        mask = torch.ones_like(spec[:, :1])
        # zero_g: the posterior encoder and decoder are conditioned on zeros (their cond biases still apply).
        g_src = torch.zeros_like(src_se) if self.cfg.zero_g else src_se
        g_tgt = torch.zeros_like(tgt_se) if self.cfg.zero_g else tgt_se
        if noise is None:
            noise = torch.randn((1, self.cfg.inter_channels, spec.size(-1)), generator=generator, device=spec.device)
        z = self.enc_q(spec, mask, g=g_src, tau=tau, noise=noise)
        z_p = self.flow(z, mask, g=src_se, reverse=False)
        z_hat = self.flow(z_p, mask, g=tgt_se, reverse=True)
        return self.dec(z_hat * mask, g=g_tgt)[0, 0]


def load_converter(config_path: str | os.PathLike, checkpoint_path: str | os.PathLike) -> ToneColorConverter:
    model = ToneColorConverter(ConverterConfig.from_json(config_path))
    load_weight_normed(model, read_checkpoint(checkpoint_path), str(checkpoint_path))
    return model.eval()


def load_se(path: str | os.PathLike, gin_channels: int = 256) -> torch.Tensor:
    """A base speaker embedding file (`torch.save` of a float tensor [1, gin, 1])."""
    try:
        se = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such speaker embedding file") from None
    if not isinstance(se, torch.Tensor) or tuple(se.shape) != (1, gin_channels, 1):
        raise CheckpointError(f"{path}: expected a tensor of shape (1, {gin_channels}, 1)")
    return se.float()
