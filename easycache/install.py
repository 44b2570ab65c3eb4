"""The hook: EasyCache on one model instance's ``forward``.

The cache wraps the instance's ``forward`` (never the class's), outside whatever was already
wrapped around it: HunyuanVideo's xDiT ``parallelize_transformer`` and accelerate's offload hooks
both replace the instance's ``forward``, so the cache, installed last, is the outermost layer and a
skipped step runs none of them. The branch of a call (``"cond"`` / ``"uncond"``) comes from
diffusers' ``cache_context``, when the pipeline uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import torch

from .cache import EasyCache, EasyCacheConfig
from .calls import LATENT_NAMES, TIMESTEP_NAMES, call_argument, parameter_names, pick, prediction_of, timestep_value, with_prediction

_ATTRIBUTE = "_easycache"


@dataclasses.dataclass
class _Installation:
    cache: EasyCache
    wrapper: Any
    forward_before: Any  # the instance's own ``forward`` attribute before us, or None
    cache_context_before: Any
    branch: str | None = None


def cache_on_model(model: torch.nn.Module) -> EasyCache | None:
    """The cache installed on this model instance, or None."""
    installation = model.__dict__.get(_ATTRIBUTE)
    return installation.cache if installation is not None else None


def install_on_model(
    model: torch.nn.Module, config: EasyCacheConfig, cache: EasyCache | None = None, owner: str | None = None
) -> EasyCache:
    """Wrap ``model.forward`` (this instance only) with a cache and return the cache.

    ``cache`` shares one cache between models that take turns within one generation (Wan 2.2's
    two experts); ``owner`` then names this model, so the cache knows when the other one takes over.
    """
    if _ATTRIBUTE in model.__dict__:
        raise RuntimeError(
            f"EasyCache is already installed on this {type(model).__name__}; use the handle "
            "apply_easycache returned, or call easycache.remove_easycache(model) first"
        )
    cache = cache or EasyCache(config)
    forward = model.forward
    names = parameter_names(model)
    latent = pick(names, LATENT_NAMES) or (names[0] if names else None)
    timestep = pick(names, TIMESTEP_NAMES)
    if latent is None:
        raise TypeError(f"{type(model).__name__}.forward takes no argument EasyCache could use as the latent")
    installation = _Installation(cache, None, model.__dict__.get("forward"), model.__dict__.get("cache_context"))
    template: dict[str, Any] = {}

    @functools.wraps(forward)
    def easycache_forward(*args, **kwargs):
        x = call_argument(args, kwargs, names, latent)
        if not torch.is_tensor(x):
            return forward(*args, **kwargs)
        computed: dict[str, Any] = {}

        def compute(_: torch.Tensor) -> torch.Tensor:
            computed["output"] = forward(*args, **kwargs)
            return prediction_of(computed["output"])

        t = call_argument(args, kwargs, names, timestep) if timestep else None
        v = cache(x, timestep_value(t), installation.branch, compute, owner)
        if "output" in computed:
            template["output"] = computed["output"]
            return computed["output"]
        return with_prediction(template["output"], v)

    installation.wrapper = easycache_forward
    model.forward = easycache_forward
    if hasattr(model, "cache_context"):
        model.cache_context = _branch_recorder(model.cache_context, installation)
    model.__dict__[_ATTRIBUTE] = installation
    return cache


def uninstall_from_model(model: torch.nn.Module) -> None:
    """Put back the forward the model had before ``install_on_model``."""
    installation = model.__dict__.get(_ATTRIBUTE)
    if installation is None:
        raise RuntimeError(f"EasyCache is not installed on this {type(model).__name__}")
    if model.__dict__.get("forward") is not installation.wrapper:
        raise RuntimeError(
            f"{type(model).__name__}.forward was wrapped again after EasyCache was installed (e.g. by an "
            "offload hook); remove that wrapper first, then EasyCache"
        )
    _restore(model, "forward", installation.forward_before)
    if "cache_context" in model.__dict__:
        _restore(model, "cache_context", installation.cache_context_before)
    del model.__dict__[_ATTRIBUTE]


def _restore(model: torch.nn.Module, name: str, before: Any) -> None:
    if before is None:
        del model.__dict__[name]
    else:
        model.__dict__[name] = before


def _branch_recorder(cache_context, installation: _Installation):
    """Wrap diffusers' ``model.cache_context(name)`` so the cache learns the branch of each call."""

    @contextlib.contextmanager
    def recording_cache_context(name, *args, **kwargs):
        with cache_context(name, *args, **kwargs):
            installation.branch = name
            try:
                yield
            finally:
                installation.branch = None

    return recording_cache_context
