"""Sparse video attention: each head attends under its own mask (spatial or temporal).

Two backends compute the same thing:

- ``flex``: the temporal heads' video tokens are permuted to token-major order (``layout.py``),
  so that every head runs under one banded block mask, whose kept blocks are dense; then
  ``flex_attention`` (torch >= 2.5; compiled on CUDA, eager elsewhere) and the inverse permutation.
- ``sdpa``: the reference. Each head's boolean mask is built in frame-major order and given to
  ``scaled_dot_product_attention``. Memory grows with ``seq_len^2``: for CPUs and tests.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from loguru import logger

from .layout import VideoLayout
from .masks import dense_rows, mask_mod

try:  # torch >= 2.5
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # HunyuanVideo's own environment may have an older torch
    create_block_mask = flex_attention = None

BACKENDS = ("auto", "flex", "sdpa")
_BLOCK_MASKS: OrderedDict = OrderedDict()
_BLOCK_MASK_CACHE_SIZE = 8
_compiled_flex = None
_warned: list = []


def flex_available() -> bool:
    return flex_attention is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto``: flex on CUDA when this torch has it, else the SDPA reference."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "flex" and not flex_available():
        raise ValueError("the flex backend needs torch >= 2.5 (torch.nn.attention.flex_attention)")
    if backend == "auto":
        backend = "flex" if flex_available() and device.type == "cuda" else "sdpa"
        if backend == "sdpa" and device.type == "cuda" and not _warned:
            _warned.append(True)
            logger.warning("no flex_attention in this torch (needs >= 2.5): the masked SDPA reference "
                           "needs memory growing with seq_len^2 and is slower than dense attention")
    return backend


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: VideoLayout,
                     temporal: torch.Tensor, band: int, backend: str = "auto") -> torch.Tensor:
    """Attention of (batch, heads, seq_len, head_dim) tensors, each head under its own SVG mask.

    ``temporal`` (batch, heads) bool: True for a temporal head, False for a spatial one.
    ``band``: half-width of the video band in tokens (``masks.band_from_sparsity``).
    """
    if q.shape[2] != layout.seq_len or q.shape[0] != layout.batch:
        raise ValueError(f"attention of shape {tuple(q.shape)} does not match {layout}")
    backend = resolve_backend(backend, q.device)
    if backend == "sdpa":
        return _sdpa(q, k, v, layout, temporal, band)
    return _flex(q, k, v, layout, temporal, band)


def _sdpa(q, k, v, layout, temporal, band):
    spatial_mask = dense_rows(layout, band, temporal=False, device=q.device)
    temporal_mask = dense_rows(layout, band, temporal=True, device=q.device)
    mask = torch.where(temporal.to(q.device)[:, :, None, None], temporal_mask[:, None], spatial_mask[:, None])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _flex(q, k, v, layout, temporal, band):
    order = _placement(layout, temporal.to(q.device), q.device)  # (batch, heads, seq): source position
    index = order[..., None].expand(-1, -1, -1, q.shape[-1])
    placed = [torch.gather(x, 2, index) for x in (q, k, v)]
    with warnings.catch_warnings():  # eager flex off CUDA is the intended (slow) reference path
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        out = _flex_fn(q.device)(*placed, block_mask=_block_mask(layout, band, q.device))
    return torch.empty_like(out).scatter_(2, index, out)


def _placement(layout: VideoLayout, temporal: torch.Tensor, device) -> torch.Tensor:
    identity = torch.arange(layout.seq_len, device=device)
    token_major = layout.token_major_order(device)
    return torch.where(temporal[:, :, None], token_major, identity)


def _block_mask(layout: VideoLayout, band: int, device: torch.device):
    key = (layout, band, str(device))
    if key not in _BLOCK_MASKS:
        # compiled on CUDA: eager create_block_mask materialises the whole seq_len^2 mask
        _BLOCK_MASKS[key] = create_block_mask(mask_mod(layout, band, device), layout.batch, None,
                                              layout.seq_len, layout.seq_len, device=device,
                                              _compile=device.type == "cuda")
        if len(_BLOCK_MASKS) > _BLOCK_MASK_CACHE_SIZE:
            _BLOCK_MASKS.popitem(last=False)
    _BLOCK_MASKS.move_to_end(key)
    return _BLOCK_MASKS[key]


def _flex_fn(device: torch.device):
    """flex_attention, compiled once on CUDA (eager flex materialises the scores)."""
    global _compiled_flex
    if device.type != "cuda":
        return flex_attention
    if _compiled_flex is None:
        logger.info("compiling flex_attention for the sparse attention (first call only)")
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex
