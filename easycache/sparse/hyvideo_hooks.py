"""Sparse attention in Tencent's HunyuanVideo (``hyvideo``): hooks, no copied block forwards.

``hyvideo/modules/models.py`` imports ``attention`` from ``attenion.py`` and both
``MMDoubleStreamBlock`` and ``MMSingleStreamBlock`` call it as ``attention(q, k, v,
cu_seqlens_q=..., ...)`` on ``[batch, seq, heads, head_dim]`` tensors ordered [video, text (valid,
then padding)]. That module-global name is replaced by a dispatcher (while any transformer has
SVG installed); the dispatcher runs Tencent's own ``attention`` unless an SVG block is active and
the step/block is sparse. The valid text length of each sample comes from ``cu_seqlens_q``.
"""

from __future__ import annotations

import inspect
import sys

import torch

from .runtime import ActiveBlock, SVGState, active_block, add_block_hooks, add_transformer_hook

ATTENTION_NAME = "attention"


def is_tencent_transformer(model: torch.nn.Module) -> bool:
    return hasattr(model, "double_blocks") and hasattr(model, "single_blocks")


def install(model: torch.nn.Module, state: SVGState) -> tuple[list, tuple]:
    """Hooks on ``model`` and its blocks; returns (hook handles, the patched (module, name))."""
    blocks = [("double", i, b) for i, b in enumerate(model.double_blocks)]
    blocks += [("single", i, b) for i, b in enumerate(model.single_blocks)]
    if any(getattr(b, "hybrid_seq_parallel_attn", None) is not None for _, _, b in blocks):
        raise ValueError("sparse attention does not support sequence parallelism (--ulysses-degree / "
                         "--ring-degree): run it on one GPU")
    module = sys.modules[type(model.double_blocks[0]).__module__]
    handles = [add_transformer_hook(model, state, ("x",), ("t",))]
    for kind, index, block in blocks:
        handles += add_block_hooks(block, ActiveBlock(state, kind, index))
    return handles, (module, ATTENTION_NAME, make_dispatcher)


def make_dispatcher(original):
    """Tencent's ``attention`` with the SVG path in front of it."""
    signature = inspect.signature(original)

    def svg_attention(q, k, v, *args, **kwargs):
        block = active_block()
        if block is None:
            return original(q, k, v, *args, **kwargs)
        state = block.state
        dense = state.dense_here(block.index)
        state.count(block, dense)
        if dense:
            return original(q, k, v, *args, **kwargs)
        batch, seq_len = q.shape[:2]
        cu_seqlens = signature.bind_partial(q, k, v, *args, **kwargs).arguments.get("cu_seqlens_q")
        video_len = state.grid[0] * state.grid[1]
        if cu_seqlens is None:
            text_valid = [seq_len - video_len] * batch
        else:
            cu = [int(c) for c in cu_seqlens.tolist()]
            text_valid = [cu[2 * i + 1] - cu[2 * i] - video_len for i in range(batch)]
        out = state.attend(block, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), text_valid)
        return out.transpose(1, 2).reshape(batch, seq_len, -1)

    svg_attention.__wrapped__ = original
    return svg_attention
