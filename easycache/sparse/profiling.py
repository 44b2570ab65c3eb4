"""Online profiling: which mask (spatial or temporal) each head needs, from a few sampled rows.

For ``num_rows`` random video query rows, the exact attention output is compared (mean squared
error over those rows) with the output of the same rows under the spatial and under the
temporal mask; each head takes the mask with the lower error. More rows: a surer choice, and a
profiling cost growing as ``num_rows * seq_len`` per head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .layout import VideoLayout
from .masks import dense_rows, full_rows


def sample_rows(layout: VideoLayout, num_rows: int, generator: torch.Generator) -> torch.Tensor:
    """``num_rows`` distinct video query positions (all of them when the video is shorter)."""
    count = min(num_rows, layout.video_len)
    return torch.randperm(layout.video_len, generator=generator)[:count].sort().values


def profile_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: VideoLayout, band: int,
                  rows: torch.Tensor) -> torch.Tensor:
    """Per head, the sampled-row MSE of each mask against exact attention: (2, batch, heads).

    Index 0 is the spatial mask, 1 the temporal mask. Inputs are (batch, heads, seq_len, head_dim).
    """
    rows = rows.to(q.device)
    q_rows = q[:, :, rows]
    exact = F.scaled_dot_product_attention(q_rows, k, v, attn_mask=full_rows(layout, rows, q.device)[:, None])
    errors = []
    for temporal in (False, True):
        mask = dense_rows(layout, band, temporal=temporal, rows=rows, device=q.device)[:, None]
        approx = F.scaled_dot_product_attention(q_rows, k, v, attn_mask=mask)
        errors.append((approx.float() - exact.float()).pow(2).mean(dim=(2, 3)))
    return torch.stack(errors)


def classify_heads(q, k, v, layout: VideoLayout, band: int, num_rows: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(temporal, errors): ``temporal`` (batch, heads) bool, True where the temporal mask errs less.

    Ties go to spatial. ``errors`` is ``profile_heads``'s (2, batch, heads) tensor.
    """
    errors = profile_heads(q, k, v, layout, band, sample_rows(layout, num_rows, generator))
    return errors[1] < errors[0], errors
