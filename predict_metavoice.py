"""Cog runner for MetaVoice-1B (to be folded into predict.py): text + reference voice -> speech.

Weights: METAVOICE_MODEL_DIR (first_stage.pt, second_stage.pt, speaker_encoder.pt from
metavoiceio/metavoice-1B-v0.1) and METAVOICE_ENCODEC_DIR (facebook/encodec_24khz), both baked
into the image by models/metavoice.yaml.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from typing import Any, Optional

import numpy as np
from cog import BaseModel, BaseRunner, Input, Path

from saladcog import audio
from saladcog.tts.metavoice import SAMPLE_RATE, MetaVoice as MetaVoiceEngine
from saladcog.tts.metavoice_generate import SamplingParams

# Public-domain LibriVox reader (Sense and Sensibility, ch. 1), 24.7 s: the voice used when
# no reference is given. The same five clips are in tests/data/speech/librivox (see NOTICE.md).
DEFAULT_VOICE = Path(__file__).resolve().parent / "models" / "metavoice" / "default_voice.flac"


class SpeechOutput(BaseModel):
    audio: Path
    metrics: Any


class MetaVoice(BaseRunner):
    """MetaVoice-1B zero-shot voice cloning on saladcog's engine (EnCodec decode, no MBD/DeepFilterNet)."""

    def setup(self) -> None:
        self.engine = MetaVoiceEngine.from_dirs(
            os.environ.get("METAVOICE_MODEL_DIR", "/weights/metavoice-1B-v0.1"),
            os.environ.get("METAVOICE_ENCODEC_DIR", "/weights/encodec_24khz"),
        )
        # The default voice's embedding is computed once; a bad default file fails setup loudly.
        self.default_voice = self.engine.speaker_embedding(DEFAULT_VOICE)
        print(f"MetaVoice-1B on {self.engine.device} ({self.engine.dtype})")

    def run(
        self,
        text: str = Input(description="Text to speak (English; Latin-1 characters; at most 5000)."),
        reference_audio: Optional[Path] = Input(
            description="Voice to clone: speech in any format FFmpeg reads, 1 s minimum, 30 s or more "
            "clones best; only the first 120 s are used. Empty: a public-domain LibriVox narrator.",
            default=None,
        ),
        guidance: float = Input(
            description="Speaker guidance scale: higher follows the reference voice more closely.",
            default=3.0, ge=1.0, le=5.0,
        ),
        top_p: float = Input(
            description="Nucleus sampling of the first stage; 0.9-1.0 is stable.", default=0.95, ge=0.1, le=1.0
        ),
        temperature: float = Input(
            description="Sampling temperature of both stages.", default=1.0, ge=0.1, le=2.0
        ),
        seed: Optional[int] = Input(
            description="Random seed; the same seed, text and voice give the same audio. Empty: random.",
            default=None, ge=0, le=2**31 - 1,
        ),
        output_format: str = Input(description="Audio file format.", default="wav", choices=["wav", "mp3"]),
    ) -> SpeechOutput:
        started = time.perf_counter()
        self.engine.check_text(text)  # refuse bad text before decoding any audio
        voice = self.default_voice if reference_audio is None else self.engine.speaker_embedding(reference_audio)
        seed = random.randint(0, 2**31 - 1) if seed is None else seed
        params = SamplingParams(guidance=guidance, temperature=temperature, top_p=top_p)
        pieces = [p for p in self.engine.stream(text, voice, params, seed) if p.size]
        samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        out = Path(tempfile.mkdtemp()) / f"speech.{output_format}"
        audio.encode(samples, SAMPLE_RATE, out, output_format)
        seconds = time.perf_counter() - started
        words = len(text.split())
        return SpeechOutput(
            audio=out,
            metrics={
                "words": words,
                "audio_seconds": round(len(samples) / SAMPLE_RATE, 3),
                "processing_seconds": round(seconds, 3),
                "words_per_second": round(words / seconds, 3),
                "pieces": len(pieces),
                "seed": seed,
                "device": str(self.engine.device),
                "dtype": str(self.engine.dtype).removeprefix("torch."),
            },
        )
