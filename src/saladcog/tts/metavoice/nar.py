"""Second stage: codebooks 1-2 (+ text) -> all eight EnCodec codebooks, every frame at once.

A small non-causal transformer (upstream `inference.py` `non_causal_sample`) reads two input
hierarchies padded to exactly `block_size` positions (pads take part in attention, as upstream),
and six heads predict codebooks 3-8 with top-k 200 sampling, one multinomial draw per head in
head order. Codes are then filtered and aligned as upstream's `TiltedEncodec` adapter does.
"""

from __future__ import annotations

import torch

from .gpt import GPT

PAD = 1024  # second-stage pad, and the value the heads emit at text and pad positions
N_CODEBOOKS = 8


def build_input(text_ids: list[int], c1: list[int], c2: list[int], block: int) -> torch.Tensor:
    """(1, 2, block): [text, c1, pad] over [pad * len(text), c2, pad], right-padded or cut."""
    h0 = text_ids + c1 + [PAD]
    h1 = [PAD] * len(text_ids) + c2 + [PAD]
    rows = [(h + [PAD] * (block - len(h)))[:block] for h in (h0, h1)]
    return torch.tensor(rows, dtype=torch.long).unsqueeze(0)


@torch.inference_mode()
def sample_codes(
    model: GPT,
    text_ids: list[int],
    c1: list[int],
    c2: list[int],
    speaker_emb: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = 200,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the (8, F) EnCodec codes for one utterance."""
    device = model.transformer.wpe.weight.device
    x = build_input(text_ids, c1, c2, model.config.block_size).to(device)
    speaker_term = 0.0
    if hasattr(model, "speaker_cond_pos"):
        speaker_term = model.speaker_cond_pos(speaker_emb.to(device=device, dtype=torch.float32)).view(1, 1, -1)
    preds = []
    for logits in model(x, speaker_term):
        logits = logits / temperature
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)[0]  # (T, V)
        preds.append(torch.multinomial(probs, 1, generator=generator)[:, 0])
    rows = [x[0, 0], x[0, 1], *preds]
    # Row 0 holds text (> PAD) and pads; every row keeps only codes, then all are cut alike.
    kept = [r[r < PAD] for r in rows]
    n = min(len(r) for r in kept)
    return torch.stack([r[:n] for r in kept]).cpu()
