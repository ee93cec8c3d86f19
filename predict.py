"""Cog runners, one thin class per model: parse the inputs, call saladcog, shape the output.

cog.yaml (Whisper large-v3) and models/*.yaml each point `run:` at one class here.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from cog import BaseModel, BaseRunner, Input, Path

from saladcog import weights
from saladcog.asr import formats
from saladcog.asr import model as asr_model
from saladcog.asr.transcribe import TranscribeOptions, segment_dict, transcribe

LANGUAGE_HELP = "Language spoken in the audio as an ISO 639-1 code (en, fr, de, …), or 'auto' to detect it."
SUBTITLE_FORMATS = {"plain text": formats.to_text, "srt": formats.to_srt, "vtt": formats.to_vtt}


class TranscriptionOutput(BaseModel):
    detected_language: str
    language_probability: float
    duration: float
    text: str
    transcription: str
    segments: list[Any]
    metrics: Any


class Whisper(BaseRunner):
    """Whisper large-v3 on faster-whisper (CTranslate2): float16 on a GPU, int8 on a CPU."""

    baked_models: tuple[str, ...] = ("whisper-large-v3",)
    condition_default = True

    def setup(self) -> None:
        self.model = asr_model.load(weights.whisper_model_dir(*self.baked_models))
        print(f"loaded {self.model.path} on {self.model.device} ({self.model.compute_type})")

    def run(
        self,
        audio: Path = Input(description="Audio or video file (any format FFmpeg decodes), or its URL."),
        task: str = Input(
            description="transcribe: text in the spoken language; translate: English text.",
            default="transcribe",
            choices=["transcribe", "translate"],
        ),
        language: str = Input(description=LANGUAGE_HELP, default="auto"),
        transcription: str = Input(
            description="Format of the `transcription` output: plain text, SubRip or WebVTT subtitles.",
            default="plain text",
            choices=list(SUBTITLE_FORMATS),
        ),
        word_timestamps: bool = Input(description="Add word-level timings to each segment.", default=False),
        vad_filter: bool = Input(
            description="Skip silence with the Silero voice-activity detector before decoding.",
            default=False,
        ),
        batch_size: int = Input(
            description="1: sequential decoding. Above 1: faster-whisper's batched pipeline (faster on a GPU).",
            default=1,
            ge=1,
            le=64,
        ),
        beam_size: int = Input(description="Beam width of the decoder.", default=5, ge=1, le=10),
        temperature: float = Input(
            description="Sampling temperature; 0 decodes greedily, falling back to higher temperatures when a window fails.",
            default=0.0,
            ge=0.0,
            le=1.0,
        ),
        initial_prompt: Optional[str] = Input(
            description="Text that conditions the first window: names, spellings, style.", default=None
        ),
        condition_on_previous_text: Optional[bool] = Input(
            description="Prompt each window with the previous window's text (default: on for Whisper, off for Distil-Whisper).",
            default=None,
        ),
    ) -> TranscriptionOutput:
        options = TranscribeOptions(
            task=task,
            language=None if language == "auto" else language.strip().lower(),
            # Word alignment also gives subtitle cues start and end times that follow the speech.
            word_timestamps=word_timestamps or transcription != "plain text",
            vad_filter=vad_filter,
            batch_size=batch_size,
            beam_size=beam_size,
            temperature=temperature,
            initial_prompt=initial_prompt or None,
            condition_on_previous_text=(
                self.condition_default if condition_on_previous_text is None else condition_on_previous_text
            ),
        )
        started = time.perf_counter()
        result = transcribe(self.model, audio, options)
        seconds = time.perf_counter() - started
        return TranscriptionOutput(
            detected_language=result.detected.language,
            language_probability=result.detected.language_probability,
            duration=result.detected.duration,
            text=result.text,
            transcription=SUBTITLE_FORMATS[transcription](result.segments),
            segments=[segment_dict(s, with_words=word_timestamps) for s in result.segments],
            metrics={
                "audio_seconds": result.detected.duration,
                "processing_seconds": round(seconds, 3),
                "real_time_factor": round(seconds / result.detected.duration, 4),
                "model": self.model.name,
                "device": self.model.device,
                "compute_type": self.model.compute_type,
            },
        )


class DistilWhisper(Whisper):
    """Distil-Whisper large-v3 (or v2): 2 decoder layers, ~6x faster than large-v3.

    Distil-Whisper is trained without previous-text prompting, so that is off by default.
    """

    baked_models = ("distil-whisper-large-v3", "distil-whisper-large-v2")
    condition_default = False
