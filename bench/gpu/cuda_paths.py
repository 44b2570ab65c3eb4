"""Part c: the end-to-end checks that matter, on the device (CUDA when there is one).

- ``threshold0``: the tiny diffusers HunyuanVideo pipeline (``easycache/testing/tiny_hunyuan.py``) with EasyCache
  at threshold 0 gives bit-identically the video without it, with and without true CFG (two calls
  a step); the baseline is generated twice to show it is itself repeatable on this device.
- ``cfg_decisions``: at a high threshold with true CFG, calls are reused, and each step takes one
  decision for both of its calls (branches "cond", "uncond").
- ``flex_vs_sdpa``: ``sparse_attention(..., backend="flex")`` equals the masked SDPA reference
  (float32, padded text, a batch of two, spatial and temporal heads mixed).
- ``demo``: the embedded demo at the default threshold: its computed/reused decisions on this device
  against a CPU run's (the same prompt and seed); any difference is stated with the accumulated
  error at the differing steps (a decision taken within float noise of the threshold).
"""

from __future__ import annotations

import torch

from .context import CheckFailed, Context, Skipped

STEPS = 12
CFG = {"true_cfg_scale": 4.0, "negative_prompt": "a dog"}
DEMO_PROMPT, DEMO_SEED, DEMO_STEPS = "a red circle moving left", 0, 50


def estimate(ctx: Context) -> float:
    """Budget only: a tiny pipeline's few generations, or one small flex compile, on CUDA."""
    return 20.0 if ctx.device.type == "cuda" else 1.0


def _pipeline(ctx: Context):
    if "tiny_pipeline" not in ctx.objects:
        from easycache.testing.tiny_hunyuan import tiny_pipeline

        ctx.objects["tiny_pipeline"] = tiny_pipeline().to(ctx.device)
    return ctx.objects["tiny_pipeline"]


def _cached(pipe, config, **kwargs):
    from easycache.testing.tiny_hunyuan import generate_cached

    return generate_cached(pipe, config, steps=STEPS, **kwargs)


def run_threshold0(ctx: Context, entry: dict, write) -> None:
    from easycache.testing.tiny_hunyuan import generate

    import easycache

    pipe = _pipeline(ctx)
    rows, problems = [], []
    for label, kwargs in (("one call a step", {}), ("true CFG, two calls a step", CFG)):
        first, second = generate(pipe, steps=STEPS, **kwargs), generate(pipe, steps=STEPS, **kwargs)
        video, summary, _ = _cached(pipe, easycache.EasyCacheConfig(thresh=0.0), **kwargs)
        identical, repeatable = torch.equal(video, first), torch.equal(first, second)
        numbers = {"bit_identical": identical, "baseline_repeatable": repeatable,
                   "max_abs_difference": float((video.float() - first.float()).abs().max()),
                   "computed": summary["computed"], "calls": summary["calls"]}
        write(entry, **{label.split(",")[0].replace(" ", "_"): numbers})
        verdict = "bit-identical" if identical else "DIFFERENT"
        rows.append([f"threshold 0 vs no cache, {label}",
                     f"{verdict}, {summary['computed']}/{summary['calls']} calls computed", "pass" if identical else "FAIL"])
        if not identical:
            problems.append(f"{label}: max |difference| {numbers['max_abs_difference']:.3g}"
                            + ("" if repeatable else " (the baseline itself is not repeatable on this device)"))
        if summary["computed"] != summary["calls"]:
            problems.append(f"{label}: threshold 0 reused {summary['calls'] - summary['computed']} calls")
    write(entry, rows=rows)
    if problems:
        raise CheckFailed("; ".join(problems))


def run_cfg_decisions(ctx: Context, entry: dict, write) -> None:
    import easycache

    _, summary, records = _cached(_pipeline(ctx), easycache.EasyCacheConfig(thresh=0.4, warmup_steps=3), **CFG)
    by_step: dict = {}
    for r in records:
        by_step.setdefault(r.step, []).append(r)
    branches_ok = all([r.branch for r in rs] == ["cond", "uncond"] for rs in by_step.values())
    one_decision = all(len({r.computed for r in rs}) == 1 for rs in by_step.values())
    decisions = "".join("C" if rs[0].computed else "r" for _, rs in sorted(by_step.items()))
    write(entry, calls=summary["calls"], computed=summary["computed"], reused=summary["reused"], steps=len(by_step),
          decisions=decisions, branches_cond_uncond=branches_ok, one_decision_per_step=one_decision,
          rows=[["true CFG at threshold 0.4: one decision per step (C computed, r reused)", decisions,
                 f"{summary['computed']}/{summary['calls']} computed"]])
    if not (branches_ok and one_decision and summary["reused"] > 0 and len(by_step) == STEPS):
        raise CheckFailed(f"decisions {decisions}: branches cond/uncond {branches_ok}, one decision per step "
                          f"{one_decision}, reused {summary['reused']}, steps {len(by_step)}")


def run_flex_vs_sdpa(ctx: Context, entry: dict, write) -> None:
    from easycache.sparse import (
        VideoLayout,
        band_from_sparsity,
        flex_available,
        sparse_attention,
    )

    if not flex_available():
        raise Skipped("this torch has no flex_attention (needs >= 2.5)")
    layout = VideoLayout(frames=4, tokens_per_frame=64, text_len=32, text_valid=(20, 32))
    generator = torch.Generator(ctx.device).manual_seed(ctx.seed)
    q, k, v = (torch.randn(2, 4, layout.seq_len, 64, generator=generator, device=ctx.device) for _ in range(3))
    temporal = torch.tensor([[True, False, True, False], [False, False, True, True]], device=ctx.device)
    band = band_from_sparsity(layout, 0.25)
    flex = sparse_attention(q, k, v, layout, temporal, band, backend="flex")
    reference = sparse_attention(q, k, v, layout, temporal, band, backend="sdpa")
    difference = float((flex - reference).abs().max())
    tolerance = 1e-3
    write(entry, max_abs_difference=difference, tolerance=tolerance, dtype="float32", band=band,
          rows=[["flex == SDPA reference (float32, padded text, mixed heads), max abs difference", f"{difference:.3g}",
                 "pass" if difference <= tolerance else "FAIL"]])
    if not difference <= tolerance:
        raise CheckFailed(f"flex differs from the SDPA reference by {difference:.3g} (> {tolerance})")


def _demo_decisions(device: torch.device) -> tuple[list[bool], list[float], torch.Tensor]:
    import easycache
    from easycache.demo import load_demo_pipeline

    pipe = load_demo_pipeline(device)
    cache = easycache.apply_easycache(pipe, easycache.EasyCacheConfig())
    try:
        frames = pipe(DEMO_PROMPT, num_inference_steps=DEMO_STEPS, generator=torch.Generator().manual_seed(DEMO_SEED),
                      output_type="pt").frames[0]
        records = list(cache.records)
    finally:
        easycache.remove_easycache(pipe)
    return [r.computed for r in records], [r.accumulated_error for r in records], frames.float().cpu()


def run_demo(ctx: Context, entry: dict, write) -> None:
    import easycache

    here, here_errors, here_frames = _demo_decisions(ctx.device)
    cpu, _, cpu_frames = _demo_decisions(torch.device("cpu"))
    thresh = easycache.EasyCacheConfig().thresh
    differ = [i for i, (a, b) in enumerate(zip(here, cpu)) if a != b]
    mse = float(((here_frames - cpu_frames) ** 2).mean())
    psnr = None if mse == 0 else float(10 * torch.log10(torch.tensor(1.0 / mse)))

    def text(flags: list[bool]) -> str:
        return "".join("C" if c else "r" for c in flags)

    write(entry, device=str(ctx.device), decisions=text(here), decisions_cpu=text(cpu),
          computed=sum(here), computed_cpu=sum(cpu), calls=len(here), differing_steps=differ,
          error_margin_at_differing_steps=[abs(here_errors[i] - thresh) for i in differ],
          psnr_vs_cpu_db=psnr, thresh=thresh,
          rows=[[f"demo at the default threshold on {ctx.device} vs CPU: calls computed",
                 (f"{sum(here)}/{len(here)} vs {sum(cpu)}/{len(cpu)}, "
                  f"{'same decisions' if not differ else f'{len(differ)} steps differ'}"),
                 "pass" if not differ else "FAIL"]])
    if len(here) != len(cpu) or differ:
        raise CheckFailed(f"decisions differ from the CPU run's at steps {differ} (computed {sum(here)} vs {sum(cpu)} "
                          f"of {len(here)}; accumulated error within "
                          f"{max([abs(here_errors[i] - thresh) for i in differ] or [0]):.2g} of the threshold there)")
