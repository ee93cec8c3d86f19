"""MetaVoice-1B text to speech: saladcog's own inference engine over the official checkpoints.

Pipeline per piece of text (see docs/metavoice.md):
    normalise -> BPE (first-stage offset) -> first stage GPT with speaker CFG -> codebooks 1-2
    -> second stage (text with its own offset + codes) -> 8 codebooks -> EnCodec 24 kHz decode.

Upstream then runs Multi-Band Diffusion (CC-BY-NC weights), loudness normalisation and
DeepFilterNet; this engine returns the EnCodec decode directly (deterministic, licence-clean).
Long text is split into pieces of at most two sentences, each spoken with the same speaker
embedding; `stream` yields one piece's audio at a time, so memory stays flat.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ... import audio
from ..checkpoint import CheckpointError
from .generate import SamplingParams, generate, unflatten
from .gpt import GPT, load_gpt
from .nar import N_CODEBOOKS, sample_codes
from .text import split_text
from .tokenizer import BPETokenizer, TextError, normalize_text
from .speaker_encoder import SAMPLING_RATE as SPEAKER_RATE
from .speaker_encoder import SpeakerEncoder, load_speaker_encoder, trim_silence

SAMPLE_RATE = 24000
MAX_TEXT_CHARS = 5000  # ~800 words, ~5 min of speech: beyond that use several requests
MIN_REFERENCE_S = 1.0  # one 1.6 s window, zero-padded, is the least the encoder can use
MAX_REFERENCE_S = 120.0  # upstream's server cuts uploads to this length too
# Upstream samples the second stage at top-k 200 and temperature 1.0, whatever the first stage uses.
SECOND_STAGE_TOP_K = 200
SECOND_STAGE_TEMPERATURE = 1.0


def default_dtype(device: torch.device) -> torch.dtype:
    """Upstream's choice: bf16 from Ampere on, fp16 before; float32 on CPU (fp16 matmuls are slow there)."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def _check_codec(codec) -> None:
    cfg = codec.config
    if cfg.sampling_rate != SAMPLE_RATE or cfg.codebook_size != 1024 or cfg.audio_channels != 1:
        raise CheckpointError(
            f"the EnCodec model must be facebook/encodec_24khz (24 kHz, mono, 1024 codes); this one is "
            f"{cfg.sampling_rate} Hz, {cfg.audio_channels} channel(s), {cfg.codebook_size} codes"
        )
    if cfg.num_quantizers < N_CODEBOOKS:
        raise CheckpointError(f"the EnCodec model has {cfg.num_quantizers} codebooks; MetaVoice needs 8")


class MetaVoice:
    def __init__(
        self,
        first_stage: GPT,
        first_meta: dict,
        second_stage: GPT,
        second_meta: dict,
        speaker_encoder: SpeakerEncoder,
        codec,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ):
        self.device = torch.device(device)
        self.dtype = dtype or default_dtype(self.device)
        if not first_meta.get("speaker_cond"):
            raise CheckpointError("first_stage.pt: meta.speaker_cond is not set; MetaVoice needs it")
        _check_codec(codec)
        self.first_stage = first_stage.to(self.device, self.dtype).eval()
        # The second stage is 14 M parameters: float32 costs nothing and matches upstream's weights.
        self.second_stage = second_stage.to(self.device, torch.float32).eval()
        self.speaker_encoder = speaker_encoder.to(self.device).eval()
        self.codec = codec.to(self.device).eval()
        self.tokenizer = BPETokenizer.from_meta(first_meta)
        self.second_tokenizer = BPETokenizer.from_meta(second_meta)
        self.hop = int(np.prod(codec.config.upsampling_ratios))

    @classmethod
    def from_dirs(
        cls,
        model_dir: str | os.PathLike,
        encodec_dir: str | os.PathLike,
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> "MetaVoice":
        """Load metavoiceio/metavoice-1B-v0.1 and facebook/encodec_24khz snapshots from disk."""
        from transformers import EncodecModel  # heavy import, only where a real codec is loaded

        model_dir = Path(model_dir)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dt = dtype or default_dtype(dev)
        first, first_meta = load_gpt(model_dir / "first_stage.pt", dt)
        second, second_meta = load_gpt(model_dir / "second_stage.pt")
        speaker = load_speaker_encoder(model_dir / "speaker_encoder.pt")
        codec = EncodecModel.from_pretrained(os.fspath(encodec_dir))
        return cls(first, first_meta, second, second_meta, speaker, codec, dev, dt)

    def speaker_embedding(self, path: str | os.PathLike, name: str | None = None) -> torch.Tensor:
        """(256,) unit embedding of the voice in an audio file (any format FFmpeg reads); only
        its first MAX_REFERENCE_S are read. `name`: how errors name the file."""
        name = name or Path(path).name
        wav = audio.decode(path, SPEAKER_RATE, name=name, first_seconds=MAX_REFERENCE_S)
        if len(wav) < MIN_REFERENCE_S * SPEAKER_RATE:
            raise audio.AudioError(
                f"{name} is too short: {len(wav) / SPEAKER_RATE:.2f} s, "
                f"at least {MIN_REFERENCE_S:.0f} s of speech is needed (30 s or more clones best)"
            )
        wav = trim_silence(wav)
        if len(wav) == 0 or not np.any(wav):
            raise audio.AudioError(f"{name} is silent")
        return self.speaker_encoder.embed(wav)

    def check_text(self, text: str) -> str:
        """Normalised text, or TextError naming what is wrong; costs no model time."""
        if len(text) > MAX_TEXT_CHARS:
            raise TextError(
                f"the text is {len(text)} characters long; at most {MAX_TEXT_CHARS} are accepted per request"
            )
        return normalize_text(text)

    def codes(
        self, text: str, speaker_emb: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(8, F) EnCodec codes for one piece of normalised text."""
        tokens = generate(
            self.first_stage, self.tokenizer.encode(text), speaker_emb.view(1, -1), params, generator
        )
        c1, c2 = unflatten(tokens)
        return sample_codes(
            self.second_stage, self.second_tokenizer.encode(text), c1, c2, speaker_emb.view(1, 1, -1),
            temperature=SECOND_STAGE_TEMPERATURE, top_k=SECOND_STAGE_TOP_K, generator=generator,
        )

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """(8, F) codes -> float32 samples at 24 kHz, 320 per frame."""
        if codes.shape[-1] == 0:
            return np.zeros(0, dtype=np.float32)
        out = self.codec.decode(codes.view(1, 1, N_CODEBOOKS, -1).to(self.device), [None])
        return out.audio_values[0, 0].float().cpu().numpy()

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def stream(
        self,
        text: str,
        speaker_emb: torch.Tensor,
        params: SamplingParams = SamplingParams(),
        seed: int = 0,
    ) -> Iterator[np.ndarray]:
        """Yield 24 kHz audio piece by piece (at most two sentences each), same voice throughout.

        One generator seeded once serves every draw in order, so a seed fixes the whole output.
        """
        normalized = self.check_text(text)
        gen = self.generator(seed)
        for piece in split_text(normalized):
            yield self.decode(self.codes(piece, speaker_emb, params, gen))

    def synthesize(self, text: str, speaker_emb: torch.Tensor, params: SamplingParams = SamplingParams(),
                   seed: int = 0) -> np.ndarray:
        pieces = list(self.stream(text, speaker_emb, params, seed))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

