"""diffusers' HunyuanVideo, HunyuanVideo-1.5 and Wan: their processors call ``dispatch_attention_fn``
(imported into each transformer's module, diffusers >= 0.36 for HunyuanVideo's); ``sdpa`` replaces it
there for the calls of the models it is installed on.

- HunyuanVideo builds a ``[B, 1, 1, N]`` key-padding mask in every call (the prompt is padded to 256
  tokens): the padding is cut before the blocks, so the mask is all-True and is not passed on.
- HunyuanVideo-1.5 builds a dense ``[B, 1, N, N]`` mask in every processor call (its text is ordered
  real tokens first, then padding, and a text-to-video call adds 729 masked image tokens): the
  replacement reads each sample's real length off the mask and attends those tokens unmasked.
- Wan passes no mask: ``sdpa`` only pins torch's SDPA (over a ``set_attention_backend`` choice).
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from . import auto
from .code_base import CodeBase
from .kernels import sdpa, sdpa_valid_prefix
from .padding import TextArguments, on_sdpa_path

DISPATCH = "dispatch_attention_fn"


def _module(model: torch.nn.Module):
    return sys.modules[type(model).__module__]


def _named(*names: str) -> Callable[[torch.nn.Module], bool]:
    return lambda model: type(model).__name__ in names


def _dispatcher(original: Callable, unmasked: Callable) -> Callable:
    """``dispatch_attention_fn`` that runs ``unmasked(q, k, v, mask)`` on the ``sdpa`` path (a plain
    call: no dropout, causality, scale or context parallelism, which go to diffusers' own with the
    mask dropped) and ``original`` elsewhere."""

    def dispatch(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        if not on_sdpa_path():
            return original(query, key, value, attn_mask, dropout_p, is_causal, scale, **kwargs)
        if dropout_p == 0.0 and not is_causal and scale is None and kwargs.get("parallel_config") is None:
            return unmasked(query, key, value, attn_mask)
        return original(query, key, value, None, dropout_p, is_causal, scale, **kwargs)

    dispatch.__wrapped__ = original
    return dispatch


def _all_true_mask(original: Callable) -> Callable:
    if hasattr(original, "__wrapped__"):
        # Another room's dispatcher lies beneath (sparse attention, patched first for some model in this
        # process): it gets the call, the mask (all-True here) dropped, so a model it is installed on
        # keeps it; for the others it hands the call on to diffusers' own, unmasked.
        return _dispatcher(original, lambda q, k, v, _mask: original(q, k, v, None))
    return _dispatcher(original, lambda q, k, v, _mask: sdpa(q, k, v))


def _dense_mask(original: Callable) -> Callable:
    def attend(q, k, v, mask):
        if mask is None:
            return sdpa(q, k, v)
        # [B, 1, N, N] (or [B, 1, 1, N]) bool, real tokens first; row 0 is a video token's (never
        # padding), so it holds which keys are real
        if mask.dtype != torch.bool:
            raise TypeError(f"--attention sdpa: a float attention mask ({mask.dtype}) is not a padding mask")
        keys = mask.reshape(mask.shape[0], -1, mask.shape[-1])[:, 0]
        return sdpa_valid_prefix(q, k, v, [int(n) for n in keys.sum(dim=-1).tolist()])

    return _dispatcher(original, attend)


HUNYUAN_VIDEO = CodeBase(
    name="diffusers HunyuanVideo", matches=_named("HunyuanVideoTransformer3DModel"), module=_module,
    function=DISPATCH, replacement=_all_true_mask,
    model_path=lambda m: auto.masked_sdpa(m, "SDPA with a key-padding mask"),
    text=TextArguments("encoder_hidden_states", "encoder_attention_mask",
                       ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask",
                        "pooled_projections", "guidance")),
)
HUNYUAN_VIDEO_15 = CodeBase(
    name="diffusers HunyuanVideo-1.5", matches=_named("HunyuanVideo15Transformer3DModel"), module=_module,
    function=DISPATCH, replacement=_dense_mask,
    model_path=lambda m: auto.masked_sdpa(m, "SDPA with a dense [N, N] mask"),
)
WAN = CodeBase(
    name="diffusers Wan", matches=_named("WanTransformer3DModel"), module=_module, function=DISPATCH,
    replacement=_dense_mask, model_path=auto.same_kernel,
)
CODE_BASES = (HUNYUAN_VIDEO, HUNYUAN_VIDEO_15, WAN)
