"""Tiny random diffusers pipelines for EasyCache's per-model tests, built offline (no hub).

Sizes follow diffusers' own fast-test configurations, shrunk further. Text encoders and tokenizers
are left out where the pipeline takes precomputed embeddings (``prompt_embeds`` and friends), and
VAEs where ``output_type="latent"`` lets the pipeline skip decoding; image-to-video pipelines keep
a tiny VAE to encode their conditioning image.

Each builder returns a :class:`Case`: the pipeline, a function giving one call's keyword arguments
(a fresh generator each time, so every call is reproducible), the number of denoising steps, and
what the test should expect of the model (classifier-free guidance as two calls, two experts).

:func:`tiny_wan_pipeline` is different: a *complete* Wan 2.1 text-to-video pipeline (text encoder,
tokenizer and VAE included) that runs from a prompt and survives ``save_pretrained`` /
``DiffusionPipeline.from_pretrained``, for tests that load a pipeline from a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from PIL import Image

STEPS = 8


@dataclass
class Case:
    pipe: Any
    make_kwargs: Callable[[], dict]
    steps: int = STEPS
    calls_per_step: int = 1          # 2 for classifier-free guidance as two transformer calls
    branches: tuple = ()             # the cache_context names of those calls, when the pipeline uses them
    experts: tuple = ("transformer",)
    return_dict: bool = True         # False: the pipeline takes no ``return_dict`` (the demo); read ``.frames``

    def __call__(self, **overrides) -> torch.Tensor:
        kwargs = self.make_kwargs()
        kwargs.update(overrides)
        out = self.pipe(**kwargs, return_dict=False)[0] if self.return_dict else self.pipe(**kwargs).frames
        return out if torch.is_tensor(out) else torch.as_tensor(out)


def _embeds(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def _image(size: int = 16) -> Image.Image:
    g = torch.Generator().manual_seed(7)
    pixels = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------- HunyuanVideo
def hunyuan_t2v() -> Case:
    from easycache.testing.tiny_hunyuan import PROMPT_TEMPLATE, tiny_pipeline

    pipe = tiny_pipeline()

    def kwargs():
        return dict(prompt="a cat walks on the grass", negative_prompt="a dog", true_cfg_scale=4.0,
                    prompt_template=PROMPT_TEMPLATE, num_inference_steps=STEPS, guidance_scale=6.0,
                    height=16, width=16, num_frames=5, max_sequence_length=16, output_type="latent",
                    generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"))


def _hunyuan_vae():
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4, up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, act_fn="silu", norm_num_groups=4,
        scaling_factor=0.476986, spatial_compression_ratio=8, temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


def hunyuan_i2v() -> Case:
    """HunyuanVideoImageToVideoPipeline, ``latent_concat``: input 4 latent + 4 image + 1 mask channels."""
    from diffusers import (FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline,
                           HunyuanVideoTransformer3DModel)

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * 4 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=False,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), image_condition_type="latent_concat",
    ).eval()
    pipe = _quiet(HunyuanVideoImageToVideoPipeline(
        transformer=transformer, vae=_hunyuan_vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, image_processor=None,
    ))
    text = dict(prompt_embeds=_embeds(1, 1, 6, 16), prompt_attention_mask=torch.ones(1, 6),
                pooled_prompt_embeds=_embeds(2, 1, 8),
                negative_prompt_embeds=_embeds(3, 1, 6, 16), negative_prompt_attention_mask=torch.ones(1, 6),
                negative_pooled_prompt_embeds=_embeds(4, 1, 8))

    def kwargs():
        return dict(image=_image(16), **text, true_cfg_scale=4.0, num_inference_steps=STEPS, height=16, width=16,
                    num_frames=9, output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2)  # true CFG as two calls, no cache_context names


def hunyuan_skyreels_i2v() -> Case:
    """HunyuanSkyreelsImageToVideoPipeline: input 4 latent + 4 image channels, distilled guidance embedded
    (``guidance_embeds``) and true CFG as two calls without cache_context names."""
    from diffusers import (FlowMatchEulerDiscreteScheduler, HunyuanSkyreelsImageToVideoPipeline,
                           HunyuanVideoTransformer3DModel)

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * 4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
    ).eval()
    pipe = _quiet(HunyuanSkyreelsImageToVideoPipeline(
        transformer=transformer, vae=_hunyuan_vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None,
    ))
    text = dict(prompt_embeds=_embeds(1, 1, 6, 16), prompt_attention_mask=torch.ones(1, 6),
                pooled_prompt_embeds=_embeds(2, 1, 8),
                negative_prompt_embeds=_embeds(3, 1, 6, 16), negative_prompt_attention_mask=torch.ones(1, 6),
                negative_pooled_prompt_embeds=_embeds(4, 1, 8))

    def kwargs():
        return dict(image=_image(16), **text, true_cfg_scale=4.0, guidance_scale=1.0, num_inference_steps=STEPS,
                    height=16, width=16, num_frames=9, output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2)


def _hunyuan15_transformer(task_type):
    from diffusers import HunyuanVideo15Transformer3DModel

    torch.manual_seed(0)
    return HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=32,
        image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=16, task_type=task_type,
    ).eval()


def _hunyuan15_vae():
    from diffusers import AutoencoderKLHunyuanVideo15

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo15(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16), layers_per_block=1,
        spatial_compression_ratio=4, temporal_compression_ratio=2, downsample_match_channel=False,
        upsample_match_channel=False,
    ).eval()


def _hunyuan15_text():
    return dict(prompt_embeds=_embeds(1, 1, 6, 16), prompt_embeds_mask=torch.ones(1, 6, dtype=torch.long),
                prompt_embeds_2=_embeds(2, 1, 5, 32), prompt_embeds_mask_2=torch.ones(1, 5, dtype=torch.long),
                negative_prompt_embeds=_embeds(3, 1, 6, 16),
                negative_prompt_embeds_mask=torch.ones(1, 6, dtype=torch.long),
                negative_prompt_embeds_2=_embeds(4, 1, 5, 32),
                negative_prompt_embeds_mask_2=torch.ones(1, 5, dtype=torch.long))


def hunyuan15_t2v() -> Case:
    """HunyuanVideo15Pipeline: guider-driven CFG (``pred_cond`` / ``pred_uncond``), input 4 + 4 + 1 channels."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline
    from diffusers.guiders import ClassifierFreeGuidance

    pipe = _quiet(HunyuanVideo15Pipeline(
        transformer=_hunyuan15_transformer("t2v"), vae=_hunyuan15_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder=None, text_encoder_2=None, tokenizer=None,
        tokenizer_2=None, guider=ClassifierFreeGuidance(guidance_scale=4.0),
    ))
    text = _hunyuan15_text()

    def kwargs():
        return dict(**text, num_inference_steps=STEPS, height=16, width=16, num_frames=5, output_type="latent",
                    generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("pred_cond", "pred_uncond"))


def _siglip_image_processor(size: int):
    try:  # transformers >= 5 without torchvision: the PIL backend, named (the plain name warns and falls back)
        from transformers import SiglipImageProcessorPil as processor
    except ImportError:
        from transformers import SiglipImageProcessor as processor
    return processor(size={"height": size, "width": size})


def hunyuan15_i2v() -> Case:
    """HunyuanVideo15ImageToVideoPipeline: a tiny SigLIP vision encoder gives the image tokens (hidden size =
    the transformer's ``image_embed_dim``); input 4 latent + 4 first-frame + 1 mask channels; the size comes
    from the image and the transformer's ``target_size`` (16 here)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideo15ImageToVideoPipeline
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    image_encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16,
        patch_size=8,
    )).eval()
    pipe = _quiet(HunyuanVideo15ImageToVideoPipeline(
        transformer=_hunyuan15_transformer("i2v"), vae=_hunyuan15_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder=None, text_encoder_2=None, tokenizer=None,
        tokenizer_2=None, guider=ClassifierFreeGuidance(guidance_scale=4.0), image_encoder=image_encoder,
        feature_extractor=_siglip_image_processor(16),
    ))
    text = _hunyuan15_text()

    def kwargs():
        return dict(image=_image(16), **text, num_inference_steps=STEPS, num_frames=5, output_type="latent",
                    generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("pred_cond", "pred_uncond"))


# ---------------------------------------------------------------------------------- Wan
def _wan_transformer(in_channels=16, out_channels=16, image_dim=None, seed=0):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=image_dim,
    ).eval()


def _wan_vae(z_dim=16):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=3, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True]).eval()


def _wan_text():
    return dict(prompt_embeds=_embeds(1, 1, 8, 32), negative_prompt_embeds=_embeds(2, 1, 8, 32))


def _wan_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=5.0)


def wan21_t2v() -> Case:
    from diffusers import WanPipeline

    pipe = _quiet(WanPipeline(transformer=_wan_transformer(), vae=None, scheduler=_wan_scheduler(),
                              text_encoder=None, tokenizer=None))
    text = _wan_text()

    def kwargs():
        return dict(**text, guidance_scale=5.0, num_inference_steps=STEPS, height=16, width=16, num_frames=5,
                    output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"))


def wan21_i2v() -> Case:
    """WanImageToVideoPipeline (Wan 2.1): input 16 latent + 4 mask + 16 image channels = 36, output 16."""
    from diffusers import WanImageToVideoPipeline

    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=16,
        intermediate_size=16, patch_size=4,
    )).eval()
    pipe = _quiet(WanImageToVideoPipeline(
        transformer=_wan_transformer(in_channels=36, out_channels=16, image_dim=4), vae=_wan_vae(),
        scheduler=_wan_scheduler(), text_encoder=None, tokenizer=None, image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=16, size=16),
    ))
    text = _wan_text()

    def kwargs():
        return dict(image=_image(16), **text, guidance_scale=5.0,
                    num_inference_steps=STEPS, height=16, width=16, num_frames=5, output_type="latent",
                    generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"))


def wan22_t2v_two_experts() -> Case:
    """WanPipeline with ``transformer_2`` and ``boundary_ratio``: high-noise expert, then low-noise expert."""
    from diffusers import WanPipeline

    pipe = _quiet(WanPipeline(transformer=_wan_transformer(seed=0), transformer_2=_wan_transformer(seed=1),
                              boundary_ratio=0.85, vae=None, scheduler=_wan_scheduler(), text_encoder=None,
                              tokenizer=None))
    text = _wan_text()

    def kwargs():
        return dict(**text, guidance_scale=5.0, guidance_scale_2=3.0, num_inference_steps=STEPS, height=16,
                    width=16, num_frames=5, output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"),
                experts=("transformer", "transformer_2"))


def wan22_i2v_two_experts() -> Case:
    """WanImageToVideoPipeline as Wan 2.2 I2V-A14B: two experts, 36 input channels, no image encoder."""
    from diffusers import WanImageToVideoPipeline

    pipe = _quiet(WanImageToVideoPipeline(
        transformer=_wan_transformer(in_channels=36, out_channels=16, seed=0),
        transformer_2=_wan_transformer(in_channels=36, out_channels=16, seed=1), boundary_ratio=0.85,
        vae=_wan_vae(), scheduler=_wan_scheduler(), text_encoder=None, tokenizer=None, image_encoder=None,
        image_processor=None,
    ))
    text = _wan_text()

    def kwargs():
        return dict(image=_image(16), **text, guidance_scale=5.0, guidance_scale_2=3.0, num_inference_steps=STEPS,
                    height=16, width=16, num_frames=5, output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"),
                experts=("transformer", "transformer_2"))


def wan22_ti2v_t2v() -> Case:
    """WanPipeline with ``expand_timesteps=True`` (Wan 2.2 TI2V-5B layout): timesteps given per token."""
    from diffusers import WanPipeline

    pipe = _quiet(WanPipeline(transformer=_wan_transformer(), vae=None, scheduler=_wan_scheduler(),
                              text_encoder=None, tokenizer=None, expand_timesteps=True))
    text = _wan_text()

    def kwargs():
        return dict(**text, guidance_scale=5.0, num_inference_steps=STEPS, height=16, width=16, num_frames=5,
                    output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"))


def wan22_ti2v_i2v() -> Case:
    """WanImageToVideoPipeline with ``expand_timesteps=True``: the first frame's tokens carry timestep 0,
    the others the step's timestep, so the first timestep of the call is 0 at every step."""
    from diffusers import WanImageToVideoPipeline

    pipe = _quiet(WanImageToVideoPipeline(
        transformer=_wan_transformer(), vae=_wan_vae(), scheduler=_wan_scheduler(), text_encoder=None,
        tokenizer=None, image_encoder=None, image_processor=None, expand_timesteps=True,
    ))
    text = _wan_text()

    def kwargs():
        return dict(image=_image(16), **text, guidance_scale=5.0, num_inference_steps=STEPS, height=16, width=16,
                    num_frames=5, output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"))


# ---------------------------------------------------------------------------------- CogVideoX
def _cogvideox_transformer(in_channels, out_channels, i2v):
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=in_channels, out_channels=out_channels,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2, sample_frames=9,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=i2v, use_learned_positional_embeddings=i2v,
    ).eval()


def _cogvideox_vae():
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
    ).eval()


def cogvideox_t2v() -> Case:
    """CogVideoXPipeline: CFG batched into one call (``cond_uncond``); latents are (B, F, C, H, W)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline

    pipe = _quiet(CogVideoXPipeline(transformer=_cogvideox_transformer(4, 4, False), vae=_cogvideox_vae(),
                                    scheduler=CogVideoXDDIMScheduler(), text_encoder=None, tokenizer=None))
    text = dict(prompt_embeds=_embeds(1, 1, 16, 32), negative_prompt_embeds=_embeds(2, 1, 16, 32))

    def kwargs():
        return dict(**text, guidance_scale=6.0, num_inference_steps=STEPS, height=16, width=16, num_frames=8,
                    output_type="latent", generator=_generator())

    return Case(pipe, kwargs, branches=("cond_uncond",))


def cogvideox_i2v() -> Case:
    """CogVideoXImageToVideoPipeline: input 4 latent + 4 image channels along dim 2, output 4."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline

    pipe = _quiet(CogVideoXImageToVideoPipeline(
        transformer=_cogvideox_transformer(8, 4, True), vae=_cogvideox_vae(), scheduler=CogVideoXDDIMScheduler(),
        text_encoder=None, tokenizer=None,
    ))
    text = dict(prompt_embeds=_embeds(1, 1, 16, 32), negative_prompt_embeds=_embeds(2, 1, 16, 32))

    def kwargs():
        return dict(image=_image(16), **text, guidance_scale=6.0, num_inference_steps=STEPS, height=16, width=16,
                    num_frames=8, output_type="latent", generator=_generator())

    return Case(pipe, kwargs, branches=("cond_uncond",))


# ---------------------------------------------------------------------------------- LTX, Mochi, Flux
def _ltx_transformer():
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    return LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=32,
    ).eval()


def _ltx_vae():
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(0)
    return AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    ).eval()


def _ltx_text():
    return dict(prompt_embeds=_embeds(1, 1, 8, 32), prompt_attention_mask=torch.ones(1, 8, dtype=torch.long),
                negative_prompt_embeds=_embeds(2, 1, 8, 32),
                negative_prompt_attention_mask=torch.ones(1, 8, dtype=torch.long))


def ltx_t2v() -> Case:
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline

    pipe = _quiet(LTXPipeline(transformer=_ltx_transformer(), vae=_ltx_vae(),
                              scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=None, tokenizer=None))
    text = _ltx_text()

    def kwargs():
        return dict(**text, guidance_scale=3.0, num_inference_steps=STEPS, height=32, width=32, num_frames=9,
                    output_type="latent", generator=_generator())

    return Case(pipe, kwargs, branches=("cond_uncond",))


def ltx_i2v() -> Case:
    """LTXImageToVideoPipeline: packed latents (B, tokens, C); timesteps per token, the first frame's
    tokens at 0 (the conditioning image), the others at the step's timestep."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXImageToVideoPipeline

    pipe = _quiet(LTXImageToVideoPipeline(transformer=_ltx_transformer(), vae=_ltx_vae(),
                                          scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=None,
                                          tokenizer=None))
    text = _ltx_text()

    def kwargs():
        return dict(image=_image(32), **text, guidance_scale=3.0, num_inference_steps=STEPS, height=32, width=32,
                    num_frames=9, output_type="latent", generator=_generator())

    return Case(pipe, kwargs, branches=("cond_uncond",))


def mochi_t2v() -> Case:
    from diffusers import FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel

    torch.manual_seed(0)
    transformer = MochiTransformer3DModel(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16,
        in_channels=12, out_channels=None, qk_norm="rms_norm", text_embed_dim=32, time_embed_dim=4,
        activation_fn="swiglu", max_sequence_length=16,
    ).eval()
    pipe = _quiet(MochiPipeline(transformer=transformer, vae=None, scheduler=FlowMatchEulerDiscreteScheduler(),
                                text_encoder=None, tokenizer=None))
    text = dict(prompt_embeds=_embeds(1, 1, 8, 32), prompt_attention_mask=torch.ones(1, 8, dtype=torch.long),
                negative_prompt_embeds=_embeds(2, 1, 8, 32),
                negative_prompt_attention_mask=torch.ones(1, 8, dtype=torch.long))

    def kwargs():
        return dict(**text, guidance_scale=4.5, num_inference_steps=STEPS, height=16, width=16, num_frames=7,
                    output_type="latent", generator=_generator())

    return Case(pipe, kwargs, branches=("cond_uncond",))


def flux_t2i() -> Case:
    """FluxPipeline (an image model): true CFG as two calls, ``cond`` / ``uncond``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    ).eval()
    pipe = _quiet(FluxPipeline(transformer=transformer, vae=None, scheduler=FlowMatchEulerDiscreteScheduler(),
                               text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None))
    text = dict(prompt_embeds=_embeds(1, 1, 8, 32), pooled_prompt_embeds=_embeds(2, 1, 32),
                negative_prompt_embeds=_embeds(3, 1, 8, 32), negative_pooled_prompt_embeds=_embeds(4, 1, 32))

    def kwargs():
        return dict(**text, true_cfg_scale=4.0, num_inference_steps=STEPS, height=32, width=32,
                    output_type="latent", generator=_generator())

    return Case(pipe, kwargs, calls_per_step=2, branches=("cond", "uncond"))


# ---------------------------------------------------------------------------------- the embedded demo
DEMO_STEPS = 8  # the demo's own default is 30: 8 keep the test fast and still leave steps to skip


def demo_t2v() -> Case:
    """The shipped demo (``easycache.demo``, trained weights, HunyuanVideo's transformer): true CFG as two
    calls under ``cache_context("cond")`` / ``("uncond")``; no ``return_dict``, frames in ``.frames``."""
    from easycache.demo import load_demo_pipeline

    pipe = load_demo_pipeline()

    def kwargs():
        return dict(prompt="a red circle moving left", negative_prompt="", guidance_scale=4.0,
                    num_inference_steps=DEMO_STEPS, output_type="pt", generator=_generator())

    return Case(pipe, kwargs, steps=DEMO_STEPS, calls_per_step=2, branches=("cond", "uncond"), return_dict=False)


# ---------------------------------------------------------------------------------- a complete Wan 2.1 pipeline
def _wan_tokenizer(max_length: int = 512):
    """A T5-like word-level tokenizer (``</s>`` appended, ``<pad>`` = 0) over tiny_hunyuan's vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from easycache.testing.tiny_hunyuan import WORDS

    vocab = {token: i for i, token in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=max_length, padding_side="right")


def tiny_wan_pipeline(seed: int = 0):
    """A complete tiny diffusers ``WanPipeline`` (Wan 2.1 text-to-video), random weights, built offline.

    Components: ``WanTransformer3DModel`` (2 layers, hidden 24, text_dim 32, patch (1, 2, 2)), a tiny
    ``AutoencoderKLWan`` (z_dim 16, 8x spatial / 4x temporal compression), a ``UMT5EncoderModel`` text
    encoder (d_model 32 = the transformer's text_dim, 2 layers), a word-level ``PreTrainedTokenizerFast``
    (``</s>`` appended, right padding, words outside its small vocabulary map to ``<unk>``) and a
    ``FlowMatchEulerDiscreteScheduler`` (shift 5). No ``transformer_2``, no ``expand_timesteps``: EasyCache
    gives it Wan 2.1's preset (thresh 0.05, 10 warmup steps).

    It runs from a prompt (``pipe(prompt=..., height=16, width=16, num_frames=5, ..., output_type="np")
    .frames`` is ``(1, 5, 16, 16, 3)`` in [0, 1]), and ``save_pretrained`` then
    ``DiffusionPipeline.from_pretrained(folder)`` gives it back offline: the same weights bit for bit,
    the same frames up to float rounding (weights read from a file sit at other memory alignments, and
    CPU matrix kernels round differently there: ~1e-7). Its progress bar is off (not saved).
    """
    from diffusers import WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _wan_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )).eval()
    pipe = WanPipeline(transformer=_wan_transformer(seed=seed), vae=_wan_vae(), scheduler=_wan_scheduler(),
                       text_encoder=text_encoder, tokenizer=tokenizer)
    return _quiet(pipe)


# The diffusers release each tiny case needs (its pipeline class, or for Wan 2.2 the second expert and
# expanded timesteps, which WanPipeline gained in 0.35): older ones skip, naming it.
DIFFUSERS_NEEDED = {
    "HunyuanVideoPipeline": "0.32",
    "HunyuanVideoImageToVideoPipeline": "0.33",
    "HunyuanSkyreelsImageToVideoPipeline": "0.33",
    "HunyuanVideo15Pipeline": "0.36",
    "HunyuanVideo15ImageToVideoPipeline": "0.36",
    "WanPipeline-2.1": "0.33",
    "WanImageToVideoPipeline-2.1": "0.33",
    "WanPipeline-2.2-two-experts": "0.35",
    "WanImageToVideoPipeline-2.2-two-experts": "0.35",
    "WanPipeline-2.2-expand-timesteps": "0.35",
    "WanImageToVideoPipeline-2.2-expand-timesteps": "0.35",
    "CogVideoXPipeline": "0.31",
    "CogVideoXImageToVideoPipeline": "0.31",
    "LTXPipeline": "0.32",
    "LTXImageToVideoPipeline": "0.32",
    "MochiPipeline": "0.32",
    "FluxPipeline": "0.32",  # the case runs true CFG (negative_prompt_embeds), which FluxPipeline gained in 0.32
    "DemoPipeline": "0.31",  # the project's own pipeline, on diffusers' transformer or demo/hunyuan_torch.py
}

BUILDERS = {
    "HunyuanVideoPipeline": hunyuan_t2v,
    "HunyuanVideoImageToVideoPipeline": hunyuan_i2v,
    "HunyuanSkyreelsImageToVideoPipeline": hunyuan_skyreels_i2v,
    "HunyuanVideo15Pipeline": hunyuan15_t2v,
    "HunyuanVideo15ImageToVideoPipeline": hunyuan15_i2v,
    "WanPipeline-2.1": wan21_t2v,
    "WanImageToVideoPipeline-2.1": wan21_i2v,
    "WanPipeline-2.2-two-experts": wan22_t2v_two_experts,
    "WanImageToVideoPipeline-2.2-two-experts": wan22_i2v_two_experts,
    "WanPipeline-2.2-expand-timesteps": wan22_ti2v_t2v,
    "WanImageToVideoPipeline-2.2-expand-timesteps": wan22_ti2v_i2v,
    "CogVideoXPipeline": cogvideox_t2v,
    "CogVideoXImageToVideoPipeline": cogvideox_i2v,
    "LTXPipeline": ltx_t2v,
    "LTXImageToVideoPipeline": ltx_i2v,
    "MochiPipeline": mochi_t2v,
    "FluxPipeline": flux_t2i,
    "DemoPipeline": demo_t2v,
}
