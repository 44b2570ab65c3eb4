"""EasyCache on each supported diffusers pipeline, end to end, with tiny random models built offline.

For every model: ``thresh=0`` is bit-identical to no cache and computes every call; a threshold
high enough for the tiny random model skips steps while keeping warmup and the last step computed
and the output finite and of the same shape; classifier-free guidance as two calls takes one
decision per step; Wan 2.2's two experts share one step counter. The calls computed at the
model's preset and at the skipping threshold are printed (``pytest -s``).
"""

from __future__ import annotations

import functools

import pytest
import torch

import easycache
from easycache import EasyCacheConfig
from tiny_models import BUILDERS

# Threshold that skips steps on each tiny random model, chosen from measurement: random tiny
# transformers have large transformation rates (k of 0.5 to 6), so a step's predicted change
# k * |dx| / |v| is 0.01 to 0.5 here, far above what the rule sees on trained weights.
SKIP_THRESH = {
    "HunyuanVideoPipeline": 0.3,
    "HunyuanVideoImageToVideoPipeline": 0.5,
    "HunyuanVideo15Pipeline": 0.3,
    "WanPipeline-2.1": 0.5,
    "WanImageToVideoPipeline-2.1": 0.6,
    "WanPipeline-2.2-two-experts": 0.5,
    "WanImageToVideoPipeline-2.2-two-experts": 0.6,
    "WanPipeline-2.2-expand-timesteps": 0.5,
    "WanImageToVideoPipeline-2.2-expand-timesteps": 0.3,
    "CogVideoXPipeline": 1.5,
    "CogVideoXImageToVideoPipeline": 1.5,
    "LTXPipeline": 0.5,
    "MochiPipeline": 0.3,
    "FluxPipeline": 0.3,
}
SKIP_WARMUP = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models' tensors are a few hundred numbers: one intra-op thread is several times
    faster than two on a shared CPU (and the count is restored for the other test modules)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def case_for(name):
    return BUILDERS[name]()


def run_cached(case, config=None):
    """One generation with the cache installed (the preset when ``config`` is None); afterwards
    the cache is removed from every expert."""
    handle = easycache.apply_easycache(case.pipe, *([config] if config is not None else []))
    try:
        out = case()
        return out, handle.summary(), list(handle.records)
    finally:
        easycache.remove_easycache(case.pipe)
        for attr in case.experts:
            expert = getattr(case.pipe, attr)
            assert easycache.installed_cache(expert) is None and "forward" not in expert.__dict__


def by_step(records):
    steps = {}
    for r in records:
        steps.setdefault(r.step, []).append(r)
    return steps


def count_calls(case):
    """Forward pre-hooks count every call of each expert (computed or reused: the cache wraps
    ``forward``, inside ``__call__``)."""
    counts = {attr: 0 for attr in case.experts}
    handles = []
    for attr in case.experts:
        def hook(module, args, attr=attr):
            counts[attr] += 1
        handles.append(getattr(case.pipe, attr).register_forward_pre_hook(hook))
    return counts, handles


@pytest.mark.parametrize("name", list(BUILDERS))
def test_model(name):
    case = case_for(name)
    steps, per_step = case.steps, case.calls_per_step
    baseline = case()
    assert torch.isfinite(baseline).all()

    # thresh 0: every call computed, bit-identical to no cache.
    counts, hooks = count_calls(case)
    try:
        exact, summary, records = run_cached(case, EasyCacheConfig(thresh=0.0))
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(exact, baseline), f"{name}: thresh=0 must be bit-identical to no cache"
    assert summary["calls"] == summary["computed"] == steps * per_step
    assert all(r.computed for r in records)
    assert sorted(by_step(records)) == list(range(steps)), "one record step per denoising step"
    assert all(c > 0 for c in counts.values()), f"every expert is called: {counts}"
    assert sum(counts.values()) == steps * per_step

    # A threshold the tiny random model crosses: some steps reused. Then, with the same
    # installation, the same call again (no state leaks) and a call with fewer steps.
    thresh = SKIP_THRESH[name]
    handle = easycache.apply_easycache(case.pipe, EasyCacheConfig(thresh=thresh, warmup_steps=SKIP_WARMUP))
    try:
        skipped = case()
        summary, records = handle.summary(), list(handle.records)
        again = case()
        again_records = list(handle.records)
        case(num_inference_steps=steps - 2)
        short_records = list(handle.records)
    finally:
        easycache.remove_easycache(case.pipe)
    steps_records = by_step(records)
    assert summary["calls"] == steps * per_step and summary["reused"] > 0, f"{name}: thresh {thresh} skips nothing"
    assert summary["speedup"] > 1.0
    assert skipped.shape == baseline.shape and torch.isfinite(skipped).all()
    assert not torch.equal(skipped, baseline)
    assert torch.equal(again, skipped) and [(r.step, r.branch, r.computed) for r in again_records] == [
        (r.step, r.branch, r.computed) for r in records
    ], "a second generation repeats the first"
    assert len(short_records) == (steps - 2) * per_step and sorted(by_step(short_records)) == list(range(steps - 2))
    assert all(r.computed for r in by_step(short_records)[steps - 3]), "each call brings its own step count"
    assert sorted(steps_records) == list(range(steps))
    assert all(r.computed for s in range(SKIP_WARMUP) for r in steps_records[s]), "warmup steps computed"
    assert all(r.computed for r in steps_records[steps - 1]), "last step computed"
    if per_step > 1:
        assert all(len(rs) == per_step for rs in steps_records.values())
        assert all(len({r.computed for r in rs}) == 1 for rs in steps_records.values()), "one decision per step"
        assert all(len({r.timestep for r in rs}) == 1 for rs in steps_records.values())
    if case.branches:
        assert all([r.branch for r in rs] == list(case.branches) for rs in steps_records.values())
    if len(case.experts) > 1:
        # The low-noise expert's first two steps compute: its rate is measured anew.
        boundary = case.pipe.config.boundary_ratio * case.pipe.scheduler.config.num_train_timesteps
        switch = min(s for s, rs in steps_records.items() if rs[0].timestep < boundary)
        assert 0 < switch < steps - 1
        assert all(r.computed for s in (switch, switch + 1) for r in steps_records[s]), "expert switch recomputes"

    # The model's preset, for the record.
    handle = easycache.apply_easycache(case.pipe)
    try:
        case()
        preset_summary, preset_records, preset_config = handle.summary(), list(handle.records), handle.config
    finally:
        easycache.remove_easycache(case.pipe)
    expected = easycache.config_for(case.pipe)
    assert (preset_config.thresh, preset_config.warmup_steps) == (expected.thresh, expected.warmup_steps)
    assert preset_summary["calls"] == steps * per_step and preset_records[-1].computed
    print(
        f"\n{name}: preset {preset_summary['computed']}/{preset_summary['calls']} computed; "
        f"thresh {thresh} (warmup {SKIP_WARMUP}): {summary['computed']}/{summary['calls']} computed"
    )


def test_per_token_timesteps_identify_the_step():
    """Wan 2.2 TI2V as image-to-video: the first frame's tokens carry timestep 0, the others the
    step's; the step is identified by the largest."""
    case = case_for("WanImageToVideoPipeline-2.2-expand-timesteps")
    _, _, records = run_cached(case, EasyCacheConfig(thresh=0.0))
    timesteps = [rs[0].timestep for _, rs in sorted(by_step(records).items())]
    expected = [float(t) for t in case.pipe.scheduler.timesteps]
    assert timesteps == pytest.approx(expected) and len(timesteps) == case.steps


@pytest.mark.parametrize("name", list(BUILDERS))
def test_preset_and_support(name):
    case = case_for(name)
    family = name.split("-")[0]
    assert family in easycache.SUPPORTED_PIPELINES
    preset = easycache.preset_for(case.pipe)
    assert preset.thresh > 0 and preset.warmup_steps >= 1
    config = easycache.config_for(case.pipe)
    assert isinstance(config, EasyCacheConfig)
    assert (config.thresh, config.warmup_steps) == (preset.thresh, preset.warmup_steps)


def test_unsupported_pipeline_is_a_type_error_naming_the_supported():
    from diffusers import DiffusionPipeline

    class MyVideoPipeline(DiffusionPipeline):
        def __init__(self, transformer):
            super().__init__()
            self.register_modules(transformer=transformer)

        def __call__(self, x):
            return self.transformer(x)

    pipe = MyVideoPipeline(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="WanPipeline"):
        easycache.apply_easycache(pipe)
    with pytest.raises(TypeError, match="MyVideoPipeline"):
        easycache.preset_for(pipe)
    assert "forward" not in pipe.transformer.__dict__, "nothing installed after the error"


def test_wan22_with_only_the_low_noise_expert():
    """diffusers allows a Wan 2.2 pipeline whose ``transformer`` is None (boundary_ratio 1.0)."""
    from diffusers import WanPipeline

    import tiny_models

    pipe = WanPipeline(transformer=None, transformer_2=tiny_models._wan_transformer(), boundary_ratio=1.0,
                       vae=None, scheduler=tiny_models._wan_scheduler(), text_encoder=None, tokenizer=None)
    cache = easycache.apply_easycache(pipe)
    assert easycache.installed_cache(pipe.transformer_2) is cache
    easycache.remove_easycache(pipe)
    assert easycache.installed_cache(pipe.transformer_2) is None
