"""The caches a user could put on the same transformer, each at a few settings.

A method installs on a pipeline before a generation and is removed after it. A method that cannot
run here (package missing, model without classifier-free guidance...) is still listed, with the
reason, and never silently dropped.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import easycache
from easycache.cache import predicted_part
from easycache.versions import DIFFUSERS_FLOORS, shortfall


@dataclass
class Method:
    """One method at one setting. ``install(pipe)`` returns an object ``remove`` gets back.

    ``calls_bound_speedup``: every call the bench counts as computed (its transformer's last block
    ran) runs the whole transformer, so the speedup over no cache cannot exceed calls / computed:
    true of the methods that skip whole calls (EasyCache) or a call's later blocks (FirstBlockCache,
    MagCache, DBCache); not of those that skip work inside blocks (TaylorSeer,
    PyramidAttentionBroadcast, FasterCache), whose calls all count as computed.

    ``leaves_state``: removing it does not restore the transformer for every other method (cache-dit
    1.5's ``disable_cache`` leaves patches under which diffusers' FirstBlockCache fails and MagCache
    loses 10 dB on the demo, measured): the bench times such methods after all the others.

    ``needs_guidance``: works on the branches of classifier-free guidance; not run on a model that
    makes one call per step. ``batches_guidance``: runs the two branches as one batched call, which
    the pipeline must offer (``batch_guidance``, as the demo pipelines do).

    ``prepare(pipe)``: once the model is loaded, before anything is timed: why the method cannot run
    on it, or None once it has what it needs (TeaCache: its coefficients). ``details``: what the
    results should say about how the method was set up (filled by ``prepare``; the same dict for
    every setting of a method), written to results.json's ``meta.details`` and under the table.
    """

    name: str
    setting: str
    install: Callable[[Any], Any] | None
    remove: Callable[[Any, Any], None] | None
    unavailable: str | None = None
    calibrate: Callable[[Any, Callable[[], Any]], None] | None = field(default=None, repr=False)
    calls_bound_speedup: bool = False
    leaves_state: bool = False
    needs_guidance: bool = False
    batches_guidance: bool = False
    prepare: Callable[[Any], str | None] | None = field(default=None, repr=False)
    details: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.setting})" if self.setting else self.name


def baseline() -> Method:
    return Method("no cache", "", lambda pipe: None, lambda pipe, handle: None, calls_bound_speedup=True)


def easycache_methods(thresholds=(0.01, 0.025, 0.05, 0.1), warmup_steps: int = 5, name: str = "EasyCache",
                      **extra) -> list[Method]:
    """EasyCache at each threshold; ``extra`` sets the options beyond the rule (a curve of its own)."""
    def make(thresh):
        config = dict(thresh=thresh, warmup_steps=warmup_steps, **extra)
        return Method(
            name,
            f"thresh {thresh}",
            lambda pipe: easycache.apply_easycache(pipe, easycache.EasyCacheConfig(**config)),
            lambda pipe, handle: easycache.remove_easycache(pipe),
            calls_bound_speedup=True,  # skips whole calls
        )

    return [make(t) for t in thresholds]


def batched_guidance_baseline() -> Method:
    """No cache, with the two guidance branches in one batched call: what FasterCache runs on, so
    its row can be read against this one (what batching alone changes) as well as the baseline."""

    def install(pipe):
        pipe.batch_guidance = True

    def remove(pipe, handle):
        pipe.batch_guidance = False

    # Not calls-bound: a batched call does both branches' work, so calls / computed is no bound here.
    return Method("no cache, batched guidance", "", install, remove, needs_guidance=True, batches_guidance=True)


def _diffusers_hook(name: str, setting: str, make_config: Callable[[Any], Any],
                    calls_bound_speedup: bool = False, batches_guidance: bool = False) -> Method:
    """A diffusers cache hook (``transformer.enable_cache``), when this diffusers has it."""

    def install(pipe):
        if batches_guidance:
            pipe.batch_guidance = True
        pipe.transformer.enable_cache(make_config(pipe))

    def remove(pipe, handle):
        pipe.transformer.disable_cache()
        if batches_guidance:
            pipe.batch_guidance = False

    return Method(name, setting, install, remove, calls_bound_speedup=calls_bound_speedup,
                  needs_guidance=batches_guidance, batches_guidance=batches_guidance)


def predicted_latents(module, args, kwargs) -> list:
    """SeaCache's view of a call: the noisy latents the output predicts, one ``(C, T, H, W)`` per
    video. The input's first ``out_channels`` channels; an image-to-video model's (and the demos'
    coordinate) channels after them are conditioning, not the trajectory."""
    hidden_states = kwargs.get("hidden_states", args[0] if args else None)
    channels = module.config.out_channels or hidden_states.shape[1]
    return list(predicted_part(hidden_states, (1, channels)).unbind(0))


# Each diffusers cache by its config class; a diffusers without the class lists the method as unavailable.
DIFFUSERS_HOOKS = {"FirstBlockCache": "FirstBlockCacheConfig", "TaylorSeer": "TaylorSeerCacheConfig",
                   "MagCache": "MagCacheConfig", "SeaCache": "SeaCacheConfig",
                   "PyramidAttentionBroadcast": "PyramidAttentionBroadcastConfig", "FasterCache": "FasterCacheConfig"}


def diffusers_methods(num_steps: int) -> list[Method]:
    """diffusers' own caches, each where this diffusers has it (``easycache.versions.DIFFUSERS_FLOORS``:
    FirstBlockCache from 0.35, MagCache from 0.37, SeaCache from 0.41); the others listed with the reason."""
    import diffusers

    def config_class(method: str):  # None where this diffusers lacks it (the method is then unavailable)
        return getattr(diffusers, DIFFUSERS_HOOKS[method], None)

    FirstBlockCacheConfig = config_class("FirstBlockCache")
    TaylorSeerCacheConfig = config_class("TaylorSeer")
    MagCacheConfig = config_class("MagCache")
    SeaCacheConfig = config_class("SeaCache")
    PyramidAttentionBroadcastConfig = config_class("PyramidAttentionBroadcast")
    FasterCacheConfig = config_class("FasterCache")

    def timestep_of(pipe):
        return lambda: getattr(pipe, "current_timestep", None) or getattr(pipe, "_current_timestep", 0)

    methods = [
        _diffusers_hook("FirstBlockCache", f"threshold {t}", lambda pipe, t=t: FirstBlockCacheConfig(threshold=t),
                        calls_bound_speedup=True)  # a cached call runs its first block only
        for t in (0.05, 0.1, 0.2)
    ]
    methods += [
        _diffusers_hook("TaylorSeer", f"interval {i}", lambda pipe, i=i: TaylorSeerCacheConfig(
            cache_interval=i, disable_cache_before_step=3, max_order=1))
        for i in (2, 3, 5)
    ]
    methods += [_magcache(t, num_steps, MagCacheConfig) for t in (0.06, 0.12, 0.24)]
    # SeaCache (diffusers 0.42.1): the residual of the block stack reused while a spectrally filtered
    # input changes little; its own defaults otherwise (first and last step computed, at most 2
    # reuses in a row, first-order residual extrapolation).
    methods += [
        _diffusers_hook("SeaCache", f"threshold {t}", lambda pipe, t=t: SeaCacheConfig(
            threshold=t, raw_vision_callback=predicted_latents), calls_bound_speedup=True)
        for t in (0.2, 0.35, 0.5)
    ]
    methods += [
        _diffusers_hook("PyramidAttentionBroadcast", f"skip {r}", lambda pipe, r=r: PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=r, spatial_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=timestep_of(pipe)))
        for r in (2, 3)
    ]
    # FasterCache approximates the unconditional half of a batched guidance call from the conditional
    # half (and reuses attention); it needs real guidance, batched. Its defaults, at two reuse ranges.
    methods += [
        _diffusers_hook("FasterCache", f"uncond every {k}", lambda pipe, k=k: FasterCacheConfig(
            unconditional_batch_skip_range=k, current_timestep_callback=timestep_of(pipe)),
            batches_guidance=True)
        for k in (2, 5)
    ]
    for method in methods:
        method.unavailable = shortfall(method.name, "diffusers", DIFFUSERS_FLOORS[DIFFUSERS_HOOKS[method.name]])
    return methods


class _RatiosFromLog(logging.Handler):
    """diffusers' MagCache reports its calibration through its logger; keep the last ratios."""

    def __init__(self):
        super().__init__()
        self.ratios = None

    def emit(self, record):
        found = re.search(r"MagCache Calibration Results: (\[.*\])", record.getMessage())
        if found:
            self.ratios = [float(v) for v in found.group(1).strip("[]").split(",")]


def _magcache(threshold: float, num_steps: int, MagCacheConfig) -> Method:
    """MagCache, calibrated on one run of the same model (its magnitude ratios), then applied."""
    ratios: dict[str, list[float]] = {}

    def calibrate(pipe, generate_once):
        if "ratios" in ratios:
            return
        logger = logging.getLogger("diffusers.hooks.mag_cache")
        catcher, level = _RatiosFromLog(), logger.level
        logger.addHandler(catcher)
        logger.setLevel(logging.INFO)
        try:
            pipe.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=num_steps))
            generate_once()
        finally:
            pipe.transformer.disable_cache()
            logger.removeHandler(catcher)
            logger.setLevel(level)
        if not catcher.ratios:
            raise RuntimeError("MagCache calibration reported no ratios")
        ratios["ratios"] = catcher.ratios

    method = _diffusers_hook("MagCache", f"threshold {threshold}", lambda pipe: MagCacheConfig(
        threshold=threshold, num_inference_steps=num_steps, mag_ratios=ratios["ratios"]),
        calls_bound_speedup=True)  # a skipped call skips its blocks
    method.calibrate = calibrate
    return method


def cache_dit_methods() -> list[Method]:
    if importlib.util.find_spec("cache_dit") is None:
        return [Method("cache-dit DBCache", "", None, None, "the cache-dit package is not installed "
                       "(pip install cache-dit)")]

    def make(threshold):
        def install(pipe):
            import cache_dit
            from cache_dit import DBCacheConfig

            # DBCache's default F8B0 needs more than 8 blocks; small models get F1B0 (first block probes).
            blocks = sum(len(getattr(pipe.transformer, name, [])) for name in ("transformer_blocks", "blocks"))
            front = 8 if blocks > 8 else 1
            cache_dit.enable_cache(pipe.transformer, cache_config=DBCacheConfig(
                residual_diff_threshold=threshold, Fn_compute_blocks=front, Bn_compute_blocks=0))

        def remove(pipe, handle):
            import cache_dit

            cache_dit.disable_cache(pipe.transformer)

        return Method("cache-dit DBCache", f"threshold {threshold}", install, remove, leaves_state=True,
                      calls_bound_speedup=True)  # a cached call runs its first Fn blocks only

    return [make(t) for t in (0.08, 0.12, 0.24)]


def teacache_methods(model: str | None, folder: str | None, num_steps: int) -> list[Method]:
    """TeaCache (``bench/teacache.py``) on HunyuanVideo's and Wan's transformers, with the model's
    coefficients (``teacache.coefficients_for``: a demo's fit, or the released ones), at the
    thresholds of its architecture (``teacache.THRESHOLDS``: the released presets and a sweep around
    them; known once the model is loaded, so each row's setting is filled in by ``prepare``)."""
    import teacache

    details: dict = {}
    chosen: dict = {}

    def choose(pipe) -> str | None:
        """The model's coefficients and steps always computed, once for every setting."""
        if "why" in chosen:
            return chosen["why"]
        arch = teacache.architecture(pipe.transformer)
        if arch is None:
            chosen["why"] = (f"TeaCache here reads HunyuanVideo's and Wan's first block; "
                             f"{type(pipe.transformer).__name__} is neither")
            return chosen["why"]
        coefficients, source = teacache.coefficients_for(model or "", folder or "", pipe.transformer)
        chosen["why"] = None if coefficients is not None else source
        if coefficients is not None:
            first, last = teacache.FORCED[arch]
            chosen.update(arch=arch, coefficients=coefficients, first=first, last=last)
            fitted = teacache.RESULTS / (folder or "") / teacache.COEFFICIENTS_FILE
            fit = json.loads(fitted.read_text()) if source.startswith("fitted") else {}
            details.update({
                "coefficients": list(coefficients), "source": source, "indicator": teacache.INDICATORS[arch],
                "steps_always_computed": f"the first {first} and the last {last}",
                "thresholds": f"{list(teacache.THRESHOLDS[arch])}, the released presets {list(teacache.PRESETS[arch])} "
                              "among them",
            })
            if fit:
                details["fit"] = {k: fit[k] for k in ("r2", "points", "seeds", "steps", "steps_fitted") if k in fit}
                details["calibration_prompts"] = f"{len(fit['prompts'])}, none of them timed"
        return chosen["why"]

    def make(slot: int) -> Method:
        def prepare(pipe):
            why = choose(pipe)
            if why is None:
                method.setting = f"threshold {teacache.THRESHOLDS[chosen['arch']][slot]}"
            return why

        def install(pipe):
            config = teacache.TeaCacheConfig(teacache.THRESHOLDS[chosen["arch"]][slot], tuple(chosen["coefficients"]),
                                             chosen["first"], chosen["last"])
            return teacache.TeaCache(pipe.transformer, config,
                                     lambda: getattr(pipe, "_num_timesteps", None) or num_steps).install()

        method = Method("TeaCache", f"threshold #{slot + 1}", install, lambda pipe, handle: handle.remove(),
                        calls_bound_speedup=True,  # a skipped call runs none of the blocks
                        prepare=prepare, details=details)
        return method

    return [make(k) for k in range(teacache.SWEEP_LENGTH)]


def navicache_methods(thresholds=(0.01, 0.025, 0.05, 0.1)) -> list[Method]:
    """NaviCache as released (``bench/navicache.py``): the bench's EasyCache thresholds and the
    release's HunyuanVideo presets, its own warm-up (5 steps) and noises (Q = R = 0.05)."""
    import navicache

    details = {"rule": "as released (NaviCache4HunyuanVideo): EasyCache's rule with k replaced by a scalar Kalman "
                       f"estimate, Q = {navicache.PROCESS_NOISE}, R = {navicache.MEASUREMENT_NOISE}, "
                       f"{navicache.WARMUP_STEPS} warm-up steps, the last step computed",
               "presets": list(navicache.PRESETS)}

    def make(thresh):
        config = easycache.EasyCacheConfig(thresh=thresh, warmup_steps=navicache.WARMUP_STEPS)
        return Method("NaviCache (as released)", f"thresh {thresh}", lambda pipe: navicache.install(pipe, config),
                      navicache.remove, calls_bound_speedup=True, details=details)  # skips whole calls

    return [make(t) for t in sorted(set(thresholds) | set(navicache.PRESETS))]


def all_methods(num_steps: int, thresholds=(0.01, 0.025, 0.05, 0.1), warmup_steps: int = 5,
                model: str | None = None, folder: str | None = None) -> list[Method]:
    """Every method for ``model`` (its --model name; ``folder``: its results folder's name, where a
    TeaCache fit of it is looked for)."""
    return [
        baseline(),
        batched_guidance_baseline(),
        *easycache_methods(thresholds, warmup_steps),
        *easycache_methods(thresholds, warmup_steps, "EasyCache + cap 2 reuses", max_consecutive_reuse=2),
        *easycache_methods(thresholds, warmup_steps, "EasyCache + extrapolated delta", extrapolate=True),
        # kalman_rate alone is NaviCache as released, call for call (tests/test_peers.py): its rows are NaviCache's
        *easycache_methods(thresholds, warmup_steps, "EasyCache + extrapolated delta + Kalman k", extrapolate=True,
                           kalman_rate=True),
        *diffusers_methods(num_steps),
        *cache_dit_methods(),
        *teacache_methods(model, folder, num_steps),
        *navicache_methods(thresholds),
    ]
