"""The tiny-checkpoint harness runs Tencent's own HunyuanVideo flow on CPU (needs HYVIDEO_ROOT)."""

import sys
from pathlib import Path

import pytest
import torch

from easycache.testing.tencent_tiny import (
    LATENT_CHANNELS,
    TINY_NAME,
    enable_cpu_shims,
    hyvideo_root_or_skip_reason,
    run_script,
    write_tiny_checkpoints,
)

HYVIDEO_ROOT, SKIP_REASON = hyvideo_root_or_skip_reason()
pytestmark = [pytest.mark.skipif(HYVIDEO_ROOT is None, reason=str(SKIP_REASON)), pytest.mark.usefixtures("one_thread")]

STEPS = 4
COMMON_ARGV = [
    "--video-size", "32", "32", "--video-length", "5", "--infer-steps", str(STEPS),
    "--prompt", "a cat", "--flow-reverse", "--seed", "42",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Shims on, tiny checkpoints written; yields (hyvideo modules, model_base, cli flags)."""
    model_base = tmp_path_factory.mktemp("ckpts")
    with enable_cpu_shims(HYVIDEO_ROOT, model_base) as hv:
        info = write_tiny_checkpoints(model_base)
        yield hv, model_base, info["cli_flags"]


def load_sampler(tiny, monkeypatch, tmp_path, *extra_argv):
    """hyvideo.config.parse_args on a sample_video.py-like command line, then from_pretrained."""
    hv, model_base, flags = tiny
    argv = ["sample_video.py", *flags, *COMMON_ARGV, "--save-path", str(tmp_path), *extra_argv]
    monkeypatch.setattr(sys, "argv", argv)
    args = hv.config.parse_args()
    return hv.inference.HunyuanVideoSampler.from_pretrained(Path(args.model_base), args=args)


def predict_like_sample_video(sampler):
    """The predict(...) call of Tencent's sample_video.py."""
    args = sampler.args
    return sampler.predict(
        prompt=args.prompt, height=args.video_size[0], width=args.video_size[1],
        video_length=args.video_length, seed=args.seed, negative_prompt=args.neg_prompt,
        infer_steps=args.infer_steps, guidance_scale=args.cfg_scale,
        num_videos_per_prompt=args.num_videos, flow_shift=args.flow_shift,
        batch_size=args.batch_size, embedded_guidance_scale=args.embedded_cfg_scale,
    )


def record_transformer_calls(transformer):
    """Record (args, kwargs) of every transformer forward; returns (calls, hook handle)."""
    calls = []
    handle = transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((args, kwargs)), with_kwargs=True
    )
    return calls, handle


def test_default_flow_runs_on_cpu(tiny, monkeypatch, tmp_path):
    hv = tiny[0]
    sampler = load_sampler(tiny, monkeypatch, tmp_path)
    assert sampler.args.model == TINY_NAME and sampler.args.cfg_scale == 1.0
    transformer = sampler.pipeline.transformer
    assert transformer is sampler.model
    assert isinstance(transformer, hv.models.HYVideoDiffusionTransformer)

    calls, handle = record_transformer_calls(transformer)
    outputs = predict_like_sample_video(sampler)
    handle.remove()

    samples = outputs["samples"]
    assert samples.shape == (1, 3, 5, 32, 32)  # (batch, rgb, frames, height, width)
    assert torch.isfinite(samples).all() and samples.std() > 0

    # cfg-distilled model, cfg_scale 1: one batch-1 transformer call per step.
    assert len(calls) == STEPS
    args, kwargs = calls[0]
    x, t = args  # positional: latents, timesteps
    assert x.shape == (1, LATENT_CHANNELS, 2, 4, 4) and t.shape == (1,)
    assert set(kwargs) == {
        "text_states", "text_mask", "text_states_2", "freqs_cos", "freqs_sin", "guidance", "return_dict",
    }
    assert kwargs["return_dict"] is True and kwargs["guidance"].tolist() == [6000.0]
    assert kwargs["text_states"].shape[:2] == kwargs["text_mask"].shape == (1, 256)
    # After the video template's crop_start (95) only "a", " cat", "<|eot_id|>" remain unmasked.
    assert kwargs["text_mask"].sum() == 3
    assert [float(c[0][1]) for c in calls] == sorted((float(c[0][1]) for c in calls), reverse=True)

    again = predict_like_sample_video(sampler)["samples"]
    assert torch.equal(samples, again)  # same seed, same video


def test_cfg_scale_above_one_batches_uncond_and_cond(tiny, monkeypatch, tmp_path):
    sampler = load_sampler(tiny, monkeypatch, tmp_path, "--cfg-scale", "6.0")
    calls, handle = record_transformer_calls(sampler.pipeline.transformer)
    samples = predict_like_sample_video(sampler)["samples"]
    handle.remove()

    assert samples.shape == (1, 3, 5, 32, 32) and torch.isfinite(samples).all()
    assert len(calls) == STEPS  # still one call per step, with [negative, positive] as a batch of 2
    x, t = calls[0][0]
    assert x.shape[0] == 2 and t.shape == (2,)
    assert calls[0][1]["text_states"].shape[0] == 2


def test_cpu_offload_needs_an_accelerator(tiny, monkeypatch, tmp_path):
    """--use-cpu-offload calls diffusers' enable_sequential_cpu_offload, which needs a GPU (diffusers 0.31
    says so through torch's CUDA init, newer ones in their own words)."""
    with pytest.raises(RuntimeError, match="requires accelerator|Found no NVIDIA driver"):
        load_sampler(tiny, monkeypatch, tmp_path, "--use-cpu-offload")


def test_tencent_sample_video_script_end_to_end(tmp_path, monkeypatch):
    """Tencent's own sample_video.py main(), unmodified, writes an mp4 with the tiny checkpoints."""
    save_path = tmp_path / "results"
    run_script(HYVIDEO_ROOT / "sample_video.py", [*COMMON_ARGV, "--save-path", str(save_path)],
               HYVIDEO_ROOT, tmp_path / "ckpts")
    videos = list(save_path.glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0


def test_checkpoints_are_deterministic(tmp_path):
    with enable_cpu_shims(HYVIDEO_ROOT, tmp_path / "a"):
        first = write_tiny_checkpoints(tmp_path / "a")
        second = write_tiny_checkpoints(tmp_path / "b")
    for key in ("dit_weight",):
        a, b = torch.load(first[key])["module"], torch.load(second[key])["module"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for sub in ("vae/pytorch_model.pt",):
        a, b = (torch.load(p / "hunyuan-video-t2v-720p" / sub) for p in (tmp_path / "a", tmp_path / "b"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    for sub in ("text_encoder/model.safetensors", "text_encoder_2/model.safetensors"):
        assert (tmp_path / "a" / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes()


def test_flash_varlen_shim_matches_masked_attention(tiny):
    """The CPU flash_attn_varlen_func + get_cu_seqlens give, for the valid tokens, what hyvideo's own
    torch-mode attention gives with the equivalent [valid x valid] mask."""
    attenion = tiny[0].attenion
    gen = torch.Generator().manual_seed(0)
    batch, img_len, txt_len, heads, dim = 2, 6, 5, 2, 8
    text_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    q, k, v = (torch.randn(batch, img_len + txt_len, heads, dim, generator=gen) for _ in range(3))
    cu = attenion.get_cu_seqlens(text_mask, img_len)
    assert cu.device.type == "cpu" and cu.tolist() == [0, 9, 11, 22, 22]
    seq = img_len + txt_len
    out = attenion.attention(q, k, v, cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=seq,
                             max_seqlen_kv=seq, batch_size=batch)
    for b, n_valid in enumerate((img_len + 3, img_len + 5)):
        valid = torch.zeros(seq, dtype=torch.bool)
        valid[:n_valid] = True
        mask = (valid[:, None] & valid[None, :])[None, None]
        ref = attenion.attention(q[b:b + 1], k[b:b + 1], v[b:b + 1], mode="torch", attn_mask=mask)
        torch.testing.assert_close(out[b, :n_valid], ref[0, :n_valid])


def test_shims_are_undone(tmp_path):
    from transformers import CLIPTextModel

    outer = {name for name in sys.modules if name.split(".")[0] == "hyvideo"}
    with enable_cpu_shims(HYVIDEO_ROOT, tmp_path) as hv:
        assert TINY_NAME in hv.models.HUNYUAN_VIDEO_CONFIG
    assert {name for name in sys.modules if name.split(".")[0] == "hyvideo"} == outer
    if not outer:  # not nested inside the module fixture's shims
        assert "text_model" not in CLIPTextModel.__dict__
        assert str(HYVIDEO_ROOT) not in sys.path
