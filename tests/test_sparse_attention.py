"""Sparse video attention (easycache.sparse): masks, backends, head profiling, SVG's gating rule."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from easycache.sparse import SVGConfig, VideoLayout, band_from_sparsity, classify_heads, flex_available, sparse_attention
from easycache.sparse.masks import dense_rows
from easycache.sparse.runtime import SVGState

warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
BACKENDS = ["sdpa"] + (["flex"] if flex_available() else [])


def qkv(layout, heads=3, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(layout.batch, heads, layout.seq_len, dim, generator=g) for _ in range(3)]


def varlen_reference(q, k, v, layout):
    """Tencent's flash varlen semantics: real tokens attend to real tokens, padding to padding."""
    out = torch.empty_like(q)
    for b, valid in enumerate(layout.text_valid):
        real = layout.video_len + valid
        out[b, :, :real] = F.scaled_dot_product_attention(q[b:b + 1, :, :real], k[b:b + 1, :, :real], v[b:b + 1, :, :real])[0]
        if real < layout.seq_len:
            out[b, :, real:] = F.scaled_dot_product_attention(q[b:b + 1, :, real:], k[b:b + 1, :, real:], v[b:b + 1, :, real:])[0]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_band_that_keeps_everything_is_dense_attention(backend):
    layout = VideoLayout.uniform(frames=3, tokens_per_frame=5, text_len=4)
    q, k, v = qkv(layout)
    band = band_from_sparsity(layout, 1.0)
    assert band == layout.video_len
    for temporal in (torch.zeros(1, 3, dtype=torch.bool), torch.tensor([[True, False, True]])):
        out = sparse_attention(q, k, v, layout, temporal, band, backend=backend)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_text_attends_only_to_padding(backend):
    layout = VideoLayout(frames=2, tokens_per_frame=4, text_len=6, text_valid=(2, 5))
    q, k, v = qkv(layout)
    out = sparse_attention(q, k, v, layout, torch.tensor([[False, True, False]] * 2), layout.video_len, backend=backend)
    torch.testing.assert_close(out, varlen_reference(q, k, v, layout), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not flex_available(), reason="this torch has no flex_attention")
@pytest.mark.parametrize("band", [1, 3, 7, 30])
def test_flex_and_sdpa_backends_agree(band):
    layout = VideoLayout(frames=4, tokens_per_frame=6, text_len=5, text_valid=(5, 2))
    q, k, v = qkv(layout, heads=4, seed=band)
    temporal = torch.tensor([[True, False, True, False], [False, False, True, True]])
    a = sparse_attention(q, k, v, layout, temporal, band, backend="sdpa")
    b = sparse_attention(q, k, v, layout, temporal, band, backend="flex")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_masks_are_spatial_and_temporal():
    layout = VideoLayout.uniform(frames=4, tokens_per_frame=6, text_len=3, text_valid=2)
    spatial = dense_rows(layout, band=6, temporal=False)[0]
    temporal = dense_rows(layout, band=4, temporal=True)[0]
    video, frame_of, pos_of = layout.video_len, lambda i: i // 6, lambda i: i % 6
    for i in range(video):
        for j in range(video):
            if frame_of(i) == frame_of(j):
                assert spatial[i, j], "a spatial head sees its whole frame when the band is one frame"
            if abs(frame_of(i) - frame_of(j)) > 1:
                assert not spatial[i, j]
            if pos_of(i) == pos_of(j):
                assert temporal[i, j], "a temporal head sees its position in every frame"
            if abs(pos_of(i) - pos_of(j)) > 1:
                assert not temporal[i, j]
    for mask in (spatial, temporal):
        assert mask[:video, video:video + 2].all() and mask[video:video + 2, :video + 2].all()  # real text
        assert not mask[:video + 2, video + 2:].any() and not mask[video + 2:, :video + 2].any()  # padding
        assert mask[video + 2:, video + 2:].all()


def test_the_band_is_never_empty_and_follows_sparsity():
    tiny = VideoLayout.uniform(frames=2, tokens_per_frame=2, text_len=16)
    assert band_from_sparsity(tiny, 0.01) == 1
    assert band_from_sparsity(tiny, 1.0) == tiny.video_len
    hunyuan_720p = VideoLayout.uniform(frames=33, tokens_per_frame=3600, text_len=256)
    band = band_from_sparsity(hunyuan_720p, 0.2)
    assert abs(band - 12285) < 100  # Sparse-VideoGen's sparsity_to_width: 3.41 frames of 3600 tokens
    kept = hunyuan_720p.seq_len ** 2 - (hunyuan_720p.video_len - band) ** 2
    assert kept / hunyuan_720p.seq_len ** 2 == pytest.approx(0.2, abs=1e-3)
    with pytest.raises(ValueError):
        band_from_sparsity(tiny, 0.0)


def test_profiling_picks_spatial_for_frame_local_and_temporal_for_aligned_heads():
    frames, per_frame, text = 4, 6, 3
    layout = VideoLayout.uniform(frames, per_frame, text)
    dim, strength = frames + per_frame, 6.0
    q = torch.zeros(1, 2, layout.seq_len, dim)
    for i in range(layout.video_len):
        q[0, 0, i, i // per_frame] = strength  # head 0: same frame
        q[0, 1, i, frames + i % per_frame] = strength  # head 1: same spatial position
    k = q.clone()
    v = torch.randn(1, 2, layout.seq_len, dim, generator=torch.Generator().manual_seed(0))
    band = per_frame  # a spatial band of one frame; a temporal band of 6 > frames covers every frame
    temporal, errors = classify_heads(q, k, v, layout, band, num_rows=8, generator=torch.Generator().manual_seed(0))
    assert temporal.tolist() == [[False, True]]
    assert errors[0, 0, 0] < 1e-3 < errors[1, 0, 0] and errors[1, 0, 1] < 1e-3 < errors[0, 0, 1]


def test_svg_gating_is_sparse_videogens():
    state = SVGState(SVGConfig(first_times_fp=0.055, first_layers_fp=0.025), patch_size=(1, 2, 2))
    state.begin_call(torch.zeros(1, 4, 2, 4, 4), torch.tensor([946.0]))
    assert state.dense_here(0) and state.dense_here(5)  # t > 1000 * (1 - 0.055) = 945
    state.begin_call(torch.zeros(1, 4, 2, 4, 4), torch.tensor([945.0]))
    assert state.step == 1 and state.grid == (2, 4)
    assert state.dense_here(0) and state.dense_here(1)  # index < 42 * 0.025 = 1.05
    assert not state.dense_here(2)
    state.begin_call(torch.zeros(1, 4, 2, 4, 4), torch.tensor([1000.0]))  # a rise: new generation
    assert state.step == 0
    assert math.isclose(42 * 0.025, 1.05)
