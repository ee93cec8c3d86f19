"""Load a CTranslate2 Whisper model on the right device, and check requests against it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import ctranslate2
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES

from saladcog import weights


class RequestError(ValueError):
    """A transcription request that this model cannot serve; the message says why."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    whisper: WhisperModel
    path: Path
    device: str
    compute_type: str

    @property
    def name(self) -> str:
        if self.path == weights.embedded_default():
            return "tiny.en"
        return self.path.name

    @property
    def multilingual(self) -> bool:
        return self.whisper.model.is_multilingual

    @property
    def n_mels(self) -> int:
        return self.whisper.feature_extractor.mel_filters.shape[0]


def default_device() -> str:
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def default_compute_type(device: str) -> str:
    """float16 on a GPU, int8 on a CPU; SALADCOG_COMPUTE_TYPE overrides (e.g. int8_float16)."""
    return os.environ.get("SALADCOG_COMPUTE_TYPE") or ("float16" if device == "cuda" else "int8")


def load(path: str | os.PathLike, device: str | None = None, compute_type: str | None = None) -> LoadedModel:
    device = device or os.environ.get("SALADCOG_DEVICE") or default_device()
    compute_type = compute_type or default_compute_type(device)
    whisper = WhisperModel(str(path), device=device, compute_type=compute_type, local_files_only=True)
    return LoadedModel(whisper=whisper, path=Path(path), device=device, compute_type=compute_type)


def check_request(model: LoadedModel, task: str, language: str | None) -> None:
    """Refuse, with a message that names the problem, what the model cannot do."""
    if task not in ("transcribe", "translate"):
        raise RequestError(f"unknown task {task!r}: expected 'transcribe' or 'translate'")
    if task == "translate" and not model.multilingual:
        raise RequestError(
            f"task 'translate' needs a multilingual model; {model.name} is English-only"
        )
    if language is None:
        return
    if language not in _LANGUAGE_CODES:
        raise RequestError(
            f"unknown language code {language!r}: use 'auto' or one of {', '.join(_LANGUAGE_CODES)}"
        )
    if not model.multilingual and language != "en":
        raise RequestError(
            f"{model.name} is English-only: language must be 'en' or 'auto', not {language!r}"
        )
