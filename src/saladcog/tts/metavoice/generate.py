"""First stage: text tokens -> the first two EnCodec codebooks, one token at a time.

Follows upstream's fast path (`fam/llm/fast_inference_utils.py`) step for step so that the same
weights, text, speaker embedding and random draws give the same tokens:

- classifier-free guidance as a batch of two identical rows, the speaker term added to row 0
  only; logits = s * cond + (1 - s) * uncond;
- temperature, then top-p by ascending sort (tokens whose cumulative probability is <= 1 - p are
  removed, the most likely always stays), then a multinomial draw done as argmax(p / E) with
  E ~ Exp(1) drawn for every vocabulary entry: one `exponential_` call per token;
- stop after sampling the end-of-audio token or when the sequence reaches `block_size`.

The scalars (guidance, temperature, top-p) are tensors of the model's dtype, as upstream makes
them: in bf16 top-p 0.95 is 0.94921875, and matching that matters for token parity.
"""

from __future__ import annotations

import dataclasses

import torch

from .gpt import GPT

END_OF_AUDIO = 2048  # first-stage vocabulary: 0-1023 codebook 1, 1024-2047 codebook 2, 2048 end
CODEBOOK_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    guidance: float = 3.0
    temperature: float = 1.0
    top_p: float = 0.95


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Set to -inf the tokens outside the nucleus of a 1-D logits vector."""
    sorted_logits, sorted_idx = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[-1:] = False  # the most likely token always stays
    remove = remove.scatter(0, sorted_idx, remove)
    return logits.masked_fill(remove, float("-inf"))


def sample_next(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> torch.Tensor:
    """logits: (2, 1, V) for the conditioned and unconditioned rows -> one token id (0-d)."""
    logits = logits[:, -1]
    s = torch.tensor(params.guidance, dtype=logits.dtype, device=logits.device)
    t = torch.tensor(params.temperature, dtype=logits.dtype, device=logits.device)
    p = torch.tensor(params.top_p, dtype=logits.dtype, device=logits.device)
    cond, uncond = logits[0], logits[1]
    guided = s * cond + (1 - s) * uncond
    guided = guided / torch.max(t, 1e-5 * torch.ones_like(t))
    probs = torch.softmax(top_p_filter(guided, p), dim=-1)
    noise = torch.empty_like(probs).exponential_(1, generator=generator)
    return torch.argmax(probs / noise, dim=-1)


@torch.inference_mode()
def generate(
    model: GPT,
    prompt: list[int],
    speaker_emb: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    max_new_tokens: int | None = None,
    use_cache: bool = True,
    end_token: int = END_OF_AUDIO,
) -> list[int]:
    """Sample the audio tokens that follow `prompt` (text ids); includes the end token if drawn.

    speaker_emb: (1, D) unit speaker embedding. `max_new_tokens` defaults to what fits in
    block_size, as upstream's fast path. `use_cache=False` recomputes the whole sequence at
    every step (for the benchmark and as a check of the cache).
    """
    block = model.config.block_size
    T = len(prompt)
    limit = block - T if max_new_tokens is None else min(max_new_tokens, block - T)
    if limit <= 0:
        raise ValueError(f"the text is {T} tokens long; the first stage holds at most {block - 1}")
    device = model.transformer.wpe.weight.device
    dtype = model.transformer.wpe.weight.dtype
    # Row 0 carries the speaker, row 1 does not: one batched forward gives both CFG branches.
    spk = model.speaker_cond_pos(speaker_emb.to(device=device, dtype=dtype))  # (1, C)
    cond_mask = torch.tensor([[[1.0]], [[0.0]]], device=device, dtype=dtype)
    speaker_term = spk * cond_mask  # (2, 1, C)

    seq = torch.tensor(prompt, dtype=torch.long, device=device).view(1, 1, -1).repeat(2, 1, 1)
    out: list[int] = []
    if use_cache:
        model.setup_cache(batch=2, max_len=T + limit)
    try:
        logits = model(seq, speaker_term, start=0, last_only=True)[0]
        token = sample_next(logits, params, generator)
        out.append(int(token))
        while len(out) < limit and out[-1] != end_token:
            step = token.view(1, 1, 1).repeat(2, 1, 1)
            if use_cache:
                logits = model(step, speaker_term, start=T + len(out) - 1, last_only=True)[0]
            else:
                seq = torch.cat([seq, step], dim=2)
                logits = model(seq, speaker_term, start=0, last_only=True)[0]
            token = sample_next(logits, params, generator)
            out.append(int(token))
    finally:
        if use_cache:
            model.drop_cache()
    return out


def unflatten(tokens: list[int]) -> tuple[list[int], list[int]]:
    """Interleaved first-stage tokens -> (codebook 1, codebook 2), as upstream's adapter does.

    Ids below 1024 are codebook 1, 1024-2047 codebook 2 (minus 1024); the end token and text ids
    are dropped; when the two lists differ in length both are cut to the shorter.
    """
    c1 = [t for t in tokens if t < CODEBOOK_SIZE]
    c2 = [t - CODEBOOK_SIZE for t in tokens if CODEBOOK_SIZE <= t < 2 * CODEBOOK_SIZE]
    n = min(len(c1), len(c2))
    return c1[:n], c2[:n]
