"""Installing an EasyCache on a pipeline: diffusers' pipelines and HunyuanVideo's own.

The cache goes on the pipeline's ``transformer`` instance (see ``install.py``). The pipeline call
is wrapped, for this pipeline instance only, so that each call starts a new generation and the
rule counts the call's own number of steps (the pipeline's ``_num_timesteps``, set before its
denoising loop, else the call's ``num_inference_steps``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from .cache import EasyCache, EasyCacheConfig
from .install import install_on_model, installed_cache, uninstall_from_model


def find_pipeline(target: Any) -> Any | None:
    """The pipeline in ``target``: the target itself, or HunyuanVideo sampler's ``.pipeline``."""
    for candidate in (target, getattr(target, "pipeline", None)):
        if isinstance(getattr(candidate, "transformer", None), torch.nn.Module) and callable(candidate):
            return candidate
    return None


def install_on_pipeline(pipeline: Any, config: EasyCacheConfig) -> EasyCache:
    """Install a cache on ``pipeline.transformer`` and make each pipeline call a new generation."""
    base = type(pipeline)
    if getattr(base, "_easycache_base", None) is not None:
        raise RuntimeError(
            f"EasyCache is already installed on this {base.__name__}; use the handle apply_easycache "
            "returned, or call easycache.remove_easycache(pipeline) first"
        )
    cache = install_on_model(pipeline.transformer, config)
    call_steps: dict[str, int | None] = {"steps": None}
    cache.num_steps_source = lambda: _int_or_none(getattr(pipeline, "_num_timesteps", None)) or call_steps["steps"]
    signature = inspect.signature(base.__call__)

    @functools.wraps(base.__call__)
    def __call__(self, *args, **kwargs):
        cache.reset()
        call_steps["steps"] = _requested_steps(signature, self, args, kwargs)
        self._num_timesteps = None  # the pipeline sets it again, to this call's count
        return base.__call__(self, *args, **kwargs)

    # A subclass made for this one instance: the class (and other instances) stay untouched, and
    # the name stays the same so saving the pipeline's config is unaffected.
    pipeline.__class__ = type(base.__name__, (base,), {"__call__": __call__, "_easycache_base": base,
                                                       "__module__": base.__module__})
    return cache


def uninstall_from_pipeline(pipeline: Any) -> None:
    """Restore the pipeline's own class and its transformer's own forward."""
    base = type(pipeline).__dict__.get("_easycache_base")
    if base is None:
        if installed_cache(pipeline.transformer) is not None:
            uninstall_from_model(pipeline.transformer)
            return
        raise RuntimeError(f"EasyCache is not installed on this {type(pipeline).__name__}")
    uninstall_from_model(pipeline.transformer)
    pipeline.__class__ = base


def _requested_steps(signature: inspect.Signature, pipeline: Any, args: tuple, kwargs: dict) -> int | None:
    """``num_inference_steps`` of a pipeline call (its default when not given)."""
    try:
        bound = signature.bind(pipeline, *args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return _int_or_none(bound.arguments.get("num_inference_steps"))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
