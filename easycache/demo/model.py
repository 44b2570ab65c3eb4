"""The demo models' shape: a diffusers video transformer, tiny (HunyuanVideo's for ``demo``, Wan
2.1's for ``demo-wan``: ``TRANSFORMERS``), on pixels folded into a latent grid. What follows was
found on the HunyuanVideo demo; the Wan demo folds 2x2 (12 channels) and lets Wan's own 2x2
patching make the same 4x4 tokens a frame.

No VAE: HunyuanVideo's causal 3D VAE is ~250M parameters and would need training too. Instead the
"latent" of a clip is its pixels, scaled to [-1, 1] and pixel-unshuffled: each ``fold x fold``
patch of a frame becomes ``3 * fold**2`` channels. Encoding and decoding are exact and free, and
the transformer sees a small grid (16x16 pixels, fold 4: 4x4 tokens a frame, 48 channels), as HunyuanVideo's
sees the VAE's 16-channel grid. Time is not compressed (HunyuanVideo's VAE folds 4 frames).

Why coordinate channels: HunyuanVideo's transformer knows where a token is only through RoPE,
which is relative. From pure noise, a token cannot tell which frame or which corner it is in
except through the subtle edge effects of relative attention, so the prompt alone can hardly say
"right side in the first frame, left side in the last". The pipeline therefore appends three fixed
channels to the noisy latent, each token's frame, row and column in [-1, 1], the way HunyuanVideo's
image-to-video model appends its conditioning latents: the transformer takes ``channels + 3`` and
predicts ``channels`` (EasyCache reads the rule's ``x`` from the predicted channels, as for I2V).
Big video models learn absolute place from RoPE over millions of steps; this one has thousands.

Why fold 4 and not 8 (4x fewer tokens): the transformer predicts the velocity ``noise - x0``, so it
must carry each token's noise through its hidden width. With fold 8 (192 channels) and width 64,
training stalled at the loss of that bottleneck (~0.8) and sampled noise; width must be >= channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from einops import rearrange

import diffusers
from diffusers import FlowMatchEulerDiscreteScheduler

from ..versions import require_diffusers_class


# The transformer of each architecture at the demo's size: diffusers' own classes, small.
TRANSFORMERS = {
    "hunyuan": dict(
        num_attention_heads=4,
        attention_head_dim=32,  # hidden size 128: comfortably wider than a token's 48 channels
        num_layers=2,  # dual-stream blocks (text and video apart)
        num_single_layers=2,  # single-stream blocks (text and video joined)
        num_refiner_layers=1,
        mlp_ratio=4.0,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=False,  # no distilled guidance: true CFG instead, when wanted
        rope_axes_dim=(8, 12, 12),  # (time, height, width), summing to attention_head_dim
    ),
    "wan": dict(
        patch_size=(1, 2, 2),  # Wan 2.1's patching: 2x2 latent pixels a token (fold 2: 4x4 tokens a frame)
        num_attention_heads=4,
        attention_head_dim=32,  # hidden size 128
        ffn_dim=512,
        num_layers=4,  # self-attention, cross-attention to the prompt, feed-forward; no joint text stream
        freq_dim=64,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
    ),
}
ARCHITECTURES = tuple(TRANSFORMERS)


@dataclass
class DemoConfig:
    """Everything that fixes the demo model's shape and its sampler; saved beside the weights.

    ``architecture``: ``"hunyuan"`` (diffusers' ``HunyuanVideoTransformer3DModel``, text through
    joint attention, Euler flow-matching sampler) or ``"wan"`` (``WanTransformer3DModel``, text
    through cross-attention, UniPC flow sampler as ``WanPipeline`` runs it).
    ``shift`` is the flow-matching sigma shift, the same in training (where it places the noise
    levels trained on) and sampling. ``guidance_scale`` is true classifier-free guidance (two
    transformer calls a step when > 1).
    """

    frames: int = 9
    size: int = 16
    fold: int = 4
    shift: float = 7.0
    steps: int = 30
    guidance_scale: float = 1.0
    text_width: int = 64
    text_layers: int = 2
    max_words: int = 12
    coordinates: bool = True  # append (frame, row, column) channels to the transformer's input
    architecture: str = "hunyuan"
    transformer: dict = field(default_factory=lambda: dict(TRANSFORMERS["hunyuan"]))

    @classmethod
    def for_architecture(cls, architecture: str, **overrides) -> "DemoConfig":
        """The training defaults of one architecture. Wan's are Wan 2.1's sampler settings (shift 3.0,
        guidance 5.0) with fold 2, so its own 2x2 patching makes the same 4x4 tokens a frame."""
        if architecture == "wan":
            overrides = dict(fold=2, shift=3.0, guidance_scale=5.0, **overrides)
        return cls(architecture=architecture, transformer=dict(TRANSFORMERS[architecture]), **overrides)

    @property
    def channels(self) -> int:
        """Channels of a latent (what the transformer predicts)."""
        return 3 * self.fold**2

    @property
    def input_channels(self) -> int:
        """Channels the transformer takes: the latent, then the coordinates when on."""
        return self.channels + (3 if self.coordinates else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DemoConfig":
        return cls(**{"coordinates": False, **data})  # folders saved before coordinates existed lack the key


def build_transformer(config: DemoConfig) -> torch.nn.Module:
    """diffusers' transformer of ``config.architecture`` at the demo's size (random weights). A
    diffusers without ``HunyuanVideoTransformer3DModel`` (before 0.32, HunyuanVideo's own pin) gets
    the same computation in plain torch (``hunyuan_torch``); Wan's needs diffusers >= 0.33."""
    kwargs = dict(config.transformer)
    if config.architecture == "wan":
        require_diffusers_class("WanTransformer3DModel", "the Wan demo (--model demo-wan)")
        kwargs["patch_size"] = tuple(kwargs["patch_size"])
        return diffusers.WanTransformer3DModel(in_channels=config.input_channels, out_channels=config.channels,
                                               text_dim=config.text_width, **kwargs)
    kwargs["rope_axes_dim"] = tuple(kwargs["rope_axes_dim"])
    if hasattr(diffusers, "HunyuanVideoTransformer3DModel"):
        transformer_class = diffusers.HunyuanVideoTransformer3DModel
    else:
        from .hunyuan_torch import DemoHunyuanTransformer as transformer_class
    return transformer_class(
        in_channels=config.input_channels,
        out_channels=config.channels,
        text_embed_dim=config.text_width,
        pooled_projection_dim=config.text_width,
        **kwargs,
    )


def text_inputs(config: DemoConfig, tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor) -> dict:
    """The prompt as the transformer of ``config.architecture`` takes it: HunyuanVideo's tokens, their
    mask and a pooled vector; Wan's tokens alone, zero past the prompt's end (as ``WanPipeline`` pads
    UMT5's output), attended in full by cross-attention."""
    if config.architecture == "wan":
        return dict(encoder_hidden_states=tokens * mask.unsqueeze(-1).to(tokens.dtype))
    return dict(encoder_hidden_states=tokens, encoder_attention_mask=mask, pooled_projections=pooled)


def make_scheduler(config: DemoConfig):
    """The sampler the architecture ships with in diffusers: HunyuanVideo's flow-matching Euler, or
    Wan's UniPC multistep in flow-prediction mode; both with ``config.shift``."""
    if config.architecture == "wan":
        return diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                       flow_shift=config.shift, num_train_timesteps=1000)
    return FlowMatchEulerDiscreteScheduler(shift=config.shift)


def with_coordinates(latents: torch.Tensor) -> torch.Tensor:
    """``latents (B, C, F, H, W)`` with three channels appended: each token's frame, row and
    column, spaced evenly in [-1, 1] (the same for every clip; see the module docstring)."""
    b, _, f, h, w = latents.shape
    axes = [torch.linspace(-1, 1, n, device=latents.device, dtype=latents.dtype) for n in (f, h, w)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (3, F, H, W)
    return torch.cat([latents, grid.expand(b, -1, -1, -1, -1)], dim=1)


def encode(video: torch.Tensor, fold: int) -> torch.Tensor:
    """Clips ``(B, F, 3, H, W)`` in [0, 1] to latents ``(B, 3*fold*fold, F, H/fold, W/fold)``."""
    return rearrange(video * 2 - 1, "b f c (h p) (w q) -> b (c p q) f h w", p=fold, q=fold)


def decode(latents: torch.Tensor, fold: int) -> torch.Tensor:
    """The exact inverse of ``encode``: clips ``(B, F, 3, H, W)`` in [0, 1] (clamped)."""
    video = rearrange(latents, "b (c p q) f h w -> b f c (h p) (w q)", p=fold, q=fold)
    return ((video + 1) / 2).clamp(0, 1)
