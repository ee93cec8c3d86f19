"""Cog runner for OpenVoice v2 (to be folded into predict.py): text in, speech file out.

models/openvoice.yaml points `predict:` here. The engine is saladcog.tts.openvoice.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Optional

from cog import BaseModel, BaseRunner, Input, Path

from saladcog import audio
from saladcog.tts.openvoice import OpenVoice as Engine
from saladcog.tts.openvoice import Settings, paths_from_env

SPEAKERS = ["EN-US", "EN-BR", "EN_INDIA", "EN-AU", "EN-Default"]
ENGLISH = {"en", "english"}


class SpeechOutput(BaseModel):
    audio: Path
    metrics: Any


class OpenVoice(BaseRunner):
    """OpenVoice v2: MeloTTS English base speakers, voice cloning with the tone colour converter."""

    def setup(self) -> None:
        self.engine = Engine(**paths_from_env())
        missing = set(SPEAKERS) - set(self.engine.speakers)
        if missing:
            raise RuntimeError(f"the MeloTTS checkpoint lacks speaker(s) {', '.join(sorted(missing))}")

    def run(
        self,
        text: str = Input(description="Text to speak (up to 200,000 characters; long text is read sentence by sentence)."),
        speaker: str = Input(description="Base speaker (accent) of MeloTTS English.", default="EN-US", choices=SPEAKERS),
        reference_audio: Optional[Path] = Input(
            description="Speech to clone (any format FFmpeg decodes, 5-30 s of one voice works best). Empty: the base speaker.",
            default=None,
        ),
        speed: float = Input(description="Speaking rate (1 = normal).", default=1.0, ge=0.5, le=2.0),
        language: str = Input(description="Language of the text. Only English (EN) is supported for now.", default="EN"),
        output_format: str = Input(description="Audio file format.", default="wav", choices=["wav", "mp3"]),
        seed: Optional[int] = Input(description="Random seed for reproducible speech; empty: random.", default=None),
    ) -> SpeechOutput:
        if language.strip().lower() not in ENGLISH:
            raise ValueError(f"language {language!r} is not supported yet: only English (EN)")
        started = time.perf_counter()
        target_se = None
        if reference_audio is not None:
            reference = audio.decode(reference_audio, self.engine.converter.sampling_rate)
            target_se = self.engine.reference_se(reference)
        rate = self.engine.output_rate(cloning=target_se is not None)
        samples = 0

        def pieces():
            nonlocal samples
            for chunk in self.engine.synthesize(text, speaker, Settings(speed=speed), seed=seed, target_se=target_se):
                samples += chunk.size
                yield chunk

        out = Path(tempfile.mkdtemp(prefix="openvoice-")) / f"speech.{output_format}"
        audio.encode_stream(pieces(), rate, out, output_format)
        seconds = time.perf_counter() - started
        words = len(text.split())
        return SpeechOutput(
            audio=out,
            metrics={
                "words": words,
                "audio_seconds": round(samples / rate, 3),
                "processing_seconds": round(seconds, 3),
                "words_per_second": round(words / seconds, 2),
                "sample_rate": rate,
                "cloned": target_se is not None,
            },
        )
