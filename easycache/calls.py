"""How a model's call maps onto the rule's: which argument is the latent, which the timestep, where
the prediction sits in the output. Found by the forward's parameter names, never by copying it.

The noisy latent is ``hidden_states`` in diffusers, ``x`` in Tencent's HunyuanVideo; the timestep
``timestep`` or ``t``. Outputs are a tensor, a tuple (prediction first) or a dict-like output
(the first tensor value).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch

from .cache import not_compiled

LATENT_NAMES = ("hidden_states", "x", "sample", "latents", "img")
TIMESTEP_NAMES = ("timestep", "t", "timesteps")


def parameter_names(model: torch.nn.Module) -> list[str]:
    """The parameters of ``model``'s class ``forward``, without ``self``."""
    return list(inspect.signature(type(model).forward).parameters)[1:]


def pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    """The first of ``wanted`` that ``names`` has, or None."""
    return next((n for n in wanted if n in names), None)


def call_argument(args: tuple, kwargs: dict, names: list[str], name: str) -> Any:
    """The value of parameter ``name`` in a call, positional or keyword."""
    if name in kwargs:
        return kwargs[name]
    index = names.index(name)
    return args[index] if index < len(args) else None


@not_compiled
def timestep_value(t: Any) -> float | None:
    """A call's timestep as one number. Per-sample or per-token timesteps (Wan 2.2 TI2V, LTX
    conditioning) give the largest: conditioning tokens sit at 0, the generated ones at the step's."""
    if t is None:
        return None
    if torch.is_tensor(t):
        return float(t.detach().max()) if t.numel() else None
    return float(t)


def prediction_of(output: Any) -> torch.Tensor:
    """The prediction inside a model's output: a tensor, the first item, or the first tensor value."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, dict):
        return next(v for v in output.values() if torch.is_tensor(v))
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"EasyCache cannot find the prediction in a {type(output).__name__} output")


def with_prediction(output: Any, v: torch.Tensor) -> Any:
    """``output`` with its prediction replaced by ``v``, in the same structure."""
    if torch.is_tensor(output):
        return v
    if isinstance(output, dict):
        key = next(k for k, value in output.items() if torch.is_tensor(value))
        if dataclasses.is_dataclass(output):
            return dataclasses.replace(output, **{key: v})
        return type(output)({**output, key: v})
    return type(output)((v, *output[1:]))
