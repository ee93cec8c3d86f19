"""Strict loading of the published VITS checkpoints.

The files store weight-normed layers the pre-2.1 way, as `X.weight_g` and `X.weight_v`. Our layers
use `torch.nn.utils.parametrizations.weight_norm`, whose load hook accepts exactly those keys; after
loading, the parametrization is removed so that the weight is computed once (with the same
`torch._weight_norm` kernel as upstream's per-forward hook, so the result is bit-identical).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn.utils import parametrize

_PARAMETRIZED = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}


class CheckpointError(ValueError):
    """A checkpoint does not match the model; the message names the offending keys."""


def expected_keys(model: nn.Module) -> dict[str, torch.Size]:
    """The model's state-dict keys as the published checkpoints name them, with their shapes."""
    keys = {}
    for name, tensor in model.state_dict().items():
        for new, old in _PARAMETRIZED.items():
            if name.endswith(new):
                name = name[: -len(new)] + old
        keys[name] = tensor.shape
    return keys


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load every key or fail naming the first missing, unexpected or mis-shaped ones."""
    expected = expected_keys(model)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"missing key(s) {', '.join(missing[:5])}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected key(s) {', '.join(unexpected[:5])}" + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
    if wrong:
        problems.append("shape mismatch for " + ", ".join(f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(expected[k])})" for k in wrong[:5]))
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
    fold_weight_norm(model)


def fold_weight_norm(model: nn.Module) -> None:
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The `model` state dict of a checkpoint.pth, read without unpickling arbitrary objects."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: expected a dict with a 'model' state dict")
    return ckpt["model"]
