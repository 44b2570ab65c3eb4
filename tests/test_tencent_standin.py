"""The flash-attn stand-in of easycache/testing/tencent_tiny.py (no HYVIDEO_ROOT needed: it is ours).

`_flash_attn_varlen_func_cpu` replaces flash_attn_varlen_func in Tencent's blocks, on CPU in the
tests and on a GPU in bench/gpu/tencent.py (part d of the GPU check). It must give the same numbers
as attention computed inside each cu_seqlens segment, and it must reach SDPA in a form that SDPA's
fused kernels take: 4-D (batch, heads, seq, dim). Given 3-D tensors, SDPA falls to the math kernel,
which at HunyuanVideo's 544p sequence asked an H200 for 408 GiB.
"""

import math

import pytest
import torch

from easycache.testing import tencent_tiny
from easycache.testing.tencent_tiny import _flash_attn_varlen_func_cpu

HEADS, DIM = 3, 8
# Packed segments: two real ones and an empty one between them; keys longer than queries.
CU_Q = [0, 5, 5, 12]
CU_K = [0, 6, 6, 15]


def packed_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(CU_Q[-1], HEADS, DIM, generator=g)
    k = torch.randn(CU_K[-1], HEADS, DIM, generator=g)
    v = torch.randn(CU_K[-1], HEADS, DIM, generator=g)
    return q, k, v, torch.tensor(CU_Q, dtype=torch.int32), torch.tensor(CU_K, dtype=torch.int32)


def reference(q, k, v, scale=None):
    """softmax(q k^T * scale) v inside each segment, in float64, packed like the inputs."""
    scale = 1 / math.sqrt(DIM) if scale is None else scale
    out = torch.zeros(q.shape, dtype=torch.float64)
    for i in range(len(CU_Q) - 1):
        q0, q1, k0, k1 = CU_Q[i], CU_Q[i + 1], CU_K[i], CU_K[i + 1]
        if q1 == q0 or k1 == k0:
            continue
        qs, ks, vs = (t.double().transpose(0, 1) for t in (q[q0:q1], k[k0:k1], v[k0:k1]))  # [heads, seq, dim]
        weights = torch.softmax(qs @ ks.transpose(1, 2) * scale, dim=-1)
        out[q0:q1] = (weights @ vs).transpose(0, 1)
    return out


def call(q, k, v, cu_q, cu_k, scale=None):
    return _flash_attn_varlen_func_cpu(q, k, v, cu_q, cu_k, max_seqlen_q=7, max_seqlen_k=9,
                                       softmax_scale=scale)


@pytest.mark.parametrize("scale", [None, 0.3])
def test_matches_attention_inside_each_segment(scale):
    q, k, v, cu_q, cu_k = packed_inputs()
    out = call(q, k, v, cu_q, cu_k, scale)
    assert out.shape == q.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), reference(q, k, v, scale), rtol=0, atol=1e-5)


def test_sdpa_gets_4d_inputs_and_no_mask(monkeypatch):
    """A spy on what the module actually calls (`F.scaled_dot_product_attention`, F being
    torch.nn.functional): every call gets 4-D q, k, v of one segment and no mask."""
    real = tencent_tiny.F.scaled_dot_product_attention
    shapes = []

    def spy(query, key, value, attn_mask=None, *args, **kwargs):
        assert query.dim() == key.dim() == value.dim() == 4, (query.shape, key.shape, value.shape)
        assert attn_mask is None
        shapes.append((tuple(query.shape), tuple(key.shape)))
        return real(query, key, value, attn_mask, *args, **kwargs)

    monkeypatch.setattr(tencent_tiny.F, "scaled_dot_product_attention", spy)
    q, k, v, cu_q, cu_k = packed_inputs(seed=1)
    out = call(q, k, v, cu_q, cu_k)
    # One call per non-empty segment, each a batch of one: (1, heads, seq, dim).
    assert shapes == [((1, HEADS, 5, DIM), (1, HEADS, 6, DIM)), ((1, HEADS, 7, DIM), (1, HEADS, 9, DIM))]
    torch.testing.assert_close(out.double(), reference(q, k, v), rtol=0, atol=1e-5)


def test_runs_with_the_fused_kernels_only():
    """With the math kernel ruled out, SDPA must still run: on CPU its flash kernel takes 4-D
    inputs and refuses 3-D ones ("No available kernel"), as the fused CUDA kernels do."""
    try:
        from torch.nn import attention
        attention.sdpa_kernel
    except (ImportError, AttributeError):
        pytest.skip(f"torch.nn.attention.sdpa_kernel needs torch >= 2.3 (this is torch {torch.__version__})")
    SDPBackend = attention.SDPBackend
    q, k, v, cu_q, cu_k = packed_inputs(seed=2)
    with attention.sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        out = call(q, k, v, cu_q, cu_k)
    torch.testing.assert_close(out.double(), reference(q, k, v), rtol=0, atol=1e-5)
