"""Part e: every computed step at the GPU's speed: one transformer call per dense attention path
(``easycache.attention``: the model's own, ``sdpa``), side by side on one model and one input.

- ``diffusers_544p``: diffusers' HunyuanVideo transformer (part a's model) at 544p with a real
  prompt's text mask (``REAL_TEXT_TOKENS`` of 256 tokens real, the rest padding, as diffusers pads
  every prompt): the model's own path (SDPA with its key-padding mask) against ``sdpa`` (padding cut
  before the blocks, unmasked SDPA: cuDNN on Hopper).
- Tencent's transformer (part d) runs the same comparison on its model: ``tencent.run``.

Each path's output is compared with the model's own on the same input: ``relative_difference`` is
``|a - b| / |b|`` (L2 norms, float32), the rounding of another kernel in bf16 through 60 blocks of
random weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import models, results
from .context import CheckFailed, Context
from .rule_cost import call_seconds_estimate, measure_calls

REPEATS = 2  # timed calls per path, after one warm-up
FIXED_TIMESTEP = 500.0  # every call of a comparison at one input, so the outputs compare
REAL_TEXT_TOKENS = 128  # of HunyuanVideo's 256: the rest is padding, masked by the model's own path
TINY_REAL_TEXT_TOKENS = 5


# The most a path's output may differ from the model's own (relative L2) before the check fails:
# float32 is the same video to rounding; bf16 is another kernel's rounding through 60 blocks of
# random weights (1.2% measured on the H200 for diffusers' masked against unmasked call).
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.05, torch.float16: 0.05}


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def compare_paths(ctx: Context, model: torch.nn.Module, make_call: Callable[[], Callable], paths: dict,
                  write, entry: dict, baseline: str = "model") -> dict:
    """Time ``make_call()`` (one input, the same for every call) on each path (``paths``: name ->
    context manager factory that puts the model on that path and yields what it runs); the first
    path is the baseline, its output kept to compare the others with. Fills ``entry[name]`` as each
    path finishes."""
    numbers, reference = {}, None
    for name, enter in paths.items():
        label = f"{name} path"
        estimate = numbers[baseline]["median_seconds"] if baseline in numbers else call_seconds_estimate(ctx, ctx.sizes["544p"])
        ctx.budget.require(None if estimate is None else 3 * estimate, label)
        with enter() as description:
            measured = measure_calls(make_call, ctx.device, REPEATS)
        out = measured.pop("last")
        if not torch.isfinite(out).all():
            measured["output_finite"] = False
        measured["path"] = description
        if reference is None:
            reference = out.float()
        else:
            measured["relative_difference"] = relative_difference(out, reference)
            measured["over_baseline"] = measured["median_seconds"] / numbers[baseline]["median_seconds"]
        del out
        numbers[name] = measured
        write(entry, **{name: measured})
        ctx.say(f"{name}: {results.seconds(measured['median_seconds'])} ({description})")
    tolerance = TOLERANCE[ctx.dtype]
    far = {n: v["relative_difference"] for n, v in numbers.items() if v.get("relative_difference", 0) > tolerance}
    if far:
        raise CheckFailed(f"outputs differ from the {baseline} path by more than {tolerance:g} (relative L2): {far}")
    return numbers


def path_rows(numbers: dict, what: str, baseline: str = "model") -> list:
    base = numbers[baseline]
    rows = [[f"{what}, {baseline} path ({base['path']})", results.seconds(base["median_seconds"]), ""]]
    for name, n in numbers.items():
        if name == baseline:
            continue
        rows.append([f"{what}, {name} ({n['path']}) / {baseline}",
                     f"{results.seconds(n['median_seconds'])} / {results.seconds(base['median_seconds'])}",
                     results.ratio(n["over_baseline"])])
        rows.append([f"{what}, {name} vs {baseline}: relative difference of the output (L2)",
                     f"{n['relative_difference']:.3g}", ""])
    return rows


def attention_path(model: torch.nn.Module, mode: str):
    """A context manager that installs ``--attention mode`` on ``model`` and yields what it runs."""
    import contextlib

    from easycache.attention import apply_attention, remove_attention

    @contextlib.contextmanager
    def enter():
        choice = apply_attention(model, mode)
        try:
            yield f"{choice.path}: {choice.model_kernel if choice.path == 'model' else 'unmasked SDPA'}"
        finally:
            remove_attention(model)

    return enter


def estimate(ctx: Context) -> float | None:
    per_call = call_seconds_estimate(ctx, ctx.sizes["544p"])
    return None if per_call is None else 5 * per_call


def run_diffusers(ctx: Context, entry: dict, write) -> None:
    size = ctx.sizes["544p"]
    model = ctx.transformer()
    inputs = models.transformer_inputs(ctx.transformer_config, size, ctx.device, ctx.dtype, ctx.seed,
                                       real_text_tokens=TINY_REAL_TEXT_TOKENS if ctx.tiny else REAL_TEXT_TOKENS)
    call = models.diffusers_call(model, inputs)

    def make_call():
        return lambda: call(inputs["latent"], FIXED_TIMESTEP)

    real = int(inputs["encoder_attention_mask"].sum())
    write(entry, size=size.label, text_tokens=size.text_tokens, real_text_tokens=real)
    numbers = compare_paths(ctx, model, make_call, {"model": attention_path(model, "model"),
                                                    "sdpa": attention_path(model, "sdpa")}, write, entry)
    write(entry, rows=path_rows(numbers, f"diffusers' transformer at {size.label}, {real}/{size.text_tokens} text "
                                "tokens real"))
