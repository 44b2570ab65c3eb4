"""Part d: Tencent's own transformer (``HYVideoDiffusionTransformer`` of a HunyuanVideo checkout named
by ``HYVIDEO_ROOT``) at 544p: computed against reused call time, as part a measures diffusers'.

The checkout is made importable by ``easycache/testing/tencent_tiny.py``'s ``enable_cpu_shims`` (its stand-in
for flash-attn's ``flash_attn_varlen_func`` runs SDPA per sequence segment, on any device); when
flash-attn is installed, its own kernel and ``get_cu_seqlens`` are put back. The model is built
with Tencent's class at its 13B configuration ("HYVideo-T/2-cfgdistill"), random bf16 weights,
called as Tencent's pipeline calls it (bf16 autocast, rotary tables from its own
``get_nd_rotary_pos_embed``), with a real prompt's text mask (128 of 256 tokens real).

First the dense paths side by side (part e's comparison on Tencent's model): the model's own
(flash-attn 2; where it is not installed, the stand-in run inside SDPA's flash kernel, which is
FlashAttention-2, labelled so) against ``--attention sdpa``; then the reused call against the
model's own computed call.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import tempfile

import torch

from . import models
from .attention_paths import FIXED_TIMESTEP, REAL_TEXT_TOKENS, TINY_REAL_TEXT_TOKENS, attention_path, compare_paths, path_rows
from .context import Context, Skipped
from .rule_cost import call_seconds_estimate, computed_vs_reused

MODEL_NAME = "HYVideo-T/2-cfgdistill"
ROPE_THETA = 256  # hyvideo.config --rope-theta default


def estimate(ctx: Context) -> float | None:
    """Seconds of part d (budget only); a missing checkout is said before any budget reason."""
    from easycache.testing import tencent_tiny

    root, reason = tencent_tiny.hyvideo_root_or_skip_reason()
    if root is None:
        raise Skipped(reason)
    per_call = call_seconds_estimate(ctx, ctx.sizes["544p"])
    building = 1.0 if ctx.tiny else 30.0
    return None if per_call is None else 8 * per_call + building  # 3 + 3 calls of the paths, 2 through the cache


def run(ctx: Context, entry: dict, write) -> None:
    from easycache.testing import tencent_tiny

    root, reason = tencent_tiny.hyvideo_root_or_skip_reason()
    if root is None:
        raise Skipped(reason)
    ctx.release_transformer()  # room for a second 13B model
    with tempfile.TemporaryDirectory() as model_base, tencent_tiny.enable_cpu_shims(root, model_base) as hy:
        attention = _use_flash_attn_if_installed(hy)
        if ctx.tiny:
            config = dict(tencent_tiny.TINY_DIT_CONFIG)
            text_dims = (tencent_tiny.LLM_HIDDEN, tencent_tiny.CLIP_HIDDEN)
        else:
            config = dict(hy.models.HUNYUAN_VIDEO_CONFIG[MODEL_NAME])
            text_dims = (4096, 768)
        size = ctx.sizes["544p"]
        write(entry, hyvideo_root=str(root), attention=attention, model=MODEL_NAME if not ctx.tiny else "tiny",
              size=size.label, config=config)
        model = _build(hy, config, text_dims, ctx)
        call, latent = _call(hy, model, config, text_dims, size, ctx)
        write(entry, model_bytes=models.parameter_bytes(model))
        own = _own_path(model, attention)
        # Tencent's pipeline runs its transformer under autocast whenever the precision is not fp32
        autocast = ctx.dtype != torch.float32
        with torch.autocast(ctx.device.type, dtype=ctx.dtype) if autocast else contextlib.nullcontext():
            paths = compare_paths(ctx, model, lambda: (lambda: call(latent, FIXED_TIMESTEP)),
                                  {"model": own, "sdpa": attention_path(model, "sdpa")}, write, entry)
            real = int(TINY_REAL_TEXT_TOKENS if ctx.tiny else REAL_TEXT_TOKENS)
            write(entry, rows=path_rows(paths, f"Tencent's transformer at {size.label}, {real}/{size.text_tokens} "
                                        "text tokens real"))
            model_path = paths["model"]
            known = {"computed_seconds": model_path["median_seconds"], "computed_samples": model_path["samples"]}
            with own():
                rows = entry["rows"]
                computed_vs_reused(ctx, model, call, latent, write, entry, known_computed=known)
                write(entry, rows=rows + entry["rows"])
        del model


def _own_path(model, attention: str):
    """The model's own path as a context manager: flash-attn where installed; else the stand-in
    inside SDPA's flash kernel (FlashAttention-2's algorithm), where this torch and device have it."""
    from easycache.attention import apply_attention, remove_attention

    @contextlib.contextmanager
    def enter():
        apply_attention(model, "model")
        try:
            if attention == "flash-attn" or not torch.cuda.is_available():
                yield attention
            else:
                from torch.nn.attention import SDPBackend, sdpa_kernel

                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    yield "SDPA's flash kernel (FlashAttention-2) standing in for flash-attn, not installed"
        finally:
            remove_attention(model)

    return enter


def _use_flash_attn_if_installed(hy) -> str:
    if importlib.util.find_spec("flash_attn") is None:
        return "SDPA per segment (easycache/testing/tencent_tiny.py's stand-in; flash-attn is not installed)"
    from flash_attn.flash_attn_interface import flash_attn_varlen_func

    hy.attenion.flash_attn_varlen_func = flash_attn_varlen_func
    original = getattr(hy.attenion.get_cu_seqlens, "__wrapped__", hy.attenion.get_cu_seqlens)
    hy.attenion.get_cu_seqlens = hy.models.get_cu_seqlens = original
    return "flash-attn"  # the shims' exit puts everything back


def _build(hy, config: dict, text_dims: tuple[int, int], ctx: Context) -> torch.nn.Module:
    args = argparse.Namespace(text_states_dim=text_dims[0], text_states_dim_2=text_dims[1])
    model = hy.models.HYVideoDiffusionTransformer(args, patch_size=[1, 2, 2], in_channels=16, out_channels=16,
                                                  **config, dtype=ctx.dtype, device=ctx.device)
    model.to(ctx.device, ctx.dtype)  # any submodule built without the factory arguments
    models.randomize_(model, ctx.seed)
    return model.eval().requires_grad_(False)


def _call(hy, model, config: dict, text_dims: tuple[int, int], size: models.Size, ctx: Context):
    """``(call(x, t), first latent)``: Tencent's pipeline's transformer call at ``size``."""
    generator = torch.Generator(ctx.device).manual_seed(ctx.seed)

    def randn(*shape):
        return torch.randn(shape, generator=generator, device=ctx.device, dtype=ctx.dtype)

    frames, height, width = size.latent
    cos, sin = hy.inference.get_nd_rotary_pos_embed(config["rope_dim_list"], [frames, height // 2, width // 2],
                                                    theta=ROPE_THETA, use_real=True, theta_rescale_factor=1)
    text_mask = torch.ones(1, size.text_tokens, device=ctx.device, dtype=torch.long)
    text_mask[:, TINY_REAL_TEXT_TOKENS if ctx.tiny else REAL_TEXT_TOKENS:] = 0  # a real prompt, padded
    text = dict(text_states=randn(1, size.text_tokens, text_dims[0]), text_mask=text_mask,
                text_states_2=randn(1, text_dims[1]), freqs_cos=cos.to(ctx.device), freqs_sin=sin.to(ctx.device),
                guidance=torch.full((1,), models.GUIDANCE * 1000.0, device=ctx.device, dtype=ctx.dtype))

    def call(x: torch.Tensor, t: float) -> torch.Tensor:
        return model(x, torch.full((1,), float(t), device=ctx.device), return_dict=True, **text)["x"]

    return call, randn(1, 16, frames, height, width)
