"""The ``sdpa`` path's kernels: torch's ``scaled_dot_product_attention`` with no mask reaching it.

Every code base here holds attention inputs as ``[batch, tokens, heads, head_dim]``; SDPA takes
``[batch, heads, tokens, head_dim]`` (4-D: its fused kernels, cuDNN / flash / memory-efficient,
refuse anything else and a 3-D call falls to the math kernel, which materialises the whole score
matrix). Without a mask torch picks cuDNN on Hopper, FlashAttention-2's kernel on Ampere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked attention on ``[B, S, H, D]`` tensors; the result is ``[B, S, H, D]``."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def sdpa_valid_prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: list[int]) -> torch.Tensor:
    """Attention where sample ``b``'s first ``valid[b]`` tokens are real and the rest padding, masked
    as keys (and as queries) by the model's own path: each sample's real tokens attend among
    themselves, unmasked; padded rows come back zero (the model drops them: they are text padding).
    One batched call when no sample has padding."""
    tokens = q.shape[1]
    if all(n == tokens for n in valid):
        return sdpa(q, k, v)
    out = q.new_zeros(q.shape)
    for b, n in enumerate(valid):
        out[b:b + 1, :n] = sdpa(q[b:b + 1, :n], k[b:b + 1, :n], v[b:b + 1, :n])
    return out
