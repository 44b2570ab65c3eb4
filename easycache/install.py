"""Installing an EasyCache on one model instance: apply / remove.

The cache wraps the instance's ``forward`` (never the class's), outside whatever was already
wrapped around it: HunyuanVideo's xDiT ``parallelize_transformer`` and accelerate's offload hooks
both replace the instance's ``forward``, so the cache, installed last, is the outermost layer and a
skipped step runs none of them. The model's own code is called, never copied.

What the wrapper needs from a call it finds by the forward's parameter names: the noisy latent
(``hidden_states`` in diffusers, ``x`` in Tencent's HunyuanVideo) and the timestep. The branch
(``"cond"`` / ``"uncond"``) comes from diffusers' ``cache_context``, when the pipeline uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from typing import Any

import torch

from .cache import EasyCache, EasyCacheConfig

LATENT_NAMES = ("hidden_states", "x", "sample", "latents", "img")
TIMESTEP_NAMES = ("timestep", "t", "timesteps")
_ATTRIBUTE = "_easycache"


def apply_easycache(target: Any, config: EasyCacheConfig | None = None) -> EasyCache:
    """Install EasyCache on a transformer, a diffusers pipeline or HunyuanVideo's sampler.

    Returns the installed cache (``reset()``, ``records``, ``summary()``). On a pipeline, each
    pipeline call starts a new generation and supplies its number of steps, and without a
    ``config`` the model's preset (``easycache.presets``) applies; on a bare transformer the
    default ``EasyCacheConfig()`` does.
    """
    if isinstance(target, torch.nn.Module):
        return install_on_model(target, config or EasyCacheConfig())
    from .pipeline import find_pipeline, install_on_pipeline

    pipeline = find_pipeline(target)
    if pipeline is None:
        raise TypeError(
            "apply_easycache takes a transformer (torch.nn.Module), a diffusers pipeline or "
            f"HunyuanVideo's sampler; got {type(target).__name__}"
        )
    return install_on_pipeline(pipeline, config)


def remove_easycache(target: Any) -> None:
    """Restore the original forward (and pipeline call) of whatever ``apply_easycache`` was given."""
    if isinstance(target, torch.nn.Module):
        uninstall_from_model(target)
        return
    from .pipeline import find_pipeline, uninstall_from_pipeline

    pipeline = find_pipeline(target)
    if pipeline is None:
        raise TypeError(f"remove_easycache: {type(target).__name__} is neither a model nor a pipeline")
    uninstall_from_pipeline(pipeline)


def installed_cache(model: torch.nn.Module) -> EasyCache | None:
    """The cache installed on ``model``, or None."""
    installation = model.__dict__.get(_ATTRIBUTE)
    return installation.cache if installation is not None else None


@dataclasses.dataclass
class _Installation:
    cache: EasyCache
    wrapper: Any
    forward_before: Any  # the instance's own ``forward`` attribute before us, or None
    cache_context_before: Any
    branch: str | None = None


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
    names = [p for p in inspect.signature(type(model).forward).parameters][1:]
    latent = _pick(names, LATENT_NAMES) or (names[0] if names else None)
    timestep = _pick(names, TIMESTEP_NAMES)
    if latent is None:
        raise TypeError(f"{type(model).__name__}.forward takes no argument EasyCache could use as the latent")
    installation = _Installation(cache, None, model.__dict__.get("forward"), model.__dict__.get("cache_context"))
    template: dict[str, Any] = {}

    def easycache_forward(*args, **kwargs):
        x = call_argument(args, kwargs, names, latent)
        if not torch.is_tensor(x):
            return forward(*args, **kwargs)
        computed: dict[str, Any] = {}

        def compute(_: torch.Tensor) -> torch.Tensor:
            computed["output"] = forward(*args, **kwargs)
            return _tensor_of(computed["output"])

        t = call_argument(args, kwargs, names, timestep) if timestep else None
        v = cache(x, timestep_value(t), installation.branch, compute, owner)
        if "output" in computed:
            template["output"] = computed["output"]
            return computed["output"]
        return _with_tensor(template["output"], v)

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


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((n for n in wanted if n in names), None)


def call_argument(args: tuple, kwargs: dict, names: list[str], name: str) -> Any:
    """The value of parameter ``name`` in a call, positional or keyword."""
    if name in kwargs:
        return kwargs[name]
    index = names.index(name)
    return args[index] if index < len(args) else None


def timestep_value(t: Any) -> float | None:
    """A call's timestep as one number. Per-sample or per-token timesteps (Wan 2.2 TI2V, LTX
    conditioning) give the largest: conditioning tokens sit at 0, the generated ones at the step's."""
    if t is None:
        return None
    if torch.is_tensor(t):
        return float(t.detach().max()) if t.numel() else None
    return float(t)


def _tensor_of(output: Any) -> torch.Tensor:
    """The prediction inside a model's output: a tensor, the first item, or the first tensor value."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, dict):
        return next(v for v in output.values() if torch.is_tensor(v))
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"EasyCache cannot find the prediction in a {type(output).__name__} output")


def _with_tensor(output: Any, v: torch.Tensor) -> Any:
    """``output`` with its prediction replaced by ``v``, in the same structure."""
    if torch.is_tensor(output):
        return v
    if isinstance(output, dict):
        key = next(k for k, value in output.items() if torch.is_tensor(value))
        if dataclasses.is_dataclass(output):
            return dataclasses.replace(output, **{key: v})
        return type(output)({**output, key: v})
    return type(output)((v, *output[1:]))
