"""MetaVoice-1B engine speed, random weights (no checkpoint needed).

    python bench/metavoice.py [--layers 2] [--tokens 128] [--device cpu]

1. First stage at the real width (2048, 16 heads, vocabulary 2562, block 2048) and reduced depth:
   tokens/s with the KV cache and with full recomputation, same prompt, same draws, one run.
2. End to end (first stage as above, real-size second stage and EnCodec 24 kHz, random): words/s
   and real-time factor. Random weights rarely draw end-of-audio, so each piece runs to the
   first stage's token limit: this is the slowest case per piece.
"""

from __future__ import annotations

import argparse
import time

import torch

from saladcog.tts.metavoice.engine import MetaVoice
from saladcog.tts.metavoice.generate import SamplingParams, generate
from saladcog.tts.metavoice.gpt import GPT, GPTConfig
from saladcog.tts.metavoice.speaker_encoder import SpeakerEncoder
from tests import metavoice_tiny as tiny


def first_stage(layers: int, device: str, dtype: torch.dtype) -> GPT:
    args = tiny.first_stage_args(n_layer=layers, n_head=16, n_embd=2048, block_size=2048)
    args["swiglu_multiple_of"] = 256
    args["vocab_sizes"] = [2562]
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args), speaker_emb_dim=256)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.to(device, dtype).eval()


def tokens_per_second(model, prompt, spk, n, use_cache) -> float:
    gen = torch.Generator(device=spk.device).manual_seed(0)
    started = time.perf_counter()
    out = generate(model, prompt, spk, SamplingParams(), gen, max_new_tokens=n, use_cache=use_cache,
                   end_token=-1)
    if spk.device.type == "cuda":
        torch.cuda.synchronize()
    return len(out) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-end-to-end", action="store_true")
    a = parser.parse_args()
    dtype = torch.float32 if a.device == "cpu" else torch.bfloat16
    torch.set_grad_enabled(False)
    model = first_stage(a.layers, a.device, dtype)
    spk = torch.nn.functional.normalize(torch.randn(1, 256), dim=-1).to(a.device)
    prompt = [2049 + (i * 37) % 512 for i in range(40)] + [2561]  # 41 text ids, like ~100 characters
    tokens_per_second(model, prompt, spk, 8, True)  # warm-up
    cached = tokens_per_second(model, prompt, spk, a.tokens, True)
    plain = tokens_per_second(model, prompt, spk, a.tokens, False)
    print(f"first stage, width 2048, {a.layers} of 24 layers, {a.device} {dtype}, prompt 41, {a.tokens} tokens")
    print(f"  KV cache:          {cached:8.1f} tokens/s")
    print(f"  full recompute:    {plain:8.1f} tokens/s")
    print(f"  cache speed-up:    {cached / plain:8.2f}x")
    if a.skip_end_to_end:
        return
    from transformers import EncodecConfig, EncodecModel

    second = GPT(GPTConfig(**tiny.second_stage_args(n_layer=6, n_head=6, n_embd=384)), 256)
    engine = MetaVoice(
        model, {"speaker_cond": True, "tokenizer": tiny.tokenizer_meta(2049)},
        second, {"tokenizer": tiny.tokenizer_meta(1025)}, SpeakerEncoder(),
        EncodecModel(EncodecConfig()), device=a.device, dtype=dtype,
    )
    text = "The family of Dashwood had long been settled in Sussex. Their estate was large."
    started = time.perf_counter()
    wav = engine.synthesize(text, spk[0].cpu(), seed=0)
    seconds = time.perf_counter() - started
    words = len(text.split())
    print(f"end to end ({words} words, 1 piece): {seconds:.1f} s for {len(wav) / 24000:.1f} s of audio: "
          f"{words / seconds:.2f} words/s, real-time factor {seconds / (len(wav) / 24000):.2f}")


if __name__ == "__main__":
    main()
