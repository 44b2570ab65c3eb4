"""The rule of DESIGN.md against an independent, plain restatement of it, on sampler trajectories."""

import math

import pytest
import torch

import easycache
from easycache import EasyCacheConfig


def size(a):
    return a.abs().float().mean().item()


def reference_rule(model, x, timesteps, thresh, warmup):
    """DESIGN.md's rule written out as one loop, with an Euler flow-matching sampler around it.

    Returns the list of (computed, v) per step and the final latent.
    """
    n = len(timesteps)
    x_prev = x_full = v_full = delta = k = None
    error = 0.0
    steps = []
    for s, t in enumerate(timesteps):
        if s < warmup or s == n - 1:
            compute, error = True, 0.0
        elif k is None:
            compute = True
        else:
            error += k * size(x - x_prev) / size(v_full)
            compute = not error < thresh
            if compute:
                error = 0.0
        x_prev = x
        if compute:
            v = model(x, t)
            if v_full is not None:
                den = size(x - x_full)
                k = size(v - v_full) / den if den > 0 else None
                k = k if k is not None and math.isfinite(k) else None
            delta, x_full, v_full = v - x, x, v
        else:
            v = x + delta
        steps.append((compute, v))
        x = euler(x, v, s, timesteps)
    return steps, x


def euler(x, v, s, timesteps):
    t_next = timesteps[s + 1] if s + 1 < len(timesteps) else 0.0
    return x + (t_next - timesteps[s]) / 1000.0 * v


class ToyDenoiser(torch.nn.Module):
    """A smooth, deterministic v = F(x, t) whose rate of change varies over the trajectory."""

    def __init__(self, channels=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.nn.Parameter(torch.randn(channels, channels, generator=g) / channels**0.5)
        self.bias = torch.nn.Parameter(torch.randn(channels, generator=g))
        self.calls = 0

    def forward(self, hidden_states, timestep, return_dict=False):
        self.calls += 1
        t = timestep / 1000.0
        h = torch.einsum("bc...,cd->bd...", hidden_states, self.mix)
        v = torch.tanh(h) * (1 + t) + self.bias.view(1, -1, *([1] * (hidden_states.dim() - 2))) * t**2
        return {"sample": v} if return_dict else (v,)


def run_cached(model, x, timesteps, cfg):
    cache = easycache.apply_easycache(model, cfg)
    steps = []
    for s, t in enumerate(timesteps):
        v = model(x, torch.tensor([t]))[0]
        steps.append(v)
        x = euler(x, v, s, timesteps)
    easycache.remove_easycache(model)
    return cache, steps, x


def shifted_timesteps(n, shift=7.0):
    sigmas = torch.linspace(1.0, 1.0 / n, n)
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return [float(s) * 1000 for s in sigmas]


@pytest.mark.parametrize("thresh", [0.0, 0.01, 0.025, 0.05, 0.1, 0.3])
@pytest.mark.parametrize("warmup,n,seed", [(5, 50, 0), (2, 20, 1), (0, 12, 2)])
def test_matches_plain_restatement(thresh, warmup, n, seed):
    timesteps = shifted_timesteps(n)
    model = ToyDenoiser(seed=seed)
    x0 = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    expected, x_ref = reference_rule(lambda x, t: model(x, torch.tensor([t]))[0], x0, timesteps, thresh, warmup)

    model.calls = 0
    cache, outputs, x_out = run_cached(model, x0, timesteps, EasyCacheConfig(thresh, warmup, n))

    assert [r.computed for r in cache.records] == [c for c, _ in expected]
    assert model.calls == sum(c for c, _ in expected)
    for (_, v_ref), v in zip(expected, outputs):
        torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(x_out, x_ref, rtol=0, atol=1e-5)


def test_thresholds_that_skip_do_skip():
    """The comparison above is not vacuous: the toy trajectory reuses steps at usual thresholds."""
    timesteps = shifted_timesteps(50)
    x0 = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    cache, _, _ = run_cached(ToyDenoiser(), x0, timesteps, EasyCacheConfig(0.05, 5, 50))
    summary = cache.summary()
    assert 0 < summary["reused"] < summary["calls"] - 6


def test_thresh_zero_is_bit_identical_to_no_cache():
    timesteps = shifted_timesteps(20)
    x0 = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    model = ToyDenoiser()
    plain = x0
    for s, t in enumerate(timesteps):
        plain = euler(plain, model(plain, torch.tensor([t]))[0], s, timesteps)
    cache, _, cached = run_cached(model, x0, timesteps, EasyCacheConfig(0.0, 5, 20))
    assert torch.equal(plain, cached)
    assert all(r.computed for r in cache.records)


def test_warmup_and_last_step_always_computed():
    timesteps = shifted_timesteps(30)
    x0 = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    cache, _, _ = run_cached(ToyDenoiser(), x0, timesteps, EasyCacheConfig(10.0, 4, 30))
    computed = [r.computed for r in cache.records]
    assert computed[:4] == [True] * 4 and computed[-1]
    assert not any(computed[5:-1]), "a huge threshold reuses every step the rule allows"


def test_zero_input_change_means_compute_not_division_by_zero():
    model = ToyDenoiser()
    cache = easycache.apply_easycache(model, EasyCacheConfig(0.5, 1, 6))
    x = torch.ones(1, 4, 2, 2, 2)
    for t in shifted_timesteps(6):
        v = model(x, torch.tensor([t]))[0]
        assert torch.isfinite(v).all()
    # identical inputs: |x - x_full| = 0, so k is never usable and every step computes
    assert all(r.computed for r in cache.records) and all(r.k is None for r in cache.records)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="thresh"):
        EasyCacheConfig(thresh=-1)
    with pytest.raises(ValueError, match="warmup_steps"):
        EasyCacheConfig(warmup_steps=1.5)
    with pytest.raises(ValueError, match="num_steps"):
        EasyCacheConfig(num_steps=0)


class FrameMajorDenoiser(ToyDenoiser):
    """CogVideoX-style latents (B, F, C, H, W) with image channels appended along dim 2."""

    def forward(self, hidden_states, timestep, return_dict=False):
        latent = hidden_states[:, :, :4].transpose(1, 2)
        return (super().forward(latent, timestep)[0].transpose(1, 2),)


def test_extra_input_channels_on_any_dimension():
    model = FrameMajorDenoiser()
    cache = easycache.apply_easycache(model, EasyCacheConfig(100.0, 2, 5))
    latent = torch.randn(1, 3, 4, 2, 2, generator=torch.Generator().manual_seed(5))
    image = torch.randn(1, 3, 4, 2, 2, generator=torch.Generator().manual_seed(6))
    for t in shifted_timesteps(5):
        v = model(torch.cat([latent, image], 2), torch.tensor([t]))[0]
        assert v.shape == latent.shape
        if cache.records[-1].computed:
            delta = v - latent
        else:
            torch.testing.assert_close(v, latent + delta)
        latent = latent - 0.1 * v
    assert [r.computed for r in cache.records] == [True, True, False, False, True]


class PerTokenTimestepDenoiser(ToyDenoiser):
    def forward(self, hidden_states, timestep, return_dict=False):
        return super().forward(hidden_states, timestep.amax(dim=-1), return_dict)


def test_per_token_timesteps_identify_the_step_by_their_maximum():
    model = PerTokenTimestepDenoiser()
    cache = easycache.apply_easycache(model, EasyCacheConfig(0.0, 1, 4))
    x = torch.randn(1, 4, 2, 2, 2)
    for t in (1000.0, 750.0, 500.0, 250.0):
        model(x, torch.tensor([[0.0, t, t]]))  # a conditioning token at timestep 0
    assert [r.timestep for r in cache.records] == [1000.0, 750.0, 500.0, 250.0]
    assert [r.step for r in cache.records] == [0, 1, 2, 3]


def test_two_experts_share_one_step_counter_and_restart_the_rate():
    """Wan 2.2: the high-noise expert runs the first steps, the low-noise expert the rest."""
    high, low = ToyDenoiser(seed=1), ToyDenoiser(seed=2)
    cache = easycache.EasyCache(EasyCacheConfig(100.0, 2, 10))
    from easycache.install import install_on_model

    install_on_model(high, cache.config, cache, owner="transformer")
    install_on_model(low, cache.config, cache, owner="transformer_2")
    x = torch.randn(1, 4, 2, 2, 2, generator=torch.Generator().manual_seed(7))
    timesteps = shifted_timesteps(10)
    for s, t in enumerate(timesteps):
        model = high if s < 5 else low
        x = euler(x, model(x, torch.tensor([t]))[0], s, timesteps)
    computed = [r.computed for r in cache.records]
    # warmup 0-1, reuse 2-4 on the high expert; at the switch (5) k is unknown: compute 5 and 6
    # to measure it, reuse 7-8, and the generation's last step (9) is computed.
    assert computed == [True, True, False, False, False, True, True, False, False, True]
    assert [r.step for r in cache.records] == list(range(10))


def test_cap_on_consecutive_reuses():
    timesteps = shifted_timesteps(12)
    x0 = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(8))
    cache, _, _ = run_cached(ToyDenoiser(), x0, timesteps, EasyCacheConfig(100.0, 2, 12, max_consecutive_reuse=2))
    assert [r.computed for r in cache.records] == [True, True, False, False, True, False, False, True,
                                                   False, False, True, True]


class DriftingDenoiser(torch.nn.Module):
    """v = x + c * t: its output-minus-input moves linearly with the timestep."""

    def forward(self, hidden_states, timestep):
        return (hidden_states + 0.01 * timestep.view(-1, 1, 1, 1, 1),)


def test_first_order_extrapolation_of_the_delta():
    timesteps = [1000.0 - 100.0 * s for s in range(8)]  # evenly spaced: the delta is linear in the step
    for extrapolate, exact in ((False, False), (True, True)):
        x = torch.randn(1, 2, 1, 2, 2, generator=torch.Generator().manual_seed(9))
        model = DriftingDenoiser()
        cache = easycache.apply_easycache(model, EasyCacheConfig(100.0, 3, 8, extrapolate=extrapolate))
        for t in timesteps:
            v = model(x, torch.tensor([t]))[0]
            truth = x + 0.01 * t
            if not cache.records[-1].computed:
                assert torch.allclose(v, truth, atol=1e-5) == exact
            x = x - 0.05 * v
        easycache.remove_easycache(model)
        assert sum(not r.computed for r in cache.records) == 4
