"""Tencent's HunyuanVideo (``hyvideo``): its double and single blocks call ``attention(q, k, v,
cu_seqlens_q=..., ...)`` of ``hyvideo/modules/models.py`` (imported there from ``attenion.py``), which
runs flash-attn's ``flash_attn_varlen_func`` over two segments per sample: [video + real text] and
[text padding]. ``sdpa`` cuts the text padding off before the blocks (``text_states`` /
``text_mask``), so one segment is left, and replaces that name by unmasked SDPA for the calls of the
models it is installed on. The text refiner's own small masked call (``token_refiner.py``) is left.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from . import auto
from .code_base import CodeBase, ModelPath
from .kernels import sdpa
from .padding import TextArguments, on_sdpa_path


def _is_tencent(model: torch.nn.Module) -> bool:
    return type(model).__name__ == "HYVideoDiffusionTransformer"


def _module(model: torch.nn.Module):
    return sys.modules[type(model).__module__]


def _replacement(original: Callable) -> Callable:
    nested = hasattr(original, "__wrapped__")  # another room's dispatcher beneath (sparse attention, patched
    # first for some model in this process): it keeps every call, which the cut padding left as one
    # segment per sample, so a model it is installed on keeps it

    def attention(q, k, v, *args, **kwargs):
        if (nested or not on_sdpa_path() or args or kwargs.get("mode", "flash") != "flash"
                or kwargs.get("attn_mask") is not None):
            return original(q, k, v, *args, **kwargs)
        out = sdpa(q, k, v)  # [B, S, H, D]: one segment per sample once the padding is cut
        return out.reshape(out.shape[0], out.shape[1], -1)

    attention.__wrapped__ = original
    return attention


def _model_path(model: torch.nn.Module) -> ModelPath:
    module = _module(model)
    attenion = sys.modules.get(module.__name__.rsplit(".", 1)[0] + ".attenion")
    if getattr(attenion, "flash_attn_varlen_func", None) is None and auto.on_cuda(model) is not None:
        return ModelPath("flash-attn 2 (varlen), not installed", True,
                         "the model's own path needs flash-attn, which this environment lacks")
    return auto.flash_attn_2(model)


def _refuse(model: torch.nn.Module) -> str | None:
    blocks = [*model.double_blocks, *model.single_blocks]
    if any(getattr(b, "hybrid_seq_parallel_attn", None) is not None for b in blocks):
        return "sequence parallelism (xDiT) runs its own attention; use --attention model with --ulysses-degree"
    return None


HUNYUAN_VIDEO = CodeBase(
    name="Tencent's HunyuanVideo", matches=_is_tencent, module=_module, function="attention",
    replacement=_replacement, model_path=_model_path, refuse=_refuse,
    text=TextArguments("text_states", "text_mask", ("x", "t", "text_states", "text_mask", "text_states_2", "guidance")),
)
CODE_BASES = (HUNYUAN_VIDEO,)
