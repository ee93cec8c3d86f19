"""Tiny random Whisper models with the shapes of large-v3 and distil-large-v3, in CTranslate2 format.

Real large-v3 weights cannot be downloaded here, so the tests build models that exercise the same
code paths: 128 mel bins (large-v3's feature extractor, not the 80 of earlier models), the
large-v3 vocabulary layout (51866 ids: 100 language tokens, `yue` last, which shifts every later
special token by one), multilingual, 32 encoder layers shrunk to 2, and 2 decoder layers — the
decoder depth distil-large-v3 really has. Weights are random: the output is gibberish, but
language detection, translate, word timestamps and clip handling all run for real.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from ctranslate2.converters import TransformersConverter
from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration


MULTILINGUAL_TOKENIZER = Path(__file__).parent / "data" / "whisper" / "multilingual-tokenizer.json.gz"
N_TEXT_TOKENS = 50257  # byte-level BPE ids 0..50256, as in every multilingual Whisper
N_TIMESTAMPS = 1501  # <|0.00|> … <|30.00|>


def _multilingual_source() -> dict:
    return json.loads(gzip.decompress(MULTILINGUAL_TOKENIZER.read_bytes()))


def languages(source: dict) -> list[str]:
    """large-v3's language order: the 99 of earlier models, in their order, then `yue`."""
    names = [t["content"] for t in sorted(source["added_tokens"], key=lambda t: t["id"])]
    first, end = names.index("<|startoftranscript|>") + 1, names.index("<|translate|>")
    return [name[2:-2] for name in names[first:end]] + ["yue"]


LANGUAGES = languages(_multilingual_source())


def special_tokens(codes: list[str]) -> list[str]:
    return (
        ["<|endoftext|>", "<|startoftranscript|>"]
        + [f"<|{code}|>" for code in codes]
        + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
        + [f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMPS)]
    )


def write_large_v3_tokenizer(path: Path) -> dict[str, int]:
    """tokenizer.json with large-v3's id layout; returns the special tokens and their ids."""
    source = _multilingual_source()
    vocab = {token: i for token, i in source["model"]["vocab"].items() if i < N_TEXT_TOKENS}
    specials = {token: N_TEXT_TOKENS + i for i, token in enumerate(special_tokens(LANGUAGES))}
    template = source["added_tokens"][0]
    source["model"]["vocab"] = {**vocab, **specials}
    source["added_tokens"] = [{**template, "id": i, "content": t} for t, i in specials.items()]
    path.write_text(json.dumps(source))
    return specials


def make_tiny_whisper(target: Path, decoder_layers: int = 2, seed: int = 0) -> Path:
    """Write a CTranslate2 model directory faster-whisper loads like large-v3 / distil-large-v3."""
    target = Path(target)
    hf_dir = target.parent / f"{target.name}-hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    specials = write_large_v3_tokenizer(hf_dir / "tokenizer.json")
    vocab_size = N_TEXT_TOKENS + len(specials)
    assert vocab_size == 51866, vocab_size  # large-v3's
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=128,
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_layers=decoder_layers,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=specials["<|endoftext|>"],
        bos_token_id=specials["<|endoftext|>"],
        eos_token_id=specials["<|endoftext|>"],
        decoder_start_token_id=specials["<|startoftranscript|>"],
        begin_suppress_tokens=[220, specials["<|endoftext|>"]],
        suppress_tokens=[],
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    generation = model.generation_config
    generation.alignment_heads = [[decoder_layers - 1, 0], [decoder_layers - 1, 1]]
    generation.suppress_tokens = []
    generation.begin_suppress_tokens = [220, specials["<|endoftext|>"]]
    model.save_pretrained(hf_dir)
    PreTrainedTokenizerFast(tokenizer_file=str(hf_dir / "tokenizer.json")).save_pretrained(hf_dir)
    (hf_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_extractor_type": "WhisperFeatureExtractor",
                "feature_size": 128,
                "sampling_rate": 16000,
                "hop_length": 160,
                "chunk_length": 30,
                "n_fft": 400,
                "n_samples": 480000,
                "nb_max_frames": 3000,
                "padding_side": "right",
                "padding_value": 0.0,
                "return_attention_mask": False,
            }
        )
    )
    TransformersConverter(
        str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
    ).convert(str(target), force=True)
    # The converter takes the language ids from `generation_config.lang_to_id`, which
    # transformers 5 no longer keeps; write them as the converted large-v3 config has them.
    config_path = target / "config.json"
    ct2_config = json.loads(config_path.read_text())
    ct2_config["lang_ids"] = [specials[f"<|{code}|>"] for code in LANGUAGES]
    config_path.write_text(json.dumps(ct2_config))
    return target
