"""Tiny random MetaVoice checkpoints in the official file formats, for tests.

`first_stage.pt` / `second_stage.pt` are dicts with `model`, `model_args`, `config`, `meta`
(tokenizer inside), as upstream's training script saves them; `speaker_encoder.pt` holds
`model_state` with the GE2E training scalars too. Vocabulary layouts are the real ones (1024
codes per codebook, end-of-audio 2048, second-stage pad 1024); only width and depth shrink and
the BPE has 256 byte ranks plus three merges instead of 256 plus 256.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from saladcog.tts.metavoice.gpt import GPT, GPTConfig
from saladcog.tts.metavoice.speaker_encoder import SpeakerEncoder

# tiktoken's GPT-2 split pattern; the real checkpoint stores its own.
PAT_STR = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
MERGES = [b"th", b"he", b"the"]  # ranks 256, 257, 258
EOT = 256 + len(MERGES)  # 259
N_TEXT = EOT + 1  # text ids incl. end-of-text
FIRST_OFFSET = 2049
SECOND_OFFSET = 1025


def tokenizer_meta(offset: int) -> dict:
    ranks = {bytes([b]): b for b in range(256)}
    for i, m in enumerate(MERGES):
        ranks[m] = 256 + i
    return {
        "name": "tiny",
        "pat_str": PAT_STR,
        "mergeable_ranks": ranks,
        "special_tokens": {"<|endoftext|>": EOT},
        "offset": offset,
    }


def first_stage_args(n_layer=2, n_head=2, n_embd=64, block_size=2048) -> dict:
    return dict(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=False,
        vocab_sizes=[FIRST_OFFSET + N_TEXT], causal=True, norm_type="rmsnorm", rmsnorm_eps=1e-5,
        nonlinearity_type="swiglu", swiglu_multiple_of=32, spk_emb_on_text=True, dropout=0.0,
    )


def second_stage_args(n_layer=2, n_head=2, n_embd=32, block_size=1024) -> dict:
    return dict(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=False,
        vocab_sizes=[SECOND_OFFSET + N_TEXT, 1025], target_vocab_sizes=[1025] * 6, causal=False,
        norm_type="layernorm", nonlinearity_type="gelu", spk_emb_on_text=True, dropout=0.0,
    )


def _randomize(model: torch.nn.Module, std: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0.0, std)


def write_stage(path: Path, model_args: dict, offset: int, seed: int, std: float = 0.5,
                compiled_prefix: bool = False) -> Path:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**model_args), speaker_emb_dim=256)
    _randomize(model, std)
    state = model.state_dict()
    if compiled_prefix:
        state = {"_orig_mod." + k: v for k, v in state.items()}
    torch.save(
        {
            "model": state,
            "model_args": model_args,
            "config": {"causal": model_args["causal"]},
            "meta": {"speaker_cond": True, "speaker_emb_size": 256, "tokenizer": tokenizer_meta(offset)},
            "iter_num": 1,
            "best_val_loss": 0.0,
        },
        path,
    )
    return path


def write_speaker_encoder(path: Path, seed: int = 3) -> Path:
    torch.manual_seed(seed)
    model = SpeakerEncoder()
    state = dict(model.state_dict())
    state["similarity_weight"] = torch.tensor([10.0])
    state["similarity_bias"] = torch.tensor([-5.0])
    torch.save({"model_state": state, "step": 1}, path)
    return path


def tiny_encodec():
    """A random EnCodec with facebook/encodec_24khz's interface: 24 kHz, hop 320, 1024 codes."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(4)
    config = EncodecConfig(
        sampling_rate=24000, audio_channels=1, codebook_size=1024, codebook_dim=16, hidden_size=16,
        num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 5, 4, 2],
        target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], num_lstm_layers=1, normalize=False,
        chunk_length_s=None, overlap=None,
    )
    return EncodecModel(config).eval()


@dataclasses.dataclass
class TinyWeights:
    model_dir: Path

    def server_env(self) -> dict[str, str]:
        """The environment that points the MetaVoice runner at these weights."""
        return {"METAVOICE_MODEL_DIR": str(self.model_dir), "METAVOICE_ENCODEC_DIR": str(self.encodec)}

    @property
    def first(self) -> Path:
        return self.model_dir / "first_stage.pt"

    @property
    def second(self) -> Path:
        return self.model_dir / "second_stage.pt"

    @property
    def speaker(self) -> Path:
        return self.model_dir / "speaker_encoder.pt"

    @property
    def encodec(self) -> Path:
        return self.model_dir / "encodec"


def write_all(model_dir: Path, std: float = 0.5, block_size: int = 160) -> TinyWeights:
    """All three checkpoints plus `encodec/` (save_pretrained); a short first-stage block keeps
    random-weight generation (which rarely draws end-of-audio) to ~1.5 s of audio."""
    model_dir.mkdir(parents=True, exist_ok=True)
    write_stage(model_dir / "first_stage.pt", first_stage_args(block_size=block_size), FIRST_OFFSET,
                seed=1, std=std, compiled_prefix=True)
    write_stage(model_dir / "second_stage.pt", second_stage_args(), SECOND_OFFSET, seed=2, std=std)
    write_speaker_encoder(model_dir / "speaker_encoder.pt")
    tiny_encodec().save_pretrained(model_dir / "encodec")
    return TinyWeights(model_dir)
