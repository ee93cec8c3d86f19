"""The relative-position transformer encoder of VITS2 (MeloTTS text encoder and flow).

Self-attention only, batch of one or equal lengths: masks are kept because upstream applies
them (x * mask before every conv), and masked scores are filled with -1e4 as upstream does.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from saladcog.tts.openvoice.modules import LayerNorm


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with relative key/value embeddings for offsets -w..w, shared by heads."""

    def __init__(self, channels: int, n_heads: int, window_size: int = 4):
        super().__init__()
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.emb_rel_k = nn.Parameter(torch.zeros(1, window_size * 2 + 1, self.k_channels))
        self.emb_rel_v = nn.Parameter(torch.zeros(1, window_size * 2 + 1, self.k_channels))

    def forward(self, x, attn_mask):
        b, d, t = x.shape
        h, k = self.n_heads, self.k_channels
        w = self.window_size
        q = self.conv_q(x).view(b, h, k, t).transpose(2, 3) / math.sqrt(k)
        key = self.conv_k(x).view(b, h, k, t).transpose(2, 3)
        value = self.conv_v(x).view(b, h, k, t).transpose(2, 3)

        # offset[i, j] = j - i; only |j - i| <= w has a relative embedding (upstream pads the
        # table with zeros for the rest), so gather the [.., 2w+1] logits into [.., t, t].
        pos = torch.arange(t, device=x.device)
        offset = pos[None, :] - pos[:, None]
        near = (offset.abs() <= w).to(x.dtype)
        rel_idx = (offset.clamp(-w, w) + w).expand(b, h, t, t)
        rel_logits = torch.matmul(q, self.emb_rel_k.transpose(-2, -1).unsqueeze(0))  # [b, h, t, 2w+1]
        scores = torch.matmul(q, key.transpose(-2, -1)) + rel_logits.gather(-1, rel_idx) * near
        scores = scores.masked_fill(attn_mask == 0, -1e4)
        p_attn = F.softmax(scores, dim=-1)

        out = torch.matmul(p_attn, value)
        # The weight on relative position r (offset r - w) for query i is p_attn[i, i + r - w].
        col = pos[:, None] + torch.arange(-w, w + 1, device=x.device)[None, :]  # [t, 2w+1]
        inside = ((col >= 0) & (col < t)).to(x.dtype)
        rel_weights = p_attn.gather(-1, col.clamp(0, t - 1).expand(b, h, t, 2 * w + 1)) * inside
        out = out + torch.matmul(rel_weights, self.emb_rel_v.unsqueeze(0))
        return self.conv_o(out.transpose(2, 3).reshape(b, d, t))


class FFN(nn.Module):
    """conv -> relu -> conv with 'same' padding (left (k-1)//2, right k//2), masked before each conv."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x, x_mask):
        x = torch.relu(self.conv_1(F.pad(x * x_mask, self.pad)))
        return self.conv_2(F.pad(x * x_mask, self.pad)) * x_mask


class Encoder(nn.Module):
    """Post-norm transformer; the speaker embedding is added before layer `cond_layer_idx` (2)."""

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int, gin_channels: int = 0, cond_layer_idx: int = 2):
        super().__init__()
        self.n_layers = n_layers
        self.cond_layer_idx = cond_layer_idx if gin_channels else n_layers
        if gin_channels:
            self.spk_emb_linear = nn.Linear(gin_channels, hidden_channels)
        self.attn_layers = nn.ModuleList(MultiHeadAttention(hidden_channels, n_heads) for _ in range(n_layers))
        self.norm_layers_1 = nn.ModuleList(LayerNorm(hidden_channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(FFN(hidden_channels, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(LayerNorm(hidden_channels) for _ in range(n_layers))

    def forward(self, x, x_mask, g=None):
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for i in range(self.n_layers):
            if i == self.cond_layer_idx and g is not None:
                x = (x + self.spk_emb_linear(g.transpose(1, 2)).transpose(1, 2)) * x_mask
            x = self.norm_layers_1[i](x + self.attn_layers[i](x, attn_mask))
            x = self.norm_layers_2[i](x + self.ffn_layers[i](x, x_mask))
        return x * x_mask
