"""The public entry points: ``apply_easycache``, ``remove_easycache``, ``installed_cache``; and the
dense attention path beneath the cache: ``apply_attention``, ``remove_attention``, ``installed_attention``
(``easycache.attention``; install it first, the cache wraps it).

They take a transformer (``torch.nn.Module``), a diffusers pipeline, or HunyuanVideo's sampler (its
``.pipeline``), and hand over to the hook (``install.py``) or the pipeline wrapper (``pipeline.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from .attention import AttentionChoice, apply_attention, installed_attention, remove_attention  # noqa: F401 (public)
from .cache import EasyCache, EasyCacheConfig
from .install import cache_on_model, install_on_model, uninstall_from_model
from .pipeline import denoisers, find_pipeline, install_on_pipeline, uninstall_from_pipeline
from .presets import config_for, preset_for


def apply_easycache(target: Any, config: EasyCacheConfig | None = None) -> EasyCache:
    """Install EasyCache on a transformer, a diffusers pipeline or HunyuanVideo's sampler.

    Returns the installed cache (``reset()``, ``records``, ``summary()``). On a pipeline, each
    pipeline call starts a new generation and supplies its number of steps, and without a
    ``config`` the model's preset (``easycache.presets``) applies; on a bare transformer the
    default ``EasyCacheConfig()`` does.
    """
    if isinstance(target, torch.nn.Module):
        return install_on_model(target, config or EasyCacheConfig())
    return install_on_pipeline(_pipeline_of(target, "apply_easycache"), config)


def remove_easycache(target: Any) -> None:
    """Restore the original forward (and pipeline call) of whatever ``apply_easycache`` was given."""
    if isinstance(target, torch.nn.Module):
        uninstall_from_model(target)
    else:
        uninstall_from_pipeline(_pipeline_of(target, "remove_easycache"))


def installed_cache(target: Any) -> EasyCache | None:
    """The cache installed on a transformer, or on a pipeline's (or sampler's) transformer; or None."""
    if isinstance(target, torch.nn.Module):
        return cache_on_model(target)
    pipeline = find_pipeline(target)
    if pipeline is None:
        return None
    return next((c for c in map(cache_on_model, denoisers(pipeline).values()) if c is not None), None)


def default_config(target: Any) -> tuple[EasyCacheConfig, str]:
    """The config ``apply_easycache(target)`` would use, and where it comes from: the pipeline's
    preset (with its source), else the dataclass defaults."""
    pipeline = None if isinstance(target, torch.nn.Module) else find_pipeline(target)
    if pipeline is None:
        return EasyCacheConfig(), "EasyCacheConfig defaults"
    return config_for(pipeline), f"preset: {preset_for(pipeline).source}"


def _pipeline_of(target: Any, caller: str) -> Any:
    pipeline = find_pipeline(target)
    if pipeline is None:
        raise TypeError(
            f"{caller} takes a transformer (torch.nn.Module), a diffusers pipeline or HunyuanVideo's "
            f"sampler; got {type(target).__name__}"
        )
    return pipeline
