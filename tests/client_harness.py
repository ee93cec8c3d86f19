"""Fixtures shared by the client tests: real clips, a long recording, servers' logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import librivox
from saladcog import audio

TOKEN = "test-webhook-token"


def clips() -> list[Path]:
    return [clip.wav for clip in librivox()]


def long_recording(path: Path, repeats: int) -> Path:
    """The five clips read `repeats` times in a row: a real recording of ~35 s per repeat."""
    pieces = [audio.decode(c, 16000) for c in clips()] * repeats
    audio.encode(np.concatenate(pieces), 16000, path, "wav")
    return path


def completed_ids(log_path: Path) -> list[str]:
    """Prediction ids that the Cog server's worker completed, in order, from its JSON log."""
    ids = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"Prediction worker completed"' in line:
            ids.append(json.loads(line)["fields"]["prediction_id"])
    return ids
