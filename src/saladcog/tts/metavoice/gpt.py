"""The MetaVoice-1B transformer, shared by both stages, and its strict checkpoint loader.

Both `first_stage.pt` (causal, RMSNorm, SwiGLU, 24 x 2048) and `second_stage.pt` (non-causal,
LayerNorm, GELU, 6 x 384) are nanoGPT-style models saved by upstream's `fam.llm.model.GPT`; the
modules here carry exactly the checkpoint's names so that its state dict loads unchanged.
The first stage also keeps a key/value cache, so each new token costs one position, not the
whole sequence.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import CheckpointError, check_keys, read_file


@dataclasses.dataclass
class GPTConfig:
    """The checkpoint's `model_args`, field for field (upstream `fam.llm.model.GPTConfig`)."""

    block_size: int = 2048
    vocab_sizes: list[int] = dataclasses.field(default_factory=lambda: [2562])
    target_vocab_sizes: list[int] | None = None  # set only for the non-causal second stage
    n_layer: int = 24
    n_head: int = 16
    n_embd: int = 2048
    dropout: float = 0.0
    spkemb_dropout: float = 0.0
    bias: bool = False
    causal: bool = True
    spk_emb_on_text: bool = True
    norm_type: str = "rmsnorm"
    rmsnorm_eps: float | None = 1e-5
    nonlinearity_type: str = "swiglu"
    swiglu_multiple_of: int | None = 256
    attn_kernel_type: str = "torch_attn"
    kv_cache_enabled: bool = False

    @classmethod
    def from_model_args(cls, model_args: dict[str, Any]) -> "GPTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(model_args) - known)
        if unknown:
            raise CheckpointError(f"unknown model_args in checkpoint: {', '.join(unknown)}")
        config = cls(**model_args)
        if config.n_embd % config.n_head:
            raise CheckpointError(f"n_embd {config.n_embd} is not a multiple of n_head {config.n_head}")
        if config.norm_type not in ("rmsnorm", "layernorm"):
            raise CheckpointError(f"unknown norm_type {config.norm_type!r}")
        if config.nonlinearity_type not in ("swiglu", "gelu"):
            raise CheckpointError(f"unknown nonlinearity_type {config.nonlinearity_type!r}")
        if config.norm_type == "rmsnorm" and config.rmsnorm_eps is None:
            raise CheckpointError("norm_type rmsnorm needs rmsnorm_eps")
        if config.nonlinearity_type == "swiglu" and config.swiglu_multiple_of is None:
            raise CheckpointError("nonlinearity_type swiglu needs swiglu_multiple_of")
        if (config.target_vocab_sizes is None) != config.causal:
            raise CheckpointError("target_vocab_sizes is set exactly when the model is non-causal")
        return config


class LayerNorm(nn.Module):
    """LayerNorm whose bias is optional (the checkpoints have none)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class RMSNorm(nn.Module):
    def __init__(self, ndim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ndim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 as upstream's fast path does: bf16 mean-of-squares loses too much.
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def _norm(config: GPTConfig) -> nn.Module:
    if config.norm_type == "rmsnorm":
        return RMSNorm(config.n_embd, config.rmsnorm_eps)
    return LayerNorm(config.n_embd, config.bias)


class KVCache(nn.Module):
    """Keys and values of every position seen so far, for a fixed batch and maximum length."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, n_head, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor):
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.causal = config.causal
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.kv_cache is not None:
            k, v = self.kv_cache.update(start, k, v)
        # With a cache, a single new query may see every cached position: no mask needed.
        # A block of T queries starting at 0 (the prefill) needs the causal mask.
        if self.causal and T > 1:
            if start != 0:
                raise ValueError("a block of several positions can only be fed at position 0")
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias: bool):
        super().__init__()
        self.w1 = nn.Linear(in_dim, out_dim, bias=bias)
        self.w3 = nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.w1(x)) * self.w3(x)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = 4 * config.n_embd
        self.swiglu_mode = config.nonlinearity_type == "swiglu"
        if self.swiglu_mode:
            # Upstream's sizing: 2/3 of 4*C, rounded up to a multiple (2048 -> 5632).
            hidden = config.swiglu_multiple_of * math.ceil(int(2 * hidden / 3) / config.swiglu_multiple_of)
            self.swiglu = SwiGLU(config.n_embd, hidden, config.bias)
        else:
            self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu_mode:
            return self.c_proj(self.swiglu(x))
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU, as nn.GELU() upstream


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = _norm(config)
        self.ln_2 = _norm(config)
        self.attn = SelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), start)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token embeddings (one table per input hierarchy) + learned positions + speaker term."""

    def __init__(self, config: GPTConfig, speaker_emb_dim: int | None):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wtes=nn.ModuleList(nn.Embedding(v, config.n_embd) for v in config.vocab_sizes),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=_norm(config),
            )
        )
        if speaker_emb_dim is not None:
            self.speaker_cond_pos = nn.Linear(speaker_emb_dim, config.n_embd, bias=False)
        heads = config.target_vocab_sizes or config.vocab_sizes
        self.lm_heads = nn.ModuleList(nn.Linear(config.n_embd, v, bias=False) for v in heads)
        if config.target_vocab_sizes is None:
            # The causal model predicts its own input vocabulary with the embedding matrix.
            for head, wte in zip(self.lm_heads, self.transformer.wtes):
                head.weight = wte.weight

    def setup_cache(self, batch: int, max_len: int) -> None:
        """Give every layer a key/value cache (first stage only); `None` removes them."""
        p = self.transformer.wpe.weight
        hd = self.config.n_embd // self.config.n_head
        for block in self.transformer.h:
            block.attn.kv_cache = KVCache(batch, self.config.n_head, max_len, hd, p.dtype, p.device)

    def drop_cache(self) -> None:
        for block in self.transformer.h:
            block.attn.kv_cache = None

    def forward(
        self,
        idx: torch.Tensor,
        speaker_term: torch.Tensor | float = 0.0,
        start: int = 0,
        last_only: bool = False,
    ) -> list[torch.Tensor]:
        """idx: (B, hierarchies, T) token ids at positions start..start+T-1.

        `speaker_term` is added at every position (spk_emb_on_text); the caller builds it from
        `speaker_cond_pos` so that classifier-free guidance can zero it for the unconditioned row.
        Returns one logits tensor per head; `last_only` keeps the last position (generation).
        """
        B, H, T = idx.shape
        if H != len(self.transformer.wtes):
            raise ValueError(f"input has {H} hierarchies, the model {len(self.transformer.wtes)}")
        if start + T > self.config.block_size:
            raise ValueError(f"position {start + T} is past block_size {self.config.block_size}")
        x = self.transformer.wtes[0](idx[:, 0])
        for i in range(1, H):
            x = x + self.transformer.wtes[i](idx[:, i])
        pos = torch.arange(start, start + T, device=idx.device)
        x = x + self.transformer.wpe(pos) + speaker_term
        for block in self.transformer.h:
            x = block(x, start)
        x = self.transformer.ln_f(x)
        if last_only:
            x = x[:, -1:]
        return [head(x) for head in self.lm_heads]


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Unpickle one of the official `.pt` files (plain dicts of tensors and Python values)."""
    # weights_only=False: the files hold tiktoken byte tables and config dicts besides tensors.
    # They come from the pinned Hugging Face snapshot baked into the image.
    return read_file(path, weights_only=False, mmap=True)


def assign_state_dict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Make `state` the module's tensors; any missing, unexpected or mis-shaped key is an error naming it."""
    check_keys({k: v.shape for k, v in module.state_dict().items()}, state, source)
    # assign=True: the module was built on the meta device, so the checkpoint's (memory-mapped)
    # tensors become the parameters without a random initialisation or a second copy.
    module.load_state_dict(state, strict=True, assign=True)


def load_gpt(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> tuple[GPT, dict[str, Any]]:
    """Build a stage from its checkpoint's own `model_args` and load its weights strictly.

    Returns the model (CPU, eval, in `dtype`) and the checkpoint's `meta` (tokenizer, speaker flags).
    """
    ckpt = read_checkpoint(path)
    name = os.path.basename(os.fspath(path))
    for key in ("model", "model_args", "meta"):
        if key not in ckpt:
            raise CheckpointError(f"{name}: no {key!r} entry (is this a MetaVoice stage checkpoint?)")
    config = GPTConfig.from_model_args(ckpt["model_args"])
    meta = ckpt["meta"]
    speaker_dim = meta["speaker_emb_size"] if meta.get("speaker_cond") else None
    # torch.compile'd training runs saved their keys with this prefix.
    prefix = "_orig_mod."
    state = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in ckpt["model"].items()}
    with torch.device("meta"):
        model = GPT(config, speaker_dim)
    assign_state_dict(model, state, name)
    return model.to(dtype).eval(), meta
