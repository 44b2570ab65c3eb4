"""NaviCache as released for HunyuanVideo (NaviCache4HunyuanVideo/navicache_sample_video.py), for the
benchmark: EasyCache's rule with the transformation rate ``k`` replaced by a scalar Kalman estimate.

Written from the released rule, not its code. On each computed call that measures a rate ``z``
(EasyCache's ``k = |v - v_full| / |x - x_full|``):

- during the warm-up (``step < warmup_steps``): ``k_hat = z``, ``P = 1``;
- after it: ``P += Q``; ``K = P / (P + R)``; ``k_hat += K * (z - k_hat)``; ``P *= 1 - K``;

and the decision accumulates ``k_hat * |x - x_prev| / |v_full|`` where EasyCache accumulates
``k * ...``. The release's defaults are ``Q = R = 0.05``, 5 warm-up steps, and for HunyuanVideo
thresholds 0.040 / 0.035 / 0.025; the first ``k_hat`` is 0 with ``P = 1`` (reached only with fewer
than 2 warm-up steps). With ``R = 0`` the gain is 1 and ``k_hat = z``: EasyCache's decisions exactly
(``tests/test_peers.py`` holds it call for call). The release's ``+ 1e-8`` guards on the two
denominators are left out: where EasyCache's rate has a zero denominator the step computes, as in
EasyCache.

Everything else (warm-up and last step forced, the reuse ``x + delta``, one decision a step for both
guidance branches) is EasyCache's own code, installed on the transformer as ``apply_easycache``
installs it.
"""

from __future__ import annotations

from typing import Callable

import torch

from easycache.cache import EasyCache, EasyCacheConfig
from easycache.install import install_on_model, uninstall_from_model

PROCESS_NOISE = 0.05  # Q, as released
MEASUREMENT_NOISE = 0.05  # R, as released
WARMUP_STEPS = 5  # the release's default (its "align steps")
PRESETS = (0.025, 0.035, 0.04)  # the release's HunyuanVideo thresholds


class NaviCacheRule(EasyCache):
    """EasyCache whose rate is the Kalman estimate ``k_hat`` of the measured rates (see the module
    doc). ``rates`` lists the (measured z, k_hat) pairs of the current generation."""

    def __init__(self, config: EasyCacheConfig, process_noise: float = PROCESS_NOISE,
                 measurement_noise: float = MEASUREMENT_NOISE):
        if not (process_noise >= 0 and measurement_noise >= 0):
            raise ValueError("NaviCache's noise variances Q and R must be >= 0")
        super().__init__(config)
        self.process_noise, self.measurement_noise = process_noise, measurement_noise
        self._start_filter()

    def _start_filter(self) -> None:
        self.k_hat, self.variance, self.rates = 0.0, 1.0, []

    def reset(self) -> None:
        super().reset()
        self._start_filter()

    def _restart_rate(self, owner) -> None:
        super()._restart_rate(owner)
        self._start_filter()

    def _learn(self, x: torch.Tensor, v: torch.Tensor, slot, is_decider: bool) -> None:
        state = self._state
        measures = (is_decider and state.v_full is not None and state.x_full is not None
                    and state.v_full.shape == v.shape)
        super()._learn(x, v, slot, is_decider)
        if not measures or state.k is None:  # no rate measured (or a zero denominator): EasyCache's
            return
        z = state.k
        if state.step < self.config.warmup_steps:
            self.k_hat, self.variance = z, 1.0
        else:
            self.variance += self.process_noise
            total = self.variance + self.measurement_noise
            gain = self.variance / total if total > 0 else 1.0
            self.k_hat = (1.0 - gain) * self.k_hat + gain * z  # k_hat += K (z - k_hat); exactly z at K = 1
            self.variance *= 1.0 - gain
        self.rates.append((z, self.k_hat))
        state.k = self.k_hat


def install(pipe, config: EasyCacheConfig, process_noise: float = PROCESS_NOISE,
            measurement_noise: float = MEASUREMENT_NOISE) -> NaviCacheRule:
    """NaviCache on ``pipe.transformer``; each generation counts the pipeline's own steps."""
    cache = NaviCacheRule(config, process_noise, measurement_noise)
    cache.num_steps_source = _steps_of(pipe)
    install_on_model(pipe.transformer, config, cache)
    return cache


def remove(pipe, handle=None) -> None:
    uninstall_from_model(pipe.transformer)


def _steps_of(pipe) -> Callable[[], int | None]:
    return lambda: getattr(pipe, "_num_timesteps", None)
