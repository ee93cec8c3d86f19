"""MeloTTS synthesizer (VITS2 / Bert-VITS2 style), inference only.

Loads the published `config.json` + `checkpoint.pth` of myshell-ai/MeloTTS-English unchanged and
strictly. `SynthesizerTrn.infer` follows upstream's `infer` step by step; the two random draws
(stochastic-duration noise, then prior noise) come from a caller's `torch.Generator` in
upstream's order, or can be passed in as tensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from saladcog.tts.checkpoint import CheckpointError
from saladcog.tts.openvoice.attentions import Encoder
from saladcog.tts.openvoice.checkpoint import load_weight_normed, read_checkpoint
from saladcog.tts.openvoice.flows import ConvFlow, CouplingBlock, ElementwiseAffine, Flip, TransformerCouplingLayer
from saladcog.tts.openvoice.modules import DDSConv, Generator, LayerNorm, PosteriorEncoder


@dataclasses.dataclass(frozen=True)
class MeloConfig:
    symbols: list[str]
    spk2id: dict[str, int]
    num_tones: int = 16
    num_languages: int = 10
    sampling_rate: int = 44100
    filter_length: int = 2048
    hop_length: int = 512
    add_blank: bool = True
    n_speakers: int = 256
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    n_layers_trans_flow: int = 3
    kernel_size: int = 3
    resblock_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = dataclasses.field(default_factory=lambda: [[1, 3, 5]] * 3)
    upsample_rates: list[int] = dataclasses.field(default_factory=lambda: [8, 8, 2, 2, 2])
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [16, 16, 8, 2, 2])
    gin_channels: int = 256
    n_flow_layer: int = 4

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "MeloConfig":
        raw = json.loads(Path(path).read_text())
        data, model = raw["data"], raw["model"]
        # The published English model is the VITS2 variant; refuse configs this code does not implement.
        unsupported = {
            "resblock": model.get("resblock", "1") != "1",
            "use_transformer_flow": not model.get("use_transformer_flow", True),
            "flow_share_parameter": model.get("flow_share_parameter", False),
            "use_spk_conditioned_encoder": not model.get("use_spk_conditioned_encoder", True),
            "use_vc": model.get("use_vc", False),
            "n_speakers": data.get("n_speakers", 256) == 0,
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise CheckpointError(f"{path}: unsupported MeloTTS config setting(s): {', '.join(bad)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in model.items() if k in fields}
        kwargs.update({k: data[k] for k in ("sampling_rate", "filter_length", "hop_length", "add_blank", "n_speakers") if k in data})
        return cls(symbols=raw["symbols"], spk2id=data["spk2id"], num_tones=raw["num_tones"],
                   num_languages=raw["num_languages"], **kwargs)


class TextEncoder(nn.Module):
    def __init__(self, cfg: MeloConfig):
        super().__init__()
        h = cfg.hidden_channels
        self.out_channels = cfg.inter_channels
        self.emb = nn.Embedding(len(cfg.symbols), h)
        self.tone_emb = nn.Embedding(cfg.num_tones, h)
        self.language_emb = nn.Embedding(cfg.num_languages, h)
        self.bert_proj = nn.Conv1d(1024, h, 1)
        self.ja_bert_proj = nn.Conv1d(768, h, 1)
        self.encoder = Encoder(h, cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size, gin_channels=cfg.gin_channels)
        self.proj = nn.Conv1d(h, cfg.inter_channels * 2, 1)

    def forward(self, x, tone, language, bert, ja_bert, g):
        x = (
            self.emb(x)
            + self.tone_emb(tone)
            + self.language_emb(language)
            + self.bert_proj(bert).transpose(1, 2)
            + self.ja_bert_proj(ja_bert).transpose(1, 2)
        ) * math.sqrt(self.emb.embedding_dim)
        x = x.transpose(1, 2)
        x_mask = torch.ones_like(x[:, :1])
        x = self.encoder(x * x_mask, x_mask, g=g)
        m, logs = torch.split(self.proj(x) * x_mask, self.out_channels, dim=1)
        return x, m, logs, x_mask


class DurationPredictor(nn.Module):
    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int, gin_channels: int):
        super().__init__()
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = LayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_2 = LayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        self.cond = nn.Conv1d(gin_channels, in_channels, 1)

    def forward(self, x, x_mask, g):
        x = x + self.cond(g)
        x = self.norm_1(torch.relu(self.conv_1(x * x_mask)))
        x = self.norm_2(torch.relu(self.conv_2(x * x_mask)))
        return self.proj(x * x_mask) * x_mask


class StochasticDurationPredictor(nn.Module):
    """Only the reverse (sampling) path is run; the `post_*` modules exist for strict loading."""

    def __init__(self, channels: int, kernel_size: int, gin_channels: int, n_flows: int = 4):
        super().__init__()
        self.flows = nn.ModuleList([ElementwiseAffine(2)])
        self.post_flows = nn.ModuleList([ElementwiseAffine(2)])
        for _ in range(n_flows):
            self.flows.extend([ConvFlow(2, channels, kernel_size, n_layers=3), Flip()])
            self.post_flows.extend([ConvFlow(2, channels, kernel_size, n_layers=3), Flip()])
        self.post_pre = nn.Conv1d(1, channels, 1)
        self.post_proj = nn.Conv1d(channels, channels, 1)
        self.post_convs = DDSConv(channels, kernel_size, n_layers=3)
        self.pre = nn.Conv1d(channels, channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.convs = DDSConv(channels, kernel_size, n_layers=3)
        self.cond = nn.Conv1d(gin_channels, channels, 1)

    def forward(self, x, x_mask, g, noise):
        """noise: [B, 2, T] standard normal draws already scaled by noise_scale_w."""
        x = self.convs(self.pre(x) + self.cond(g), x_mask)
        x = self.proj(x) * x_mask
        # Reverse order, skipping the first ConvFlow (flows[1]): upstream drops it as "useless".
        flows = list(reversed(self.flows))
        flows = flows[:-2] + [flows[-1]]
        z = noise
        for flow in flows:
            z = flow(z, x_mask, g=x, reverse=True)
        return z[:, :1]


class SynthesizerTrn(nn.Module):
    def __init__(self, cfg: MeloConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg
        self.enc_p = TextEncoder(c)
        self.dec = Generator(c.inter_channels, c.resblock_kernel_sizes, c.resblock_dilation_sizes, c.upsample_rates,
                             c.upsample_initial_channel, c.upsample_kernel_sizes, gin_channels=c.gin_channels)
        # The posterior encoder is only used in training; it is built so the checkpoint loads strictly.
        self.enc_q = PosteriorEncoder(c.filter_length // 2 + 1, c.inter_channels, c.hidden_channels, 5, 1, 16,
                                      gin_channels=c.gin_channels)
        self.flow = CouplingBlock([
            TransformerCouplingLayer(c.inter_channels, c.hidden_channels, 5, c.n_layers_trans_flow, c.n_heads,
                                     c.filter_channels, gin_channels=c.gin_channels)
            for _ in range(c.n_flow_layer)
        ])
        self.sdp = StochasticDurationPredictor(c.hidden_channels, 3, c.gin_channels)
        self.dp = DurationPredictor(c.hidden_channels, 256, 3, c.gin_channels)
        self.emb_g = nn.Embedding(c.n_speakers, c.gin_channels)

    @property
    def hop_length(self) -> int:
        return math.prod(self.cfg.upsample_rates)

    @torch.inference_mode()
    def infer(self, phones, tones, languages, bert, ja_bert, speaker_id: int, *, sdp_ratio=0.2, noise_scale=0.6,
              noise_scale_w=0.8, length_scale=1.0, generator: torch.Generator | None = None,
              sdp_noise: torch.Tensor | None = None, prior_noise: torch.Tensor | None = None):
        """One piece, batch of one. phones/tones/languages: [1, T]; bert [1, 1024, T]; ja_bert [1, 768, T].

        Returns (audio [T_y * hop], durations [T]). Random draws, in upstream's order: `sdp_noise`
        [1, 2, T] then `prior_noise` [1, inter, T_y]; each is drawn from `generator` when not given.
        """
        g = self.emb_g(torch.tensor([speaker_id], device=phones.device)).unsqueeze(-1)
        x, m_p, logs_p, x_mask = self.enc_p(phones, tones, languages, bert, ja_bert, g)
        if sdp_noise is None:
            # Upstream draws this on the CPU generator whatever the device.
            sdp_noise = torch.randn(x.size(0), 2, x.size(2), generator=generator).to(x.device)
        logw = self.sdp(x, x_mask, g, sdp_noise * noise_scale_w) * sdp_ratio + self.dp(x, x_mask, g) * (1 - sdp_ratio)
        w = torch.exp(logw) * x_mask * length_scale
        durations = torch.ceil(w)[0, 0].long()
        if int(durations.sum()) > 0:
            # Expanding with the hard path is a repeat: each phone's stats fill its frames.
            m_p = torch.repeat_interleave(m_p, durations, dim=2)
            logs_p = torch.repeat_interleave(logs_p, durations, dim=2)
        else:
            # Upstream clamps the length to one frame, which its empty path leaves at zero.
            m_p = logs_p = torch.zeros_like(m_p[:, :, :1])
        if prior_noise is None:
            # Upstream's m_p is a transposed (time-major) view and randn_like keeps that layout;
            # torch fills a non-contiguous tensor with a different (serial) normal sampler than
            # a contiguous one, so reproduce the same layout to get the same draws.
            b, c, t_y = m_p.shape
            prior_noise = torch.empty((b, t_y, c), device=m_p.device).transpose(1, 2).normal_(generator=generator)
        z_p = m_p + prior_noise * torch.exp(logs_p) * noise_scale
        y_mask = torch.ones_like(z_p[:, :1])
        z = self.flow(z_p, y_mask, g=g, reverse=True)
        return self.dec(z * y_mask, g=g)[0, 0], durations


def load_melo(config_path: str | os.PathLike, checkpoint_path: str | os.PathLike) -> SynthesizerTrn:
    cfg = MeloConfig.from_json(config_path)
    model = SynthesizerTrn(cfg)
    load_weight_normed(model, read_checkpoint(checkpoint_path), str(checkpoint_path))
    return model.eval()
