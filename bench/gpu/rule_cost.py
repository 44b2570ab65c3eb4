"""Part a: what the rule costs and saves at real size.

A *computed* call runs the whole transformer; a *reused* call is EasyCache's skipped step: the rule's
bookkeeping (one mean absolute difference of the latent) and ``x + delta``, no transformer at all.
Measured on one model at one input size, in this order:

1. through ``easycache.apply_easycache`` with a threshold no step reaches and no warm-up steps:
   call 1 computes (unknown rate; it is also the warm-up at this size, not timed for any median),
   call 2 computes and measures the rate (``cached_computed_seconds``), every later call is reused
   (``reused_seconds``, the median); ``handle.records`` proves which calls were reused;
2. the bare transformer, no cache installed: ``computed_seconds``, the median of computed calls;
3. ``reused_over_computed``: what is left of a step's cost when it is reused; memory: the peak of
   a computed call with and without the cache, and what the installed cache keeps alive (its
   latents) against the model's weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from . import models, results, timing
from .context import CheckFailed, Context

REUSE_THRESH = 1e6  # accumulated error no step reaches: every call after the rate is known is reused
WARMUP_STEPS = 0  # the rule's forced steps are not wanted here: only "k unknown" forces a compute


def run(ctx: Context, entry: dict, write, size_name: str) -> None:
    """Part a on diffusers' transformer at ``size_name`` ("544p", or "720p" if the budget allows)."""
    size = ctx.sizes[size_name]
    known = ctx.measured.get("dense_call_seconds", {}).get(size_name)
    if size_name != "544p":
        per_call = call_seconds_estimate(ctx, size)
        calls = 2 if known is not None else 2 + ctx.repeats_for(per_call or 0.0)
        ctx.budget.require(None if per_call is None else calls * per_call, f"part a at {size_name}")
    model = ctx.transformer()
    inputs = models.transformer_inputs(ctx.transformer_config, size, ctx.device, ctx.dtype, ctx.seed)
    write(entry, size=size.label, latent=[1, ctx.transformer_config["in_channels"], *size.latent],
          tokens=size.video_tokens() + size.text_tokens, model_bytes=models.parameter_bytes(model),
          transformer_build_seconds=ctx.measured.get("transformer_build_seconds"))
    numbers = computed_vs_reused(ctx, model, models.diffusers_call(model, inputs), inputs["latent"], write, entry,
                                 known_computed=known)
    ctx.measured.setdefault("computed_call_seconds", {})[size_name] = numbers["computed_seconds"]


def computed_vs_reused(ctx: Context, model: torch.nn.Module, call: Callable, latent: torch.Tensor, write,
                       entry: dict, known_computed: dict | None = None) -> dict:
    """Calls through the cache, then bare computed calls; fills ``entry`` as numbers come in.

    ``known_computed``: bare computed-call numbers already measured on this model and input (part
    b's dense calls at 720p): then not measured again, and said so in ``computed_from``.
    """
    import easycache

    device = ctx.device
    steps = models.timesteps()
    scale = iter(range(1, 10**6))

    def next_call():  # a new step each call: falling timestep, a slightly moved latent (made here, untimed)
        x, t = latent * (1.0 + 0.01 * next(scale)), next(steps)
        return lambda: call(x, t)

    # 1. through the cache: computed (warm-up), computed (rate measured), then reused calls
    held_before = timing.allocated_bytes(device)
    config = easycache.EasyCacheConfig(thresh=REUSE_THRESH, warmup_steps=WARMUP_STEPS, num_steps=10**6)
    handle = easycache.apply_easycache(model, config)
    try:
        timing.reset_peak(device)
        cached_computed = []
        for _ in range(2):
            out, seconds = timing.time_call(next_call(), device)
            cached_computed.append(seconds)
            finite = bool(torch.isfinite(out).all())
            del out
        peak_cached = timing.peak_bytes(device)
        held_allocator = None if held_before is None else timing.allocated_bytes(device) - held_before
        held = timing.tensor_bytes_held(handle, exclude=timing.storage_pointers(model))
        reused_samples = []
        if finite:
            for _ in range(ctx.repeats["reused"]):
                out, seconds = timing.time_call(next_call(), device)
                reused_samples.append(seconds)
                del out
        records = [dataclasses.asdict(r) for r in handle.records]
        summary = handle.summary()
    finally:
        easycache.remove_easycache(model)
    if not finite:
        raise CheckFailed("the random-weight transformer's output is not finite: the rule cannot reuse")
    flags = [r["computed"] for r in records]
    expected = [True, True] + [False] * len(reused_samples)
    if flags != expected:
        raise CheckFailed(f"the cache's records read computed={flags}, expected {expected}: the timed calls were not "
                          "the reused calls this check meant to time")
    reused = timing.median(reused_samples)
    write(entry, cached_computed_first_seconds=cached_computed[0], cached_computed_seconds=cached_computed[1],
          reused_seconds=reused, reused_samples=reused_samples, reused_calls_verified=True, records_computed=flags,
          cache_summary=summary, peak_bytes_computed_with_cache=peak_cached, cache_bytes=held,
          cache_bytes_allocator=held_allocator, output_finite=finite,
          cache_config={"thresh": config.thresh, "warmup_steps": config.warmup_steps, "num_steps": config.num_steps})

    # 2. the bare transformer (already warm at this size), its peak memory
    if known_computed is None:
        timing.reset_peak(device)
        bare = measure_calls(next_call, device, ctx.repeats_for(cached_computed[1]), warmup=0)
        del bare["last"]
        computed = {"computed_seconds": bare["median_seconds"], "computed_samples": bare["samples"],
                    "computed_from": "bare calls in this check, after the cached calls warmed this size up",
                    "peak_bytes_computed_no_cache": timing.peak_bytes(device)}
    else:
        computed = dict(known_computed, computed_from="part b's dense calls on this model and input")

    # 3. ratios
    model_bytes = models.parameter_bytes(model)
    peak_plain = computed.get("peak_bytes_computed_no_cache")
    numbers = {
        **computed,
        "reused_over_computed": reused / computed["computed_seconds"],
        "peak_with_over_without_cache": peak_cached / peak_plain if peak_cached and peak_plain else None,
        "cache_over_model_bytes": held / model_bytes, "model_bytes": model_bytes,
    }
    numbers["rows"] = [
        ["reused / computed transformer call", f"{results.seconds(reused)} / {results.seconds(computed['computed_seconds'])}",
         results.ratio(numbers["reused_over_computed"])],
        ["cache memory / model memory", f"{results.size(held)} / {results.size(model_bytes)}",
         results.ratio(numbers["cache_over_model_bytes"], faster=False)],
    ]
    if numbers["peak_with_over_without_cache"] is not None:
        numbers["rows"].append(["peak memory of a computed call, with / without cache",
                                f"{results.size(peak_cached)} / {results.size(peak_plain)}",
                                results.ratio(numbers["peak_with_over_without_cache"], faster=False)])
    write(entry, **numbers)
    ctx.say(f"computed {results.seconds(computed['computed_seconds'])}, reused {results.seconds(reused)} "
            f"(ratio {numbers['reused_over_computed']:.3g}), cache {results.size(held)} for {results.size(model_bytes)} of weights")
    return numbers


def measure_calls(next_call: Callable, device: torch.device, repeats: int | Callable[[float], int],
                  warmup: int = 1) -> dict:
    """``timing.measure`` where every call is a new step; each call's inputs are made before its timing."""
    return timing.measure(lambda: None, device, repeats, warmup, prepare=next_call)


def call_seconds_estimate(ctx: Context, size: models.Size) -> float | None:
    """One computed call at ``size``, from the measured 544p call scaled by the FLOPs (budget only)."""
    measured = ctx.measured.get("computed_call_seconds", {}).get("544p")
    if measured is None:
        return None
    config, params = ctx.transformer_config, ctx.measured.get("parameters")
    if params is None:
        return measured
    base = ctx.sizes["544p"]
    return measured * (sum(models.call_flops(config, size.video_tokens() + size.text_tokens, params))
                       / sum(models.call_flops(config, base.video_tokens() + base.text_tokens, params)))


def attention_fraction(ctx: Context, size: models.Size) -> float:
    """The share of a call's FLOPs in attention at ``size`` (budget estimates only)."""
    params = ctx.measured.get("parameters") or 0
    weights, attention = models.call_flops(ctx.transformer_config, size.video_tokens() + size.text_tokens, params)
    return attention / (weights + attention) if weights + attention else 1.0
