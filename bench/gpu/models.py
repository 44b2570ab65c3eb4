"""The transformers and inputs the check runs: diffusers' HunyuanVideo transformer at HunyuanVideo's
13B configuration (or a tiny one), random weights made on the device, and one call's inputs.

No checkpoint is read: the speed of a call does not depend on the values of the weights, and
random weights scaled like a trained network's (std 1/sqrt(fan_in)) keep the outputs finite, which
the rule needs (a non-finite output means "compute" forever).
"""

from __future__ import annotations

import dataclasses
import math

import torch

# diffusers' HunyuanVideoTransformer3DModel defaults, which are HunyuanVideo's 13B transformer
# (hunyuanvideo-community/HunyuanVideo, transformer/config.json), spelled out.
HUNYUAN_13B = dict(
    in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128, num_layers=20,
    num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
    qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768,
    rope_theta=256.0, rope_axes_dim=(16, 56, 56),
)
# The same code paths at toy size (head_dim 16 = sum of the rope axes).
TINY_CONFIG = dict(HUNYUAN_13B, num_attention_heads=2, attention_head_dim=16, num_layers=1, num_single_layers=1,
                   num_refiner_layers=1, text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(4, 6, 6))

TEXT_TOKENS = 256  # HunyuanVideo's max_sequence_length for the LLM prompt
TINY_TEXT_TOKENS = 8
GUIDANCE = 6.0  # HunyuanVideo's embedded guidance scale (the transformer sees it x 1000)


@dataclasses.dataclass(frozen=True)
class Size:
    """A video size and the latent the transformer sees (VAE compression 4x8x8, causal in time)."""

    label: str
    latent: tuple[int, int, int]  # frames, height, width of the latent
    text_tokens: int

    @classmethod
    def of_video(cls, frames: int, height: int, width: int) -> Size:
        return cls(f"{height}x{width}x{frames}", ((frames - 1) // 4 + 1, height // 8, width // 8), TEXT_TOKENS)

    def video_tokens(self, patch: tuple[int, int, int] = (1, 2, 2)) -> int:
        f, h, w = self.latent
        return (f // patch[0]) * (h // patch[1]) * (w // patch[2])


REAL_SIZES = {"544p": Size.of_video(129, 544, 960), "720p": Size.of_video(129, 720, 1280)}
TINY_SIZES = {"544p": Size("tiny stand-in for 544p", (3, 8, 8), TINY_TEXT_TOKENS),
              "720p": Size("tiny stand-in for 720p", (3, 8, 12), TINY_TEXT_TOKENS)}


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Seeded random weights, made where the weights are: matrices ~ N(0, 1/fan_in), biases
    ~ N(0, 0.02^2), norm scales ~ N(1, 0.02^2). (HunyuanVideo zero-initialises its modulation and
    output layers, which would make a fresh model's output zero.)"""
    generators: dict = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            generator = generators.setdefault(p.device, torch.Generator(p.device).manual_seed(seed))
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=generator)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02, generator=generator)
            else:
                p.normal_(1.0, 0.02, generator=generator)


def build_transformer(config: dict, device: torch.device, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """diffusers' HunyuanVideoTransformer3DModel of ``config``, allocated directly on ``device`` in
    ``dtype`` (no float32 copy on the host), with ``randomize_``'s weights."""
    from diffusers import HunyuanVideoTransformer3DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = HunyuanVideoTransformer3DModel(**config)
    finally:
        torch.set_default_dtype(previous)
    randomize_(model, seed)
    return model.eval().requires_grad_(False)


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def transformer_inputs(config: dict, size: Size, device, dtype, seed: int, real_text_tokens: int | None = None) -> dict:
    """One call's inputs besides the latent and the timestep: text states (all tokens valid, or the
    first ``real_text_tokens`` and padding after them, as a tokenizer pads), the pooled CLIP vector,
    embedded guidance; and ``latent``, the first noisy latent."""
    generator = torch.Generator(device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    mask = torch.ones(1, size.text_tokens, device=device, dtype=dtype)
    if real_text_tokens is not None:
        mask[:, real_text_tokens:] = 0
    return {
        "latent": randn(1, config["in_channels"], *size.latent),
        "encoder_hidden_states": randn(1, size.text_tokens, config["text_embed_dim"]),
        "encoder_attention_mask": mask,
        "pooled_projections": randn(1, config["pooled_projection_dim"]),
        "guidance": torch.full((1,), GUIDANCE * 1000.0, device=device, dtype=dtype),
    }


def diffusers_call(model: torch.nn.Module, inputs: dict):
    """``call(x, t)``: one transformer call at latent ``x`` and timestep ``t``, as the pipeline makes it."""
    text = {k: v for k, v in inputs.items() if k != "latent"}

    def call(x: torch.Tensor, t: float) -> torch.Tensor:
        timestep = torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)
        return model(hidden_states=x, timestep=timestep, return_dict=False, **text)[0]

    return call


def call_flops(config: dict, tokens: int, parameters: int) -> tuple[float, float]:
    """Rough FLOPs of one call: (the weights' 2 per parameter per token, attention's 4 * L^2 * width
    per block). Only for the budget's estimates (scaling measured times), never a result."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    blocks = config["num_layers"] + config["num_single_layers"]
    return 2.0 * parameters * tokens, 4.0 * tokens**2 * width * blocks


def timesteps(start: float = 900.0, spacing: float = 8.0):
    """Falling timesteps, one per call (a new timestep is a new step for the cache), spaced so that
    they stay distinct in bf16 (spacing 4 between 512 and 1024)."""
    t = start
    while True:
        yield t
        t -= spacing
