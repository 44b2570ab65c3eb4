"""EasyCache on diffusers' HunyuanVideo, end to end, with a tiny random pipeline built offline."""

import pytest
import torch

import easycache
from easycache import EasyCacheConfig
from needs import skip_unless_diffusers

skip_unless_diffusers("HunyuanVideoPipeline", "the tiny diffusers HunyuanVideo pipeline")

from easycache.testing.tiny_hunyuan import generate, generate_cached, tiny_transformer  # noqa: E402

STEPS = 12


@pytest.fixture(scope="module")
def baseline(tiny_pipe):
    return generate(tiny_pipe, steps=STEPS)


@pytest.fixture(scope="module")
def baseline_cfg(tiny_pipe):
    return generate(tiny_pipe, steps=STEPS, true_cfg_scale=4.0, negative_prompt="a dog")


def cached(tiny_pipe, cfg, **kwargs):
    return generate_cached(tiny_pipe, cfg, steps=STEPS, **kwargs)


def test_default_threshold_reports_its_calls(tiny_pipe, baseline):
    video, summary, records = cached(tiny_pipe, EasyCacheConfig())
    print(f"\ntiny pipeline, default thresh 0.025, {STEPS} steps: {summary['computed']}/{summary['calls']} computed")
    assert summary["calls"] == STEPS and len(records) == STEPS
    assert video.shape == baseline.shape and torch.isfinite(video).all()
    assert all(r.computed for r in records[:5]) and records[-1].computed


@pytest.mark.parametrize("cfg_on", [False, True])
def test_thresh_zero_is_bit_identical(tiny_pipe, baseline, baseline_cfg, cfg_on):
    kwargs = dict(true_cfg_scale=4.0, negative_prompt="a dog") if cfg_on else {}
    video, summary, _ = cached(tiny_pipe, EasyCacheConfig(thresh=0.0), **kwargs)
    assert torch.equal(video, baseline_cfg if cfg_on else baseline)
    assert summary["computed"] == summary["calls"] == STEPS * (2 if cfg_on else 1)


@pytest.mark.parametrize("cfg_on", [False, True])
def test_reuse_end_to_end(tiny_pipe, baseline, baseline_cfg, cfg_on):
    kwargs = dict(true_cfg_scale=4.0, negative_prompt="a dog") if cfg_on else {}
    video, summary, records = cached(tiny_pipe, EasyCacheConfig(thresh=0.4, warmup_steps=3), **kwargs)
    reference = baseline_cfg if cfg_on else baseline
    assert 0 < summary["reused"], "a high threshold must skip steps on this model"
    assert summary["speedup"] > 1.0
    assert video.shape == reference.shape and torch.isfinite(video).all()
    assert not torch.equal(video, reference)
    mse = torch.mean((video - reference) ** 2).item()
    assert 10 * torch.log10(torch.tensor(1.0 / mse)).item() > 15, "reuse keeps the video close"
    if cfg_on:
        by_step = {}
        for r in records:
            by_step.setdefault(r.step, []).append(r)
        assert all([r.branch for r in rs] == ["cond", "uncond"] for rs in by_step.values())
        assert all(rs[0].computed == rs[1].computed for rs in by_step.values()), "one decision per step"


def test_each_branch_reuses_its_own_delta():
    model = tiny_transformer()
    cache = easycache.apply_easycache(model, EasyCacheConfig(thresh=100.0, warmup_steps=2, num_steps=5))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4, generator=g)
    cond = dict(encoder_hidden_states=torch.randn(1, 6, 16, generator=g),
                encoder_attention_mask=torch.ones(1, 6), pooled_projections=torch.randn(1, 8, generator=g))
    uncond = {k: (torch.zeros_like(v) if k != "encoder_attention_mask" else v) for k, v in cond.items()}
    deltas = {}
    for step, t in enumerate([1000.0, 900.0, 800.0, 700.0, 600.0]):
        out = {}
        for name, text in (("cond", cond), ("uncond", uncond)):
            with model.cache_context(name):
                out[name] = model(x, torch.tensor([t]), guidance=torch.tensor([6000.0]), return_dict=False, **text)[0]
        if step == 1:
            deltas = {name: v - x for name, v in out.items()}
        if step == 2:
            assert not any(r.computed for r in cache.records[-2:])
            for name in ("cond", "uncond"):
                torch.testing.assert_close(out[name], x + deltas[name])
            assert not torch.allclose(out["cond"], out["uncond"])
        x = x - 0.1 * out["cond"]


def test_more_input_channels_than_output():
    """Image-to-video: the input carries conditioning channels after the noisy latent."""
    model = tiny_transformer(in_channels=8, out_channels=4)
    cache = easycache.apply_easycache(model, EasyCacheConfig(thresh=100.0, warmup_steps=2, num_steps=6))
    g = torch.Generator().manual_seed(1)
    latent = torch.randn(2, 4, 3, 4, 4, generator=g)
    condition = torch.randn(2, 4, 3, 4, 4, generator=g)
    text = dict(encoder_hidden_states=torch.randn(2, 6, 16, generator=g),
                encoder_attention_mask=torch.ones(2, 6), pooled_projections=torch.randn(2, 8, generator=g))
    for t in [1000.0, 800.0, 600.0, 400.0, 200.0, 100.0]:
        v = model(torch.cat([latent, condition], 1), torch.tensor([t, t]), guidance=torch.tensor([6000.0] * 2),
                  return_dict=False, **text)[0]
        assert v.shape == latent.shape
        if not cache.records[-1].computed:
            torch.testing.assert_close(v, latent + delta)
        else:
            delta = v - latent
        latent = latent - 0.2 * v
    assert [r.computed for r in cache.records] == [True, True, False, False, False, True]


def test_batch_of_two_videos(tiny_pipe):
    video = cached(tiny_pipe, EasyCacheConfig(thresh=0.4, warmup_steps=3), num_videos_per_prompt=2)
    frames, summary, _ = video
    assert frames.shape[0] == 9 and summary["calls"] == STEPS and summary["reused"] > 0


def test_two_generations_in_a_row_are_identical(tiny_pipe):
    cache = easycache.apply_easycache(tiny_pipe, EasyCacheConfig(thresh=0.4, warmup_steps=3))
    try:
        first = generate(tiny_pipe, steps=STEPS)
        first_records = [(r.step, r.computed) for r in cache.records]
        second = generate(tiny_pipe, steps=STEPS)
        second_records = [(r.step, r.computed) for r in cache.records]
    finally:
        easycache.remove_easycache(tiny_pipe)
    assert torch.equal(first, second)
    assert first_records == second_records and len(second_records) == STEPS


def test_each_pipeline_call_brings_its_own_step_count(tiny_pipe):
    cache = easycache.apply_easycache(tiny_pipe, EasyCacheConfig(thresh=100.0, warmup_steps=2, num_steps=50))
    try:
        for steps in (6, 9):
            generate(tiny_pipe, steps=steps)
            assert cache.num_steps == steps
            assert [r.computed for r in cache.records] == [True, True] + [False] * (steps - 3) + [True]
    finally:
        easycache.remove_easycache(tiny_pipe)


def test_remove_restores_the_original(tiny_pipe, baseline):
    transformer_class_forward = type(tiny_pipe.transformer).forward
    pipeline_class = type(tiny_pipe)
    easycache.apply_easycache(tiny_pipe, EasyCacheConfig(thresh=0.4, warmup_steps=3))
    assert type(tiny_pipe) is not pipeline_class and "forward" in tiny_pipe.transformer.__dict__
    easycache.remove_easycache(tiny_pipe)
    assert type(tiny_pipe) is pipeline_class
    assert "forward" not in tiny_pipe.transformer.__dict__ and "cache_context" not in tiny_pipe.transformer.__dict__
    assert type(tiny_pipe.transformer).forward is transformer_class_forward
    assert torch.equal(generate(tiny_pipe, steps=STEPS), baseline)


def test_install_twice_is_a_clear_error(tiny_pipe):
    easycache.apply_easycache(tiny_pipe)
    try:
        with pytest.raises(RuntimeError, match="already installed"):
            easycache.apply_easycache(tiny_pipe)
        with pytest.raises(RuntimeError, match="already installed"):
            easycache.apply_easycache(tiny_pipe.transformer)
    finally:
        easycache.remove_easycache(tiny_pipe)


def test_state_is_per_instance():
    a, b = tiny_transformer(), tiny_transformer()
    cache = easycache.apply_easycache(a, EasyCacheConfig(num_steps=3))
    assert easycache.installed_cache(b) is None and "forward" not in b.__dict__
    assert easycache.installed_cache(a) is cache


def test_wrong_target_is_a_clear_error():
    with pytest.raises(TypeError, match="takes a transformer"):
        easycache.apply_easycache(object())


def test_without_config_a_pipeline_gets_its_preset(tiny_pipe):
    cache = easycache.apply_easycache(tiny_pipe)
    try:
        assert (cache.config.thresh, cache.config.warmup_steps) == (0.025, 5)
        assert easycache.preset_for(tiny_pipe).source.startswith("EasyCache paper")
    finally:
        easycache.remove_easycache(tiny_pipe)


def test_unsupported_pipeline_names_the_supported_ones():
    class SomeImagePipeline:
        def __init__(self):
            self.transformer = tiny_transformer()

        def __call__(self, **kwargs):
            return None

    with pytest.raises(TypeError, match="supported diffusers pipelines: HunyuanVideoPipeline"):
        easycache.apply_easycache(SomeImagePipeline())


def test_installed_cache_accepts_a_pipeline_and_the_wrapper_keeps_the_forward_signature(tiny_pipe):
    import inspect

    signature = inspect.signature(tiny_pipe.transformer.forward)
    cache = easycache.apply_easycache(tiny_pipe, EasyCacheConfig())
    try:
        assert easycache.installed_cache(tiny_pipe) is cache is easycache.installed_cache(tiny_pipe.transformer)
        assert tiny_pipe.transformer.forward.__name__ == "forward"
        assert inspect.signature(tiny_pipe.transformer.forward) == signature
    finally:
        easycache.remove_easycache(tiny_pipe)
    assert easycache.installed_cache(tiny_pipe) is None
