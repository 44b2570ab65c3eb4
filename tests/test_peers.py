"""The benchmark's peers written here from their released rules: NaviCache (bench/navicache.py) and
TeaCache (bench/teacache.py, its coefficients fitted by bench/calibrate_teacache.py).

NaviCache with R = 0 takes EasyCache's decisions call for call (its Kalman gain is then 1); with
its released R it does not always, and its rate is the filter restated here. TeaCache's decisions
are its rule replayed on the indicators it read; a skipped call runs no block; removal restores the
transformer. No timing here: speed is measured by the benchmark, side by side in one run.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import easycache
import navicache  # bench/ is on pytest's pythonpath (pytest.ini)
import teacache
from easycache import EasyCacheConfig
from easycache.demo import DEMO_FOLDERS, load_demo_pipeline
from needs import needs_diffusers
from test_rule import ToyDenoiser, euler, shifted_timesteps

WAN = needs_diffusers("WanTransformer3DModel", "the Wan demo (demo-wan)")
MODELS = [pytest.param(name, marks=WAN if name == "demo-wan" else (), id=name) for name in DEMO_FOLDERS]
STEPS = 30


@pytest.fixture(scope="module", params=MODELS)
def pipe(request, one_thread):
    return load_demo_pipeline("cpu", model=request.param)


def generate(pipe, prompt="a red circle moving left", seed=0, steps=STEPS):
    with torch.no_grad():
        return pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed)).frames[0]


def decisions(cache) -> list[tuple[int, str, bool]]:
    return [(r.step, r.branch, r.computed) for r in cache.records]


# ---------------------------------------------------------------------------------------------
# NaviCache


def run_toy(cache_of, x0, timesteps):
    """A toy flow-matching trajectory with a cache installed by ``cache_of(model)``."""
    model = ToyDenoiser()
    cache = cache_of(model)
    x = x0
    for s, t in enumerate(timesteps):
        x = euler(x, model(x, torch.tensor([t]))[0], s, timesteps)
    easycache.remove_easycache(model)
    return cache, x


def navicache_on(config, q, r):
    def install(model):
        from easycache.install import install_on_model

        cache = navicache.NaviCacheRule(config, q, r)
        install_on_model(model, config, cache)
        return cache

    return install


@pytest.mark.parametrize("thresh", [0.01, 0.025, 0.05, 0.1, 0.3])
@pytest.mark.parametrize("warmup,n,seed", [(5, 50, 0), (2, 20, 1), (3, 30, 2)])
def test_navicache_with_r_zero_is_easycache_call_for_call_toy(thresh, warmup, n, seed):
    timesteps = shifted_timesteps(n)
    x0 = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    config = EasyCacheConfig(thresh, warmup, n)
    easy, x_easy = run_toy(lambda m: easycache.apply_easycache(m, config), x0, timesteps)
    navi, x_navi = run_toy(navicache_on(config, navicache.PROCESS_NOISE, 0.0), x0, timesteps)
    assert decisions(navi) == decisions(easy)
    assert [r.k for r in navi.records] == [r.k for r in easy.records], "k_hat is the measured k exactly"
    assert torch.equal(x_navi, x_easy)


def test_navicache_as_released_departs_from_easycache_somewhere():
    """The R = 0 tests are not vacuous: with the released R the filtered rate changes decisions."""
    differ = 0
    for thresh in (0.01, 0.025, 0.05, 0.1, 0.3):
        for seed in range(3):
            timesteps = shifted_timesteps(50)
            x0 = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
            config = EasyCacheConfig(thresh, 5, 50)
            easy, _ = run_toy(lambda m: easycache.apply_easycache(m, config), x0, timesteps)
            navi, _ = run_toy(navicache_on(config, navicache.PROCESS_NOISE, navicache.MEASUREMENT_NOISE), x0, timesteps)
            differ += decisions(navi) != decisions(easy)
    assert differ > 0


def test_navicache_rate_is_the_kalman_filter_restated():
    """With every step computed (thresh 0) the measured rates z are EasyCache's k; NaviCache's rate
    is the scalar Kalman filter over them, written out here."""
    q, r, warmup = 0.05, 0.05, 5
    timesteps = shifted_timesteps(20)
    x0 = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    config = EasyCacheConfig(0.0, warmup, 20)
    easy, _ = run_toy(lambda m: easycache.apply_easycache(m, config), x0, timesteps)
    navi, _ = run_toy(navicache_on(config, q, r), x0, timesteps)
    measured = [(rec.step, rec.k) for rec in easy.records if rec.k is not None]
    expected, k_hat, p = [], None, None
    for step, z in measured:
        if step < warmup:
            k_hat, p = z, 1.0
        else:
            p = p + q
            gain = p / (p + r)
            k_hat = k_hat + gain * (z - k_hat)
            p = (1 - gain) * p
        expected.append(k_hat)
    assert [z for z, _ in navi.rates] == [z for _, z in measured]
    assert [k for _, k in navi.rates] == pytest.approx(expected, rel=1e-12)
    assert [rec.k for rec in navi.records if rec.k is not None] == pytest.approx(expected, rel=1e-12)
    assert expected[-1] != measured[-1][1], "the filter smooths: its estimate is not the last measurement"


@pytest.mark.parametrize("thresh", [0.05, 0.1])
def test_navicache_with_r_zero_takes_easycache_decisions_on_the_demos(pipe, thresh):
    """On both demo models (demo-wan: two guidance branches a step), several prompts and seeds:
    NaviCache with R = 0 computes and reuses exactly the calls EasyCache does, and makes the same
    video."""
    config = EasyCacheConfig(thresh=thresh, warmup_steps=5)
    for prompt, seed in (("a red circle moving left", 0), ("a blue square moving up on a gray background", 1)):
        easy = easycache.apply_easycache(pipe, config)
        try:
            video_easy = generate(pipe, prompt, seed)
            easy_calls = decisions(easy)
        finally:
            easycache.remove_easycache(pipe)
        navi = navicache.install(pipe, config, measurement_noise=0.0)
        try:
            video_navi = generate(pipe, prompt, seed)
        finally:
            navicache.remove(pipe)
        assert decisions(navi) == easy_calls
        assert any(not computed for _, _, computed in easy_calls), "some calls reused: the comparison bites"
        assert np.array_equal(video_navi, video_easy)


def test_navicache_install_and_remove_leave_the_pipeline_as_it_was(pipe):
    base = generate(pipe, steps=12)
    navicache.install(pipe, EasyCacheConfig(thresh=0.05, warmup_steps=5))
    cached = generate(pipe, steps=12)
    navicache.remove(pipe)
    assert easycache.installed_cache(pipe) is None and "forward" not in pipe.transformer.__dict__
    assert np.array_equal(generate(pipe, steps=12), base) and not np.array_equal(cached, base)


# ---------------------------------------------------------------------------------------------
# TeaCache


def teacache_on(pipe, threshold, coefficients=None):
    arch = teacache.architecture(pipe.transformer)
    first, last = teacache.FORCED[arch]
    if coefficients is None:
        coefficients, _ = teacache.coefficients_for(pipe_model(pipe), pipe_model(pipe), pipe.transformer)
    config = teacache.TeaCacheConfig(threshold, tuple(coefficients), first, last)
    return teacache.TeaCache(pipe.transformer, config, lambda: pipe._num_timesteps).install()


def pipe_model(pipe) -> str:
    return "demo-wan" if pipe.config.architecture == "wan" else "demo"


def test_teacache_threshold_zero_is_the_uncached_video(pipe):
    """rescale(x) = x and threshold 0: every call computes; the video is bit-identical to no cache."""
    base = generate(pipe)
    cache = teacache_on(pipe, 0.0, coefficients=(1.0, 0.0))
    try:
        video = generate(pipe)
    finally:
        cache.remove()
    assert np.array_equal(video, base) and all(c for _, _, c in cache.decisions)


class IndicatorTap:
    """What TeaCache's indicator reads, taken by an independent route: a forward hook on block 0's
    ``norm1`` (HunyuanVideo: TeaCache calls it itself on every call, before deciding) or a pre-hook
    on block 0 taking its ``temb`` argument (Wan: e0), the first reading of each transformer call."""

    def __init__(self, pipe):
        transformer = pipe.transformer
        self.values, self._fresh, self._block_input = [], False, None
        self._handles = [transformer.register_forward_pre_hook(lambda *_: setattr(self, "_fresh", True))]
        if teacache.architecture(transformer) == "wan":
            self._handles.append(transformer.blocks[0].register_forward_pre_hook(lambda m, args: self._take(args[2])))
        elif type(transformer.transformer_blocks[0]).__name__ == "DualStreamBlock":
            # The plain-torch demo (diffusers < 0.32): norm1 gives only (shift, scale, ...) of the
            # timestep; the modulated input is the block's input modulated by them.
            from easycache.demo.hunyuan_torch import modulate

            block = transformer.transformer_blocks[0]
            self._handles.append(block.register_forward_pre_hook(lambda m, args: setattr(self, "_block_input", args[0])))
            self._handles.append(block.norm1.register_forward_hook(
                lambda m, args, out: self._take(modulate(self._block_input, out[0], out[1]))))
        else:
            self._handles.append(transformer.transformer_blocks[0].norm1.register_forward_hook(
                lambda m, args, out: self._take(out[0] if isinstance(out, tuple) else out)))

    def _take(self, value):
        if self._fresh:
            self.values.append(value.detach().clone())
            self._fresh = False

    def remove(self):
        for h in self._handles:
            h.remove()


@pytest.mark.parametrize("slot", [3, 5])
def test_teacache_decisions_are_its_rule_on_the_indicators(pipe, slot):
    """Replaying TeaCache's rule (per call of a step: its own accumulator of the rescaled relative
    L1 change, the first and last steps forced) on the indicators taken independently gives the
    decisions the installed TeaCache took; the counter of the bench sees exactly those calls run
    the last block."""
    arch = teacache.architecture(pipe.transformer)
    first, last = teacache.FORCED[arch]
    threshold = teacache.THRESHOLDS[arch][slot]  # one of the bench's: HunyuanVideo 0.02 / 0.05, Wan 0.12 / 0.2
    coefficients = json.loads((teacache.RESULTS / pipe_model(pipe) / teacache.COEFFICIENTS_FILE).read_text())["coefficients"]
    last_linear = [m for m in teacache.blocks_of(pipe.transformer)[-1].modules() if isinstance(m, torch.nn.Linear)][-1]
    ran = []
    probe = last_linear.register_forward_pre_hook(lambda *_: ran.append(1))
    tap = IndicatorTap(pipe)
    cache = teacache_on(pipe, threshold, coefficients)
    try:
        generate(pipe)
    finally:
        cache.remove()
        tap.remove()
        probe.remove()
    calls_per_step = len(tap.values) // STEPS
    rescale, expected = np.poly1d(coefficients), []
    accumulated, previous = [0.0] * calls_per_step, [None] * calls_per_step
    for i, value in enumerate(tap.values):
        step, branch = divmod(i, calls_per_step)
        if step < first or step >= STEPS - last:
            compute, accumulated[branch] = True, 0.0
        else:
            accumulated[branch] += rescale(float((value - previous[branch]).abs().mean() / previous[branch].abs().mean()))
            compute = accumulated[branch] >= threshold
            if compute:
                accumulated[branch] = 0.0
        previous[branch] = value
        expected.append((step, branch, compute))
    assert cache.decisions == expected
    computed = sum(c for _, _, c in expected)
    assert len(ran) == computed, "the last block ran on the computed calls only"
    assert 0 < computed < len(expected), "the threshold reuses some calls and computes others"


def test_teacache_removal_restores_the_transformer(pipe):
    base = generate(pipe, steps=12)
    cache = teacache_on(pipe, 0.1)
    cached = generate(pipe, steps=12)
    cache.remove()
    assert not any("forward" in b.__dict__ for b in teacache.blocks_of(pipe.transformer))
    assert not pipe.transformer._forward_pre_hooks
    assert np.array_equal(generate(pipe, steps=12), base) and not np.array_equal(cached, base)


def test_recorder_pairs_every_consecutive_step_per_branch(pipe):
    with teacache.Recorder(pipe.transformer) as recorder:
        generate(pipe, steps=10, seed=100)
        generate(pipe, steps=10, seed=101)
    branches = 2 if pipe.config.guidance_scale > 1 else 1
    assert len(recorder.pairs) == 2 * 9 * branches, "no pair across two generations"
    assert [step for step, _, _ in recorder.pairs[: 9 * branches]] == [s for s in range(1, 10) for _ in range(branches)]
    assert all(x > 0 and y > 0 for _, x, y in recorder.pairs)
    assert "forward" not in teacache.blocks_of(pipe.transformer)[0].__dict__


def test_fit_recovers_a_polynomial_and_reports_r2():
    truth = np.poly1d([3.0, -2.0, 0.5, 0.1, 0.01])
    x = np.linspace(0.01, 0.4, 50)
    coefficients, r2 = teacache.fit(list(zip(x, truth(x))))
    assert coefficients == pytest.approx(list(truth.coefficients), rel=1e-6) and r2 == pytest.approx(1.0)
    noisy = truth(x) + np.random.default_rng(0).normal(0, 0.05, x.size)
    assert teacache.fit(list(zip(x, noisy)))[1] < 0.99


@pytest.mark.parametrize("argv, says", [
    (["--model", "demo", "demo-wan", "--out", "x.json"], "--out takes one --model"),
    (["--model", "owner/name"], "--model owner/name: pass --prompt-file"),
])
def test_calibration_refuses_before_loading_in_one_line(argv, says, capsys, monkeypatch):
    import calibrate_teacache
    import run_bench

    monkeypatch.setattr(run_bench, "load_model", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as exit_:
        calibrate_teacache.main(argv)
    assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_calibration_prompts_are_kept_apart_from_the_timed_ones():
    from calibrate_teacache import calibration_prompts
    from run_bench import DEFAULT_PROMPTS

    from easycache.demo.clips import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES

    prompts = calibration_prompts()
    assert len(set(prompts)) == 12 and not set(prompts) & set(DEFAULT_PROMPTS)
    text = " ".join(prompts)
    for word in (*COLOURS, *SHAPES, *DIRECTIONS, "gray", "white"):
        assert word in text, word
    assert sum("background" not in p for p in prompts) == 4, "a third on the default (black) background"
    assert set(BACKGROUNDS) == {"black", "gray", "white"}


@pytest.mark.parametrize("model", [pytest.param(m, marks=WAN if m == "demo-wan" else ()) for m in DEMO_FOLDERS])
def test_committed_fits_name_the_shipped_weights_and_how_they_were_made(model):
    fitted = json.loads((teacache.RESULTS / model / teacache.COEFFICIENTS_FILE).read_text())
    assert fitted["weights_sha256"] == teacache.weights_fingerprint(DEMO_FOLDERS[model]), (
        f"the demo's weights changed: python bench/calibrate_teacache.py --model {model} --overwrite")
    assert len(fitted["coefficients"]) == teacache.DEGREE + 1
    assert fitted["seeds"] == [100, 101] and fitted["steps"] == 50 and len(fitted["prompts"]) == 12
    assert fitted["command"].startswith("python bench/calibrate_teacache.py")


def test_coefficients_for_each_kind_of_model(tmp_path, monkeypatch, tiny_pipe):
    demo = load_demo_pipeline("cpu", model="demo")
    coefficients, source = teacache.coefficients_for("demo", "demo", demo.transformer)
    assert source.startswith("fitted on this model") and len(coefficients) == 5
    coefficients, source = teacache.coefficients_for("owner/name", "owner--name", tiny_pipe.transformer)
    assert coefficients == teacache.RELEASED["hunyuan"] and "released for HunyuanVideo" in source
    # a fit made on other weights is refused, naming the command that refits it
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / teacache.COEFFICIENTS_FILE).write_text(json.dumps({"coefficients": [1, 0], "weights_sha256": "0"}))
    monkeypatch.setattr(teacache, "RESULTS", tmp_path)
    coefficients, why = teacache.coefficients_for("demo", "demo", demo.transformer)
    assert coefficients is None and "calibrate_teacache.py --model demo --overwrite" in why
    # a demo-sized model that is no demo and has no fit: none, and how to fit them
    coefficients, why = teacache.coefficients_for("demo", "elsewhere", demo.transformer)
    assert coefficients is None and "calibrate_teacache.py --model demo" in why


def test_teacache_on_the_tiny_diffusers_hunyuanvideo_with_the_released_coefficients(tiny_pipe):
    """On a diffusers HunyuanVideo pipeline TeaCache runs with TeaCache4HunyuanVideo's polynomial:
    a huge threshold computes only the first and the last two steps."""
    kwargs = dict(prompt="a cat", num_inference_steps=8, height=16, width=16, num_frames=9, output_type="np")
    config = teacache.TeaCacheConfig(1e9, teacache.RELEASED["hunyuan"], *teacache.FORCED["hunyuan"])
    cache = teacache.TeaCache(tiny_pipe.transformer, config, lambda: tiny_pipe._num_timesteps).install()
    try:
        tiny_pipe(**kwargs, generator=torch.Generator().manual_seed(0))
    finally:
        cache.remove()
    assert [c for _, _, c in cache.decisions] == [True] + [False] * 5 + [True, True]


# ---------------------------------------------------------------------------------------------
# EasyCache's kalman_rate knob: NaviCache's filter, off by default.


def test_kalman_rate_is_off_by_default_and_costs_nothing_at_thresh_zero():
    assert EasyCacheConfig().kalman_rate is False
    timesteps = shifted_timesteps(20)
    x0 = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    plain, x_plain = run_toy(lambda m: easycache.apply_easycache(m, EasyCacheConfig(0.0, 5, 20)), x0, timesteps)
    kalman, x_kalman = run_toy(lambda m: easycache.apply_easycache(m, EasyCacheConfig(0.0, 5, 20, kalman_rate=True)),
                               x0, timesteps)
    assert torch.equal(x_plain, x_kalman) and all(r.computed for r in kalman.records)
    assert [r.k for r in kalman.records] != [r.k for r in plain.records], "the recorded k is the estimate"


@pytest.mark.parametrize("thresh", [0.025, 0.05, 0.1, 0.3])
@pytest.mark.parametrize("warmup,n,seed", [(5, 50, 0), (2, 20, 1)])
def test_kalman_rate_is_navicache_as_released_call_for_call(thresh, warmup, n, seed):
    timesteps = shifted_timesteps(n)
    x0 = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    config = EasyCacheConfig(thresh, warmup, n, kalman_rate=True)
    knob, x_knob = run_toy(lambda m: easycache.apply_easycache(m, config), x0, timesteps)
    navi, x_navi = run_toy(navicache_on(dataclasses.replace(config, kalman_rate=False), navicache.PROCESS_NOISE,
                                        navicache.MEASUREMENT_NOISE), x0, timesteps)
    assert decisions(knob) == decisions(navi)
    assert [r.k for r in knob.records] == [r.k for r in navi.records]
    assert torch.equal(x_knob, x_navi)


def test_kalman_rate_on_a_demo_with_guidance_and_extrapolation(pipe):
    """On both demos, with the extrapolated delta too: the knob's decisions are NaviCache's."""
    for extra in ({}, {"extrapolate": True}):
        config = EasyCacheConfig(thresh=0.05, warmup_steps=5, **extra)
        knob = easycache.apply_easycache(pipe, dataclasses.replace(config, kalman_rate=True))
        try:
            video_knob = generate(pipe)
        finally:
            easycache.remove_easycache(pipe)
        navi = navicache.install(pipe, config)
        try:
            video_navi = generate(pipe)
        finally:
            navicache.remove(pipe)
        assert decisions(knob) == decisions(navi) and np.array_equal(video_knob, video_navi)
