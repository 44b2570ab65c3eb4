"""The demo's text-to-video pipeline: prompt -> text encoder -> flow-matching sampler -> frames.

Shaped like a diffusers pipeline so EasyCache installs on it exactly as on HunyuanVideo's: it has a
``.transformer``, sets ``_num_timesteps`` before its denoising loop, calls the transformer once a
step (twice with classifier-free guidance, under ``cache_context("cond")`` / ``("uncond")``, as
diffusers' ``WanPipeline`` does; or once on the two branches batched, under
``cache_context("cond_uncond")``, with ``batch_guidance = True``), and returns an object with ``.frames``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from .model import DemoConfig, decode, make_scheduler, text_inputs, with_coordinates
from .text import TextEncoder, WordTokenizer


@functools.cache
def _takes_where(transformer_class: type) -> bool:
    """Whether this diffusers' ``cache_context`` takes where the loop is (keyword arguments), read
    once per class rather than on every call (caches wrap it, passing every argument through)."""
    return "kwargs" in inspect.signature(transformer_class.cache_context).parameters


@dataclass
class DemoOutput:
    """``frames``: ``(videos, frames, H, W, 3)`` numpy in [0, 1] (``output_type="np"``), or
    ``(videos, frames, 3, H, W)`` torch (``"pt"``), as diffusers' video pipelines return them."""

    frames: Any


class DemoPipeline:
    """A tiny trained text-to-video model (HunyuanVideo's or Wan's architecture); see ``load_demo_pipeline``."""

    def __init__(self, config: DemoConfig, transformer: torch.nn.Module, text_encoder: TextEncoder):
        self.config = config
        self.transformer = transformer
        self.text_encoder = text_encoder
        self.tokenizer = WordTokenizer(max_length=config.max_words)
        self.scheduler = make_scheduler(config)
        self.progress_bar_enabled = False
        # Classifier-free guidance as one transformer call on the batch [uncond, cond] (CogVideoX's and
        # HunyuanVideo-1.5's way, what FasterCache's branch reuse needs) instead of two calls (Wan's).
        # The same video up to float rounding; it trades memory (twice the batch) for fewer calls.
        self.batch_guidance = False
        self._num_timesteps = None
        self._current_timestep = None

    @property
    def current_timestep(self):
        """The timestep being denoised (None outside a call), as diffusers' pipelines expose it."""
        return self._current_timestep

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def to(self, device) -> "DemoPipeline":
        self.transformer.to(device)
        self.text_encoder.to(device)
        return self

    def set_progress_bar_config(self, disable: bool = True) -> None:
        self.progress_bar_enabled = not disable

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tokens, mask, pooled)`` for the transformer."""
        ids, mask = (t.to(self.device) for t in self.tokenizer(prompts))
        tokens, pooled = self.text_encoder(ids, mask)
        return tokens, mask, pooled

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str = "",
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        output_type: str = "np",
    ) -> DemoOutput:
        """Sample videos. ``num_inference_steps`` (default: the config's) trades time for detail;
        ``guidance_scale`` > 1 is classifier-free guidance against ``negative_prompt`` (two
        transformer calls a step). The size and length are the trained ones (other values are
        refused): the model has seen nothing else."""
        cfg = self.config
        for name, value, trained in (("height", height, cfg.size), ("width", width, cfg.size),
                                     ("num_frames", num_frames, cfg.frames)):
            if value is not None and value != trained:
                raise ValueError(f"the demo model makes {cfg.frames} frames of {cfg.size}x{cfg.size}; got {name}={value}")
        steps = num_inference_steps or cfg.steps
        guidance = cfg.guidance_scale if guidance_scale is None else guidance_scale
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_videos_per_prompt)]
        cond = self.encode_prompt(prompts)
        uncond = self.encode_prompt([negative_prompt] * len(prompts)) if guidance > 1 else None

        shape = (len(prompts), cfg.channels, cfg.frames, cfg.size // cfg.fold, cfg.size // cfg.fold)
        latents = torch.randn(shape, generator=generator, device="cpu").to(self.device)
        self.scheduler.set_timesteps(steps, device=self.device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        for i, t in enumerate(tqdm(timesteps, desc="demo", disable=not self.progress_bar_enabled)):
            self._current_timestep = t
            # Where the loop is, as diffusers' Wan pipeline tells caches that read it (SeaCache).
            where = dict(step_index=i, sigma=float(self.scheduler.sigmas[i]), num_inference_steps=len(timesteps))
            if uncond is not None and self.batch_guidance:
                both = tuple(torch.cat([u, c]) for u, c in zip(uncond, cond))
                velocity_uncond, velocity = self._predict(latents.repeat(2, 1, 1, 1, 1), t, both, "cond_uncond",
                                                          where).chunk(2)
            else:
                velocity = self._predict(latents, t, cond, "cond", where)
                if uncond is not None:
                    velocity_uncond = self._predict(latents, t, uncond, "uncond", where)
            if uncond is not None:
                velocity = velocity_uncond + guidance * (velocity - velocity_uncond)
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
        self._current_timestep = None

        video = decode(latents.float(), cfg.fold)
        if output_type == "pt":
            return DemoOutput(frames=video.cpu())
        return DemoOutput(frames=video.permute(0, 1, 3, 4, 2).cpu().numpy())

    def _predict(self, latents: torch.Tensor, t: torch.Tensor, text: tuple, branch: str, where: dict) -> torch.Tensor:
        # diffusers >= 0.35 names the branch so caches keep one state per branch; older ones lack it,
        # and only newer ones take where the loop is.
        scope = getattr(self.transformer, "cache_context", None)
        if scope is None:
            context = contextlib.nullcontext()
        elif _takes_where(type(self.transformer)):
            context = scope(branch, **where)
        else:
            context = scope(branch)
        with context:
            return self.transformer(
                hidden_states=with_coordinates(latents) if self.config.coordinates else latents,
                timestep=t.expand(latents.shape[0]),
                **text_inputs(self.config, *text),
                return_dict=False,
            )[0]
