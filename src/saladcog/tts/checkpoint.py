"""What both engines' checkpoint loaders share: reading a PyTorch file, and a strict key check
whose error names the missing, unexpected or mis-shaped keys."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

SHOWN = 5  # keys named per kind of problem


class CheckpointError(ValueError):
    """A checkpoint does not match the model; the message names the offending keys."""


def read_file(path: str | os.PathLike, weights_only: bool = True, mmap: bool = False) -> Any:
    """The object in a `torch.save` file, or CheckpointError saying why it cannot be read.

    `weights_only=False` unpickles Python objects too: only for the files baked into the image.
    """
    try:
        return torch.load(os.fspath(path), map_location="cpu", weights_only=weights_only, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as e:  # noqa: BLE001 - torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from None


def _named(keys: Sequence[str]) -> str:
    return ", ".join(keys[:SHOWN]) + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def check_keys(expected: Mapping[str, Sequence[int]], state: Mapping[str, torch.Tensor], source: str) -> None:
    """CheckpointError unless `state` has exactly the `expected` keys, each of the expected shape."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"missing key(s) {_named(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s) {_named(unexpected)}")
    if wrong:
        problems.append("shape mismatch for " + ", ".join(
            f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k])})" for k in wrong[:SHOWN]))
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
