"""A tiny random diffusers HunyuanVideo pipeline, built offline (no hub): sizes from diffusers' own
fast-test configuration, tokenizers built locally with the ``tokenizers`` package.

diffusers' HunyuanVideo classes (0.32 and newer) are imported where a model is built, so ``generate``
and the vocabulary import on any diffusers; building says which version it needs on an older one."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel, PreTrainedTokenizerFast

from ..versions import require_diffusers_class

WORDS = "a an the cat dog walks runs on in grass sky red blue green circle square moving left right up down".split()
PROMPT_TEMPLATE = {"template": "{}", "crop_start": 0}


def word_tokenizer(max_length: int = 16) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a small vocabulary; unknown words map to ``<unk>``."""
    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=max_length,
        padding_side="right",
    )


def tiny_transformer(seed: int = 0, in_channels: int = 4, out_channels: int = 4):
    """diffusers' ``HunyuanVideoTransformer3DModel``, one block of each kind, random weights."""
    require_diffusers_class("HunyuanVideoTransformer3DModel", "the tiny HunyuanVideo transformer")
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(seed)
    return HunyuanVideoTransformer3DModel(
        in_channels=in_channels,
        out_channels=out_channels,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    ).eval()


def tiny_pipeline(seed: int = 0):
    """The whole ``HunyuanVideoPipeline``: transformer, VAE, Llama and CLIP text encoders, scheduler (shift 7)."""
    require_diffusers_class("HunyuanVideoPipeline", "the tiny HunyuanVideo pipeline")
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    transformer = tiny_transformer(seed)
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    vocab_size = len(WORDS) + 4
    torch.manual_seed(seed)
    text_encoder = LlamaModel(
        LlamaConfig(
            bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16, intermediate_size=37,
            num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2, vocab_size=vocab_size,
        )
    )
    torch.manual_seed(seed)
    text_encoder_2 = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=8, intermediate_size=37,
            num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size, projection_dim=32,
            max_position_embeddings=77,
        )
    )
    pipe = HunyuanVideoPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=word_tokenizer(),
        tokenizer_2=word_tokenizer(77),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, steps: int = 10, seed: int = 0, **overrides) -> torch.Tensor:
    """One small video (frames in [0, 1], shape (frames, 3, H, W)), deterministic for a seed."""
    kwargs = dict(
        prompt="a cat walks on the grass",
        prompt_template=PROMPT_TEMPLATE,
        num_inference_steps=steps,
        guidance_scale=6.0,
        height=16,
        width=16,
        num_frames=9,
        max_sequence_length=16,
        output_type="pt",
        generator=torch.Generator("cpu").manual_seed(seed),
    )
    kwargs.update(overrides)
    return pipe(**kwargs).frames[0]


def generate_cached(pipe, config, steps: int = 10, **overrides):
    """``generate`` with EasyCache installed at ``config``: the video, the summary and the records
    (the cache removed afterwards)."""
    import easycache

    cache = easycache.apply_easycache(pipe, config)
    try:
        video = generate(pipe, steps=steps, **overrides)
        return video, cache.summary(), list(cache.records)
    finally:
        easycache.remove_easycache(pipe)
