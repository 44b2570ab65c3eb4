"""apply_svg / remove_svg: sparse attention on one HunyuanVideo transformer (either code base)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .. import patching
from . import diffusers_processor, hyvideo_hooks
from .config import SVGConfig
from .runtime import SVGState, log_summary

_ATTRIBUTE = "_easycache_svg"
OWNER = "sparse attention"


@dataclasses.dataclass
class _Installation:
    state: SVGState
    handles: list
    patch: tuple


def find_transformer(target: Any) -> torch.nn.Module:
    """The transformer in a transformer, a diffusers pipeline or HunyuanVideo's sampler."""
    for candidate in (target, getattr(target, "transformer", None),
                      getattr(getattr(target, "pipeline", None), "transformer", None)):
        if isinstance(candidate, torch.nn.Module) and (
            hyvideo_hooks.is_tencent_transformer(candidate) or diffusers_processor.is_diffusers_transformer(candidate)
        ):
            return candidate
    raise TypeError("apply_svg takes a HunyuanVideo transformer (Tencent's or diffusers'), a diffusers "
                    f"HunyuanVideo pipeline or HunyuanVideo's sampler; got {type(target).__name__}")


def apply_svg(target: Any, config: SVGConfig | None = None) -> SVGState:
    """Install sparse attention; returns its state (``records``, ``summary()``, counters).

    Install it before EasyCache (EasyCache wraps the transformer's forward from the outside, so a
    skipped step runs no attention at all).
    """
    config = config or SVGConfig()
    model = find_transformer(target)
    if _ATTRIBUTE in model.__dict__:
        raise RuntimeError(f"sparse attention is already installed on this {type(model).__name__}")
    if hyvideo_hooks.is_tencent_transformer(model):
        state = SVGState(config, tuple(model.patch_size))
        handles, patch = hyvideo_hooks.install(model, state)
    else:
        cfg = model.config
        state = SVGState(config, (cfg.patch_size_t, cfg.patch_size, cfg.patch_size))
        handles, patch = diffusers_processor.install(model, state)
    patching.patch(OWNER, *patch)
    model.__dict__[_ATTRIBUTE] = _Installation(state, handles, patch)
    return state


def installed_svg(target: Any) -> SVGState | None:
    installation = find_transformer(target).__dict__.get(_ATTRIBUTE)
    return installation.state if installation else None


def remove_svg(target: Any) -> None:
    """Remove the hooks and processors; the model's own attention again."""
    model = find_transformer(target)
    installation = model.__dict__.get(_ATTRIBUTE)
    if installation is None:
        raise RuntimeError(f"sparse attention is not installed on this {type(model).__name__}")
    module, name, _ = installation.patch
    patching.unpatch(OWNER, module, name)  # first: a refused removal leaves SVG whole
    del model.__dict__[_ATTRIBUTE]
    for handle in installation.handles:
        handle.remove()
    log_summary(installation.state)
