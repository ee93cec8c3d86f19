"""A tiny random pyannote/speaker-diarization-community-1, in the official layout.

community-1 cannot be downloaded here (gated, and no Hub), so the tests build a pipeline of the
same make that `Pipeline.from_pretrained(directory)` loads offline:

    config.yaml                    SpeakerDiarization, VBx clustering, `$model/<sub>` entries
    segmentation/pytorch_model.bin PyanNet, powerset over 3 speakers (at most 2 at once), 10 s
    embedding/pytorch_model.bin    WeSpeakerResNet34 (the real architecture, random weights)
    plda/xvec_transform.npz        mean1, mean2, lda (256 -> 128)
    plda/plda.npz                  mu, tr (orthonormal), psi

Each checkpoint is a dict as Lightning writes it (`state_dict`, `hyper_parameters`,
`pytorch-lightning_version`) plus the `pyannote.audio` key that `Model.on_save_checkpoint` fills.
The segmentation is shrunk (one small LSTM layer) and its classifier is biased towards the
one-speaker classes, so that random weights still find speech and the clustering has work to do.

Run with the diarization virtualenv's Python (.venvs/diarize: pyannote is not in .venv):
    python tests/tiny_pyannote.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning
import numpy as np
import torch
import yaml
from pyannote.audio.core.task import Problem, Resolution, Specifications
from pyannote.audio.models.embedding import WeSpeakerResNet34
from pyannote.audio.models.segmentation import PyanNet

EMBEDDING_DIMENSION = 256  # WeSpeakerResNet34's
LDA_DIMENSION = 128  # community-1's PLDA space (pyannote's PLDA default)
SEGMENTATION_SECONDS = 10.0

# community-1's config.yaml, as published (pipeline parameters and their tuned values).
CONFIG = {
    "dependencies": {"pyannote.audio": "4.0.0"},
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "VBxClustering",
            "segmentation": "$model/segmentation",
            "segmentation_batch_size": 32,
            "embedding": "$model/embedding",
            "embedding_batch_size": 32,
            "embedding_exclude_overlap": True,
            "plda": "$model/plda",
        },
    },
    "params": {
        "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
        "segmentation": {"min_duration_off": 0.0},
    },
}


def _save(model, specifications: Specifications, path: Path) -> None:
    model.specifications = specifications
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def _segmentation(target: Path) -> None:
    specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=SEGMENTATION_SECONDS,
        min_duration=SEGMENTATION_SECONDS,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model = PyanNet(
        lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True, "monolithic": True, "dropout": 0.0},
        linear={"hidden_size": 16, "num_layers": 1},
    )
    model.specifications = specifications
    model.build()
    with torch.no_grad():
        # Powerset classes: {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}. Favour single speakers and
        # make the weights large enough that the winner changes with the sound.
        model.classifier.weight.mul_(8.0)
        model.classifier.bias.copy_(torch.tensor([-2.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0]))
    _save(model, specifications, target / "segmentation" / "pytorch_model.bin")


def _embedding(target: Path) -> None:
    specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    # 16 mel bins instead of 80: the same network, a fifth of the work on a CPU.
    _save(WeSpeakerResNet34(num_mel_bins=16), specifications, target / "embedding" / "pytorch_model.bin")


def _orthonormal(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((rows, columns)))
    return q


def _plda(target: Path, rng: np.random.Generator) -> None:
    (target / "plda").mkdir(parents=True, exist_ok=True)
    np.savez(
        target / "plda" / "xvec_transform.npz",
        mean1=rng.standard_normal(EMBEDDING_DIMENSION) * 0.01,
        mean2=rng.standard_normal(LDA_DIMENSION) * 0.01,
        lda=_orthonormal(rng, EMBEDDING_DIMENSION, LDA_DIMENSION),
    )
    np.savez(
        target / "plda" / "plda.npz",
        mu=np.zeros(LDA_DIMENSION),
        tr=_orthonormal(rng, LDA_DIMENSION, LDA_DIMENSION),
        psi=np.linspace(20.0, 0.5, LDA_DIMENSION),
    )


def make_tiny_community_1(target: Path, seed: int = 0) -> Path:
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    _segmentation(target)
    _embedding(target)
    _plda(target, np.random.default_rng(seed))
    (target / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return target


if __name__ == "__main__":
    print(make_tiny_community_1(Path(sys.argv[1])))
