"""Sparse attention in diffusers' HunyuanVideo: an attention processor.

``SVGAttnProcessor`` is diffusers' own ``HunyuanVideoAttnProcessor2_0`` (projections, QK norms,
rotary embedding, output projections all run unchanged); it only marks its block as active while
it runs. The attention call inside, ``dispatch_attention_fn`` of diffusers' HunyuanVideo module,
is replaced by a dispatcher that runs SVG for an active sparse block and diffusers' own function
otherwise. Tokens are [video, text]; the valid text length comes from the key-padding mask.
"""

from __future__ import annotations

import sys

import torch

from ..versions import require_diffusers_class
from .runtime import ActiveBlock, SVGState, active_block, add_transformer_hook, reset_active, set_active

try:
    from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoAttnProcessor2_0
except ImportError:  # diffusers without HunyuanVideo (HunyuanVideo's own environment)
    HunyuanVideoAttnProcessor2_0 = object

DISPATCH_NAME = "dispatch_attention_fn"


def is_diffusers_transformer(model: torch.nn.Module) -> bool:
    return hasattr(model, "transformer_blocks") and hasattr(model, "single_transformer_blocks")


class SVGAttnProcessor(HunyuanVideoAttnProcessor2_0):
    """diffusers' HunyuanVideo attention processor, with its block marked active for SVG."""

    def __init__(self, active: ActiveBlock, replaced):
        super().__init__()
        self.active = active
        self.replaced = replaced  # the processor this one replaced, put back on removal

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None, **kwargs):
        token = set_active(self.active)
        try:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask,
                                    image_rotary_emb, **kwargs)
        finally:
            reset_active(token)


def install(model: torch.nn.Module, state: SVGState) -> tuple[list, tuple]:
    """The processors on ``model``'s blocks and a transformer hook; returns (undo list, patch)."""
    require_diffusers_class("dispatch_attention_fn", "sparse video attention (SVG) on diffusers' HunyuanVideo "
                            "(its attention dispatcher)")
    module = sys.modules[HunyuanVideoAttnProcessor2_0.__module__]
    undo = [add_transformer_hook(model, state, ("hidden_states",), ("timestep",))]
    stacks = (("double", model.transformer_blocks), ("single", model.single_transformer_blocks))
    for kind, blocks in stacks:
        for index, block in enumerate(blocks):
            processor = SVGAttnProcessor(ActiveBlock(state, kind, index), block.attn.processor)
            block.attn.set_processor(processor)
            undo.append(_ProcessorRestore(block.attn, processor.replaced))
    return undo, (module, DISPATCH_NAME, make_dispatcher)


class _ProcessorRestore:
    """A hook-handle look-alike that puts a block's former processor back."""

    def __init__(self, attn, processor):
        self.attn, self.processor = attn, processor

    def remove(self) -> None:
        self.attn.set_processor(self.processor)


def make_dispatcher(original):
    """diffusers' ``dispatch_attention_fn`` with the SVG path in front of it ([batch, seq, heads, dim])."""

    def svg_dispatch(query, key, value, attn_mask=None, *args, **kwargs):
        block = active_block()
        if block is None:
            return original(query, key, value, attn_mask, *args, **kwargs)
        state = block.state
        dense = state.dense_here(block.index)
        state.count(block, dense)
        if dense:
            return original(query, key, value, attn_mask, *args, **kwargs)
        batch, seq_len = query.shape[:2]
        video_len = state.grid[0] * state.grid[1]
        if attn_mask is None:
            text_valid = [seq_len - video_len] * batch
        else:
            keep = attn_mask if attn_mask.dtype == torch.bool else attn_mask == 0
            keep = keep.expand(batch, *keep.shape[1:]).reshape(batch, -1, keep.shape[-1])[:, 0]
            text_valid = (keep.sum(dim=-1) - video_len).tolist()
        out = state.attend(block, query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), text_valid)
        return out.transpose(1, 2)

    svg_dispatch.__wrapped__ = original
    return svg_dispatch
