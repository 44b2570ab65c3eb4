"""What ``--attention`` needs to know of one code base's transformer: where its attention call lives,
what runs there (the model's own path), and how ``sdpa`` replaces it."""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Callable

import torch

from .padding import TextArguments


@dataclasses.dataclass(frozen=True)
class CodeBase:
    """One code base's attention. ``replacement(original)`` is the function put in place of
    ``module.function`` while ``sdpa`` is installed on any of its models: it runs the ``sdpa`` path
    for a call of such a model (``padding.unpadded()``, or its own mask handling) and ``original``
    for anything else. ``text``: the forward arguments whose padding is cut before the blocks (None:
    the replacement drops padded tokens itself)."""

    name: str
    matches: Callable[[torch.nn.Module], bool]
    module: Callable[[torch.nn.Module], ModuleType]
    function: str
    replacement: Callable[[Callable], Callable]
    model_path: Callable[[torch.nn.Module], "ModelPath"]
    text: TextArguments | None = None
    refuse: Callable[[torch.nn.Module], str | None] = lambda model: None  # why sdpa cannot run on it, or None


@dataclasses.dataclass(frozen=True)
class ModelPath:
    """What the model's own attention runs on its device, as ``auto`` weighs it against ``sdpa``."""

    kernel: str  # e.g. "SDPA with a key-padding mask", "flash-attn 2 (varlen)"
    sdpa_faster: bool  # the measured verdict for this kernel on this device (attention/auto.py)
    why: str  # the measurement behind the verdict
