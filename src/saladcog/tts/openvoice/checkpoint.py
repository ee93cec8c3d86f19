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

from saladcog.tts.checkpoint import CheckpointError, check_keys, read_file

_PARAMETRIZED = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}


def expected_keys(model: nn.Module) -> dict[str, torch.Size]:
    """The model's state-dict keys as the published checkpoints name them, with their shapes."""
    keys = {}
    for name, tensor in model.state_dict().items():
        for new, old in _PARAMETRIZED.items():
            if name.endswith(new):
                name = name[: -len(new)] + old
        keys[name] = tensor.shape
    return keys


def load_weight_normed(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load every key or fail naming the missing, unexpected or mis-shaped ones; fold weight norm."""
    check_keys(expected_keys(model), state_dict, source)
    model.load_state_dict(state_dict, strict=True)
    fold_weight_norm(model)


def fold_weight_norm(model: nn.Module) -> None:
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The `model` state dict of a checkpoint.pth, read without unpickling arbitrary objects."""
    ckpt = read_file(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: expected a dict with a 'model' state dict")
    return ckpt["model"]
