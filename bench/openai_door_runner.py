"""A Cog runner for bench/openai_door.py: Whisper's inputs, no model. It reads the audio file
and answers with its size in Whisper's output shape, so the benchmark times only how a file
reaches the runner (a data URI through Cog's API, or an upload through the OpenAI front door),
taken as the Whisper runner takes it (saladcog.inputs)."""

from __future__ import annotations

from typing import Any, Optional

from cog import BaseModel, BaseRunner, Input, Path

from saladcog import inputs


class SizeOutput(BaseModel):
    detected_language: str
    duration: float
    text: str
    transcription: str
    segments: list[Any]


class FileSize(BaseRunner):
    def setup(self) -> None:
        inputs.take_over_cog_paths()  # as predict.py does: files reach run() the way Whisper's do

    def run(
        self,
        audio: Path = Input(description="Any file."),
        task: str = Input(description="Ignored.", default="transcribe"),
        language: str = Input(description="Ignored.", default="auto"),
        transcription: str = Input(description="Ignored.", default="plain text"),
        word_timestamps: bool = Input(description="Ignored.", default=False),
        temperature: float = Input(description="Ignored.", default=0.0),
        initial_prompt: Optional[str] = Input(description="Ignored.", default=None),
    ) -> SizeOutput:
        size = 0
        with inputs.fetched(audio, "audio") as sent, open(sent.path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
        return SizeOutput(detected_language="en", duration=0.0, text=str(size), transcription="", segments=[])
