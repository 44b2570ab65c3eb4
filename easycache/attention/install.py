"""apply_attention / remove_attention: the dense attention path of one transformer.

``model`` leaves the model as it is. ``sdpa`` wraps the instance's ``forward`` (text padding cut
before the blocks, ``padding.py``) and puts a dispatcher in place of its code base's attention
function (``patching.py``); no weight is touched and ``remove_attention`` puts both back. ``auto``
is ``sdpa`` where ``auto.py``'s measurements say it is faster than the model's own path.
Install it before sparse attention and EasyCache (both wrap it from outside).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .. import patching
from ..errors import UsageError
from . import diffusers, hunyuan15, tencent
from .code_base import CodeBase, ModelPath
from .padding import sdpa_forward

MODES = ("auto", "model", "sdpa")
OWNER = "--attention sdpa"
_ATTRIBUTE = "_easycache_attention"
_SPARSE = "_easycache_svg"  # sparse/install.py's _ATTRIBUTE (not imported: sparse/ imports diffusers)
CODE_BASES: tuple[CodeBase, ...] = (*tencent.CODE_BASES, *hunyuan15.CODE_BASES, *diffusers.CODE_BASES)


@dataclasses.dataclass(frozen=True)
class AttentionChoice:
    """What ``apply_attention`` chose, as the run JSON records it."""

    requested: str  # auto, model or sdpa
    path: str  # model or sdpa: what runs
    code_base: str | None  # e.g. "diffusers HunyuanVideo"; None: a transformer no sdpa path knows
    model_kernel: str  # what the model's own path runs
    reason: str

    def record(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Installation:
    choice: AttentionChoice
    code_base: CodeBase | None
    wrapper: Any = None
    forward_before: Any = None


def find_transformer(target: Any) -> torch.nn.Module:
    """The transformer in a transformer, a diffusers pipeline or a Tencent sampler (``.pipeline``)."""
    for candidate in (target, getattr(target, "transformer", None),
                      getattr(getattr(target, "pipeline", None), "transformer", None)):
        if isinstance(candidate, torch.nn.Module):
            return candidate
    raise TypeError(f"apply_attention takes a transformer, a diffusers pipeline or HunyuanVideo's sampler; "
                    f"got {type(target).__name__}")


def code_base_of(model: torch.nn.Module) -> CodeBase | None:
    return next((c for c in CODE_BASES if c.matches(model)), None)


def choose(model: torch.nn.Module, mode: str) -> tuple[AttentionChoice, CodeBase | None]:
    """The path ``mode`` means for ``model``; ``sdpa`` where it cannot run is a ``UsageError``."""
    if mode not in MODES:
        raise UsageError(f"--attention {mode}: choose one of {', '.join(MODES)}")
    code_base = code_base_of(model)
    if code_base is None:
        path = ModelPath("its own", False, f"no sdpa path for {type(model).__name__}")
    else:
        refusal = code_base.refuse(model)
        if refusal is None and not hasattr(code_base.module(model), code_base.function):
            refusal = (f"this {code_base.name} calls attention without {code_base.function} (an older release); "
                       "upgrade it (diffusers >= 0.36)")
        path = code_base.model_path(model) if refusal is None else ModelPath("its own", False, refusal)
        if mode == "sdpa" and refusal:
            raise UsageError(f"--attention sdpa: {refusal}; or use --attention model")
    if mode == "sdpa" and code_base is None:
        raise UsageError(f"--attention sdpa: {path.why}; use --attention model (or auto)")
    chosen = mode if mode != "auto" else ("sdpa" if path.sdpa_faster else "model")
    reason = "asked for" if mode != "auto" else path.why
    return AttentionChoice(mode, chosen, code_base.name if code_base else None, path.kernel, reason), code_base


def apply_attention(target: Any, mode: str = "auto") -> AttentionChoice:
    """Put ``model``'s dense attention on ``mode``'s path (``auto``, ``model`` or ``sdpa``).

    ``sdpa`` trades nothing for speed but the rounding of another kernel (the same video in float32
    to 1e-5; in bf16, a different kernel's rounding); ``auto`` takes it only where it was measured
    faster (``easycache/attention/auto.py``)."""
    model = find_transformer(target)
    if _ATTRIBUTE in model.__dict__:
        raise RuntimeError(f"--attention is already installed on this {type(model).__name__}; remove_attention first")
    choice, code_base = choose(model, mode)
    installation = _Installation(choice, code_base)
    if choice.path == "sdpa" and _SPARSE in model.__dict__:
        # its dispatcher would sit outside sparse attention's and answer this model's calls itself: SVG off
        raise RuntimeError(f"sparse attention is installed on this {type(model).__name__}: install --attention "
                           "first (remove_svg, apply_attention, apply_svg)")
    if choice.path == "sdpa":
        patching.patch(OWNER, code_base.module(model), code_base.function, code_base.replacement)
        installation.forward_before = model.__dict__.get("forward")
        installation.wrapper = sdpa_forward(model.forward, code_base.text)
        model.forward = installation.wrapper
    model.__dict__[_ATTRIBUTE] = installation
    return choice


def installed_attention(target: Any) -> AttentionChoice | None:
    installation = find_transformer(target).__dict__.get(_ATTRIBUTE)
    return installation.choice if installation else None


def remove_attention(target: Any) -> None:
    """The model's own attention and ``forward`` again."""
    model = find_transformer(target)
    installation = model.__dict__.get(_ATTRIBUTE)
    if installation is None:
        raise RuntimeError(f"--attention is not installed on this {type(model).__name__}")
    if installation.wrapper is not None:
        if model.__dict__.get("forward") is not installation.wrapper:
            raise RuntimeError(f"{type(model).__name__}.forward was wrapped again after --attention (EasyCache, "
                               "an offload hook): remove that first")
        patching.unpatch(OWNER, installation.code_base.module(model), installation.code_base.function)
        if installation.forward_before is None:
            del model.__dict__["forward"]
        else:
            model.forward = installation.forward_before
    del model.__dict__[_ATTRIBUTE]


def refuse_before_loading(backend: str, mode: str) -> None:
    """What can be known of ``--attention sdpa`` before a model loads: diffusers' transformers run it
    through their attention dispatcher, in diffusers >= 0.36 (refused in one line on an older one)."""
    if mode == "sdpa" and backend in ("diffusers", "demo"):
        from ..versions import DIFFUSERS_FLOORS, require

        require("--attention sdpa on a diffusers transformer (its attention dispatcher)", "diffusers",
                DIFFUSERS_FLOORS["dispatch_attention_fn"])
