"""SVG's two attention masks (spatial and temporal) as functions of the layout and the band width.

One rule, in the order the attention runs in (frame-major for spatial heads, token-major for
temporal heads): a video query attends to the video keys less than ``band`` positions away, and
to every real text token; real text tokens attend to every real token; padding text attends only
to padding. So a spatial head sees its own frame and the nearby frames, and a temporal head sees
the same (and nearby) spatial positions in every frame.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .layout import VideoLayout

MIN_BAND = 1  # every video token always sees itself: a mask is never empty, whatever the size


def band_from_sparsity(layout: VideoLayout, sparsity: float) -> int:
    """The band half-width (in tokens) that keeps ``sparsity`` of the whole attention map.

    ``sparsity`` is the fraction of the (video + text)^2 attention map kept: the text rows and
    columns are always kept, the rest of the budget goes to the band ``|i - j| < band`` over the
    video tokens (as in Sparse-VideoGen's ``sparsity_to_width``). Solving
    ``S^2 - (V - band)^2 = sparsity * S^2`` gives ``band = V - S * sqrt(1 - sparsity)``; it is
    rounded up and clamped to ``[1, V]``, so a tiny video never gets an empty band, and
    ``sparsity = 1`` is dense attention.
    """
    if not 0.0 < sparsity <= 1.0:
        raise ValueError(f"sparsity is the fraction of attention kept, in (0, 1]; got {sparsity}")
    video, total = layout.video_len, layout.seq_len
    band = math.ceil(video - total * math.sqrt(1.0 - sparsity) - 1e-9)
    return max(MIN_BAND, min(video, band))


def allowed(q_idx: torch.Tensor, kv_idx: torch.Tensor, real_len: torch.Tensor, video_len: int,
            band: int) -> torch.Tensor:
    """The rule above for broadcastable query/key positions, in the order the attention runs in."""
    real = (q_idx < real_len) & (kv_idx < real_len)
    padding = (q_idx >= real_len) & (kv_idx >= real_len)
    text = (q_idx >= video_len) | (kv_idx >= video_len)
    near = (q_idx - kv_idx).abs() < band
    return (real & (text | near)) | padding


def dense_rows(layout: VideoLayout, band: int, temporal: bool, rows: torch.Tensor | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """The mask in frame-major order as booleans, shape (batch, len(rows), seq_len).

    ``rows`` are frame-major query positions (default: all). For ``temporal`` the rule is applied
    to the token-major positions of the same tokens: the same mask SVG's permuted kernel applies.
    """
    rows = torch.arange(layout.seq_len, device=device) if rows is None else rows.to(device)
    cols = torch.arange(layout.seq_len, device=device)
    if temporal:
        rows, cols = layout.to_token_major(rows), layout.to_token_major(cols)
    real = layout.real_lengths(device)[:, None, None]
    return allowed(rows[None, :, None], cols[None, None, :], real, layout.video_len, band)


def full_rows(layout: VideoLayout, rows: torch.Tensor, device=None) -> torch.Tensor:
    """Dense attention of the real tokens (padding only to padding) for ``rows``: (batch, rows, seq_len)."""
    return dense_rows(layout, max(layout.video_len, MIN_BAND), temporal=False, rows=rows, device=device)


def mask_mod(layout: VideoLayout, band: int, device=None) -> Callable:
    """The rule as a flex-attention ``mask_mod(b, h, q_idx, kv_idx)`` (token order as permuted)."""
    real_lengths = layout.real_lengths(device)
    video_len = layout.video_len

    def svg_mask(b, h, q_idx, kv_idx):
        return allowed(q_idx, kv_idx, real_lengths[b], video_len, band)

    return svg_mask
