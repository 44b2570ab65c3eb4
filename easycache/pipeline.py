"""Installing an EasyCache on a pipeline: diffusers' pipelines and HunyuanVideo's own.

One cache goes on the pipeline's ``transformer`` instance (and on Wan 2.2's ``transformer_2``: one
step counter, the rate restarted when the second expert takes over; see ``install.py``). The call
is wrapped, for this pipeline instance only, so that each call starts a new generation and the
rule counts the call's own number of steps (the pipeline's ``_num_timesteps``, set before its
denoising loop, else the call's ``num_inference_steps``). ``find_pipeline`` also finds the pipeline
inside HunyuanVideo's sampler.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from .cache import EasyCache, EasyCacheConfig
from .install import cache_on_model, install_on_model, uninstall_from_model
from .presets import config_for

DENOISER_ATTRIBUTES = ("transformer", "transformer_2")


def find_pipeline(target: Any) -> Any | None:
    """The pipeline in ``target``: the target itself, or HunyuanVideo sampler's ``.pipeline``."""
    for candidate in (target, getattr(target, "pipeline", None)):
        if candidate is not None and callable(candidate) and denoisers(candidate):
            return candidate
    return None


def denoisers(pipeline: Any) -> dict[str, torch.nn.Module]:
    """The pipeline's transformers by attribute name: ``transformer``, and Wan 2.2's second expert."""
    found = {name: getattr(pipeline, name, None) for name in DENOISER_ATTRIBUTES}
    return {name: model for name, model in found.items() if isinstance(model, torch.nn.Module)}


def install_on_pipeline(pipeline: Any, config: EasyCacheConfig | None = None) -> EasyCache:
    """Install one cache on the pipeline's transformer(s) and make each pipeline call a generation.

    Without ``config`` the pipeline's preset applies; an unsupported pipeline is an error that
    names the supported ones.
    """
    base = type(pipeline)
    if getattr(base, "_easycache_base", None) is not None:
        raise RuntimeError(
            f"EasyCache is already installed on this {base.__name__}; use the handle apply_easycache "
            "returned, or call easycache.remove_easycache(pipeline) first"
        )
    preset = config_for(pipeline)  # an unsupported pipeline raises here, naming the supported ones
    config = config or preset
    cache = None
    models = denoisers(pipeline)
    for name, model in models.items():
        cache = install_on_model(model, config, cache, owner=name if len(models) > 1 else None)
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
        installed = [m for m in denoisers(pipeline).values() if cache_on_model(m) is not None]
        if not installed:
            raise RuntimeError(f"EasyCache is not installed on this {type(pipeline).__name__}")
        for model in installed:  # installed on the transformer itself
            uninstall_from_model(model)
        return
    for model in denoisers(pipeline).values():
        uninstall_from_model(model)
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
