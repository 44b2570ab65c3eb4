"""Part b: sparse video attention (SVG) against dense attention at HunyuanVideo's 720p sequence
(33 latent frames x 3600 tokens + 256 text tokens, 24 heads x 128, bf16).

- ``attention``: one attention call. Dense is ``scaled_dot_product_attention`` three ways (``DENSE``):
  unmasked as torch picks (cuDNN on Hopper: ``--attention sdpa``), with the flash backend (=
  FlashAttention-2, Tencent's HunyuanVideo's own) and with an all-True key-padding mask (diffusers'
  HunyuanVideo's own); SVG's ratio is given against the fastest of them and against each model's
  own. Ours is ``easycache.sparse.sparse_attention`` (block-sparse ``flex_attention`` on CUDA)
  at each sparsity (fraction of the attention map kept). Its first call compiles the kernel and
  builds the block mask (built once per layout and band, then cached): ``first_seconds``, apart
  from the steady ``median_seconds``. SVG also profiles every call (``classify_heads``: the exact
  attention of 64 sampled query rows under each mask): ``profile_seconds``, per call.
- ``transformer``: one whole transformer call at 720p, dense (the model's own attention, then
  ``--attention sdpa``) against SVG installed by ``apply_svg`` and forced sparse in every block and
  step (first_times_fp=0, first_layers_fp=0), profiling included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import models, results, timing
from .context import CheckFailed, Context, Skipped
from .rule_cost import attention_fraction, call_seconds_estimate, measure_calls

SPARSITIES = (0.2, 0.25)
SAMPLED_ROWS = 64  # SVG's num_sampled_rows default
# Budget estimates only: compiling flex and building a block mask (attention), and what a transformer
# call adds to that (the kernel is compiled and the block mask built by the attention check).
FIRST_CALL_GUESS = {"cuda": 90.0, "cpu": 2.0}
TRANSFORMER_FIRST_CALL_GUESS = {"cuda": 30.0, "cpu": 1.0}


def attention_shape(ctx: Context) -> tuple:
    """(layout, heads, head_dim) of one attention call at 720p (or its tiny stand-in)."""
    from easycache.sparse import VideoLayout

    size, config = ctx.sizes["720p"], ctx.transformer_config
    frames, per_frame = size.latent[0], (size.latent[1] // 2) * (size.latent[2] // 2)
    layout = VideoLayout.uniform(frames, per_frame, size.text_tokens)
    return layout, config["num_attention_heads"], config["attention_head_dim"]


def dense_attention(q, k, v):
    """Dense attention through SDPA's flash backend (where this torch and device have it)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v)


def unmasked_attention(q, k, v):
    """SDPA as torch picks without a mask (cuDNN on Hopper): what ``--attention sdpa`` runs."""
    return F.scaled_dot_product_attention(q, k, v)


def masked_attention(q, k, v):
    """SDPA with an all-True ``(1, 1, 1, L)`` bool mask: what diffusers' HunyuanVideo passes every block."""
    mask = torch.ones(1, 1, 1, k.shape[-2], dtype=torch.bool, device=k.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# name -> (kernel, whose own path it is)
DENSE = {
    "sdpa": (unmasked_attention, "unmasked SDPA (torch's pick: cuDNN on Hopper), --attention sdpa"),
    "flash": (dense_attention, "SDPA's flash kernel = FlashAttention-2, Tencent's HunyuanVideo's own"),
    "masked": (masked_attention, "SDPA with an all-True key mask, diffusers' HunyuanVideo's own"),
}


def estimate_attention(ctx: Context) -> float:
    """Budget only: compiling flex for one sparsity (the second may be skipped inside), a few dense calls."""
    return FIRST_CALL_GUESS[ctx.device.type] + (10.0 if ctx.device.type == "cuda" else 0.5)


def run_attention(ctx: Context, entry: dict, write) -> None:
    from easycache.sparse import band_from_sparsity, classify_heads, sparse_attention

    layout, heads, dim = attention_shape(ctx)
    generator = torch.Generator(ctx.device).manual_seed(ctx.seed)
    q, k, v = (torch.randn(1, heads, layout.seq_len, dim, generator=generator, device=ctx.device, dtype=ctx.dtype)
               for _ in range(3))
    backend = ctx.sparse_backend
    repeats = ctx.repeats["attention"]
    write(entry, layout={"frames": layout.frames, "tokens_per_frame": layout.tokens_per_frame,
                         "text_tokens": layout.text_len, "seq_len": layout.seq_len},
          heads=heads, head_dim=dim, dtype=str(ctx.dtype), sparse_backend=backend)
    dense_paths = {}
    for name, (kernel, what) in DENSE.items():
        measured = timing.measure(lambda kernel=kernel: kernel(q, k, v), ctx.device, repeats)
        del measured["last"]
        dense_paths[name] = {**measured, "what": what}
    dense = {**dense_paths["flash"], "backend": "flash"}  # SVG's ratios of the first run were against this one
    fastest = min(dense_paths, key=lambda name: dense_paths[name]["median_seconds"])
    write(entry, dense=dense, dense_paths=dense_paths, fastest_dense=fastest)
    rows = [[f"dense attention call, {p['what']}", results.seconds(p["median_seconds"]), ""]
            for p in dense_paths.values()]
    for sparsity in SPARSITIES:
        key = f"sparsity_{sparsity}"
        try:
            ctx.budget.require(FIRST_CALL_GUESS[ctx.device.type] + 2 * repeats * dense["median_seconds"],
                               f"attention at sparsity {sparsity}")
        except Skipped as skip:
            write(entry, **{key: {"status": f"skipped: {skip}"}})
            rows.append([f"SVG {sparsity} / dense, one attention call", f"skipped: {skip}", ""])
            continue
        band = band_from_sparsity(layout, sparsity)
        rows_generator = torch.Generator().manual_seed(ctx.seed)
        profile = timing.measure(
            lambda band=band, rows=rows_generator: classify_heads(q, k, v, layout, band, SAMPLED_ROWS, rows),
            ctx.device, repeats)
        temporal = profile.pop("last")[0]
        sparse = timing.measure(
            lambda band=band, temporal=temporal: sparse_attention(q, k, v, layout, temporal, band, backend=backend),
            ctx.device, repeats)
        if not torch.isfinite(sparse.pop("last")).all():
            raise CheckFailed(f"sparse attention at sparsity {sparsity} returned non-finite values")
        with_profile = sparse["median_seconds"] + profile["median_seconds"]
        numbers = {
            "band": band, "temporal_heads": int(temporal.sum()), "heads": int(temporal.numel()),
            "profile": profile, "sparse": sparse,
            "compile_and_mask_seconds": sparse["first_seconds"] - sparse["median_seconds"],
            "sparse_over_dense": sparse["median_seconds"] / dense["median_seconds"],
            "with_profile_over_dense": with_profile / dense["median_seconds"],
            "with_profile_over_each_dense": {name: with_profile / p["median_seconds"] for name, p in dense_paths.items()},
        }
        rows += [
            [f"SVG {sparsity} / dense (flash), one attention call",
             f"{results.seconds(sparse['median_seconds'])} / {results.seconds(dense['median_seconds'])}",
             results.ratio(numbers["sparse_over_dense"])],
            [f"SVG {sparsity} + its profiling (classify_heads) / dense, one attention call",
             (f"({results.seconds(sparse['median_seconds'])} + {results.seconds(profile['median_seconds'])}) / "
              f"{results.seconds(dense['median_seconds'])}"), results.ratio(numbers["with_profile_over_dense"])],
            [f"SVG {sparsity}: first call (compile + block mask, once per video size)",
             results.seconds(sparse["first_seconds"]), ""],
            [f"SVG {sparsity} + its profiling / the fastest dense ({fastest}), one attention call",
             f"{results.seconds(with_profile)} / {results.seconds(dense_paths[fastest]['median_seconds'])}",
             results.ratio(numbers["with_profile_over_each_dense"][fastest])],
            [f"SVG {sparsity} + its profiling / masked dense (diffusers' own), one attention call",
             f"{results.seconds(with_profile)} / {results.seconds(dense_paths['masked']['median_seconds'])}",
             results.ratio(numbers["with_profile_over_each_dense"]["masked"])],
        ]
        ctx.measured.setdefault("attention_ratio", {})[sparsity] = numbers["with_profile_over_dense"]
        write(entry, rows=rows, **{key: numbers})
        ctx.say(f"attention at sparsity {sparsity}: {results.seconds(sparse['median_seconds'])} vs dense "
                f"{results.seconds(dense['median_seconds'])}, profiling {results.seconds(profile['median_seconds'])}, "
                f"first call {results.seconds(sparse['first_seconds'])}")


def estimate_transformer(ctx: Context) -> float | None:
    """Dense (warm-up and repeats) and SVG 0.2 (first call and repeats) at 720p; budget only."""
    dense = call_seconds_estimate(ctx, ctx.sizes["720p"])
    if dense is None:
        return None
    calls = 1 + ctx.repeats_for(dense)
    return calls * (dense + _svg_call_estimate(ctx, {}, SPARSITIES[0], dense)) + TRANSFORMER_FIRST_CALL_GUESS[ctx.device.type]


def _svg_call_estimate(ctx: Context, entry: dict, sparsity: float, dense_seconds: float) -> float:
    """One SVG transformer call (budget only): the last sparsity's measured call, else the dense
    call with its attention share scaled by part b's measured attention ratio, else the dense call."""
    done = [entry[k]["sparse"]["median_seconds"] for k in entry if k.startswith("sparsity_") and "sparse" in entry[k]]
    if done:
        return done[-1]
    ratio = ctx.measured.get("attention_ratio", {}).get(sparsity)
    if ratio is None:
        return dense_seconds
    share = attention_fraction(ctx, ctx.sizes["720p"])
    return dense_seconds * ((1 - share) + share * ratio)


def run_transformer(ctx: Context, entry: dict, write) -> None:
    from easycache.sparse import SVGConfig, apply_svg, remove_svg

    size = ctx.sizes["720p"]
    model = ctx.transformer()
    inputs = models.transformer_inputs(ctx.transformer_config, size, ctx.device, ctx.dtype, ctx.seed)
    call = models.diffusers_call(model, inputs)
    steps = models.timesteps()

    last_t = []

    def next_call():
        x, t = inputs["latent"], next(steps)
        last_t[:] = [t]
        return lambda: call(x, t)

    write(entry, size=size.label, tokens=size.video_tokens() + size.text_tokens, sparse_backend=ctx.sparse_backend)
    timing.reset_peak(ctx.device)
    dense = measure_calls(next_call, ctx.device, ctx.repeats_for)
    repeats = len(dense["samples"])  # SVG gets as many timed calls as dense
    out = dense.pop("last")
    finite = bool(torch.isfinite(out).all())
    peak = timing.peak_bytes(ctx.device)
    ctx.measured.setdefault("dense_call_seconds", {})["720p"] = {
        "computed_seconds": dense["median_seconds"], "computed_samples": dense["samples"],
        "computed_first_seconds": dense["first_seconds"], "peak_bytes_computed_no_cache": peak, "output_finite": finite}
    rows = [["dense transformer call (the model's own attention)", results.seconds(dense["median_seconds"]), ""]]
    write(entry, dense=dense, rows=rows)
    ctx.say(f"transformer at 720p, dense: {results.seconds(dense['median_seconds'])}")
    dense_sdpa = _dense_sdpa(ctx, model, call, inputs["latent"], last_t[0], out, dense["median_seconds"])
    del out
    if dense_sdpa is not None:
        rows.append(["dense transformer call, --attention sdpa / the model's own",
                     f"{results.seconds(dense_sdpa['median_seconds'])} / {results.seconds(dense['median_seconds'])}",
                     results.ratio(dense_sdpa["median_seconds"] / dense["median_seconds"])])
        write(entry, dense_sdpa=dense_sdpa, rows=rows)
    for sparsity in SPARSITIES:
        key = f"sparsity_{sparsity}"
        try:
            per_call = _svg_call_estimate(ctx, entry, sparsity, dense["median_seconds"])
            ctx.budget.require((1 + repeats) * per_call + TRANSFORMER_FIRST_CALL_GUESS[ctx.device.type],
                               f"the transformer at SVG {sparsity}")
        except Skipped as skip:
            write(entry, **{key: {"status": f"skipped: {skip}"}})
            rows.append([f"SVG {sparsity} / dense, one transformer call", f"skipped: {skip}", ""])
            continue
        config = SVGConfig(sparsity=sparsity, num_sampled_rows=SAMPLED_ROWS, first_times_fp=0.0, first_layers_fp=0.0,
                           backend=ctx.sparse_backend, seed=ctx.seed)
        state = apply_svg(model, config)
        try:
            sparse = measure_calls(next_call, ctx.device, repeats)
            sparse.pop("last")
            summary = state.summary()
        finally:
            remove_svg(model)
        if not (summary["attention_calls"] > 0 and summary["sparse_calls"] == summary["attention_calls"]):
            raise CheckFailed(f"SVG at sparsity {sparsity} was not sparse everywhere: {summary}")
        numbers = {"sparse": sparse, "svg_summary": summary,
                   "compile_and_mask_seconds": sparse["first_seconds"] - sparse["median_seconds"],
                   "sparse_over_dense": sparse["median_seconds"] / dense["median_seconds"]}
        rows += [[f"SVG {sparsity} / dense, one transformer call (profiling included)",
                  f"{results.seconds(sparse['median_seconds'])} / {results.seconds(dense['median_seconds'])}",
                  results.ratio(numbers["sparse_over_dense"])],
                 [f"SVG {sparsity}: first transformer call (compile, block mask)", results.seconds(sparse["first_seconds"]),
                  ""]]
        if dense_sdpa is not None:
            numbers["sparse_over_dense_sdpa"] = sparse["median_seconds"] / dense_sdpa["median_seconds"]
            rows.append([f"SVG {sparsity} / dense with --attention sdpa, one transformer call",
                         f"{results.seconds(sparse['median_seconds'])} / {results.seconds(dense_sdpa['median_seconds'])}",
                         results.ratio(numbers["sparse_over_dense_sdpa"])])
        write(entry, rows=rows, **{key: numbers})
        ctx.say(f"transformer at 720p, SVG {sparsity}: {results.seconds(sparse['median_seconds'])} "
                f"(first call {results.seconds(sparse['first_seconds'])})")



def _dense_sdpa(ctx: Context, model, call, x, t: float, own: torch.Tensor, model_seconds: float) -> dict | None:
    """The dense call at ``(x, t)`` again with ``--attention sdpa`` (the size is warm: no warm-up;
    one timed call, as the model's own gets at 720p); its output's relative difference from
    ``own``, the model's own output at the same input. None when the budget has no room."""
    from easycache.attention import apply_attention, remove_attention

    from .attention_paths import relative_difference

    try:
        ctx.budget.require(1.5 * model_seconds, "the dense call with --attention sdpa")
    except Skipped:
        return None
    apply_attention(model, "sdpa")
    try:
        measured = measure_calls(lambda: (lambda: call(x, t)), ctx.device, 1, warmup=0)
    finally:
        remove_attention(model)
    measured["relative_difference"] = relative_difference(measured.pop("last"), own)
    ctx.say(f"transformer at 720p, dense with --attention sdpa: {results.seconds(measured['median_seconds'])}")
    return measured
