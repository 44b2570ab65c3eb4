"""Run Tencent's real HunyuanVideo-1.5 code (outside this repo) on CPU with tiny random checkpoints.

The checkout (https://github.com/Tencent-Hunyuan/HunyuanVideo-1.5) is named by ``HYVIDEO15_ROOT``;
none of its code lives here. ``write_tiny_checkpoints(model_path)`` writes seeded tiny weights in
its own ``--model_path`` layout (``transformer/<version>/``, ``vae/``, ``scheduler/``,
``text_encoder/llm``, ``text_encoder/byt5-small``, ``text_encoder/Glyph-SDXL-v2``,
``vision_encoder/siglip``), building every model with the checkout's own classes, and
``enable_cpu_shims(root)`` makes the checkout import and run on CPU.

What is shimmed (``enable_cpu_shims``), all undone on exit:

- CUDA-only: the ``flash_attn`` package (a CUDA kernel package; attention in ``hyvideo`` picks it
  when importable, as it is on every GPU install Tencent documents). A CPU stand-in provides the
  three functions ``hyvideo.utils.flash_attn_no_pad`` uses: ``flash_attn_varlen_qkvpacked_func``
  (SDPA inside each ``cu_seqlens`` segment) and ``bert_padding.unpad_input`` / ``pad_input``. Without
  it hyvideo falls back to ``flex_attention`` compiled at import, which on CPU compiles C++ for
  ~35 s per new shape.
- CUDA-only: ``torch.autocast(device_type="cuda", ...)`` in the two pipeline modules, which on a
  CPU-only torch disables itself and leaves bf16 latents meeting fp32 weights; the same autocast
  runs on the CPU instead, its float16 (the VAE's) as bfloat16.
- CUDA-only: half precision for the VAE (``get_vae_inference_config`` returns float16): a CPU has
  no fast fp16 convolution (62 s against 0.7 s for one tiny 480p frame), so the VAE loads in
  float32 (computing in bf16 under the autocast above where the CPU autocast casts).
- CUDA-only: the pipelines' hard-coded ``execution_device='cuda'`` (``create_pipeline``,
  ``create_sr_pipeline``) becomes ``cpu`` when no GPU is present.
- CUDA-only: ``ParallelDims.build_mesh("cuda")`` (the NCCL device mesh ``initialize_parallel_state``
  builds, also for one process) builds the same mesh on ``cpu`` (gloo); the caller provides the
  single-process rendezvous environment (``single_process_env``).
- Not CUDA: ``torchvision`` must not be installed in this venv; ``hyvideo``'s pipeline imports
  ``torchvision.transforms`` for the I2V reference image (Resize with Lanczos, CenterCrop, ToTensor,
  Normalize), so a stub with those four, on PIL and torch, is in ``sys.modules`` while the pipeline
  module is imported, and removed right after.

Not shimmed: ``--group_offloading`` (diffusers' group offload onto ``cuda`` with streams) needs a GPU,
so runs pass ``--group_offloading false`` (a flag of generate.py); ``--offloading`` (the default) works
(the "GPU" is the CPU). Everything else (argument parsing, loading, prompt encoding with the chat
template, byT5, SigLIP, the VAE, the scheduler, the denoising loop, CFG, I2V conditioning, meanflow)
is Tencent's.

The tiny transformer has no glyph byT5 mapper and no vision projection: their input widths (1472
and 1152) are fixed by the pipeline and would make the tiny model ten times slower; the pipeline
still loads and runs byT5 and SigLIP. Sizes are fixed by the pipeline too: 480p means a ~480x848
frame, and its 16x VAE gives 30x53 latent tokens per latent frame.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import importlib.util
import json
import socket
import sys
import types
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from easycache.testing.tencent_tiny import (  # shared with the HunyuanVideo harness
    Patches,
    checkout_or_skip_reason,
    randomize_,
    word_level_backend,
)

HYVIDEO15_ROOT_ENV = "HYVIDEO15_ROOT"
SEED = 1234

LATENT_CHANNELS = 32  # hard-coded by the 1.5 pipeline (SR latents, VAE)
LLM_HIDDEN = 32  # text_states_dim (3584 for the real Qwen2.5-VL-7B)
TINY_DIT = {
    "patch_size": [1, 1, 1],
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "concat_condition": True,
    "hidden_size": 32,
    "heads_num": 2,
    "mlp_width_ratio": 2.0,
    "mm_double_blocks_depth": 1,
    "mm_single_blocks_depth": 1,
    "rope_dim_list": [4, 6, 6],
    "guidance_embed": False,
    "text_projection": "single_refiner",
    "text_states_dim": LLM_HIDDEN,
    "text_pool_type": None,
    "attn_mode": "flash",
    "glyph_byT5_v2": False,
    "vision_projection": "none",
    "vision_states_dim": 1152,
    "use_cond_type_embedding": False,
    "ideal_resolution": "480p",
}
# transformer/<version>: the folders generate.py picks (get_transformer_version) that the tests use.
VERSIONS = {
    "480p_t2v": {"ideal_task": "t2v"},
    "480p_t2v_distilled": {"ideal_task": "t2v"},
    "480p_i2v_distilled": {"ideal_task": "i2v"},
    "480p_i2v_step_distilled": {"ideal_task": "i2v", "use_meanflow": True},
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": LATENT_CHANNELS,
    "block_out_channels": [8, 8, 16, 16, 64],
    "layers_per_block": 1,
    "ffactor_spatial": 16,
    "ffactor_temporal": 4,
    "sample_size": 256,
    "sample_tsize": 64,
    "scaling_factor": 1.03682,
}
SIGLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 16}
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LLM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_WORDS = "a cat dog walks runs on the grass in park under blue sky with sun red ball rolls photo of".split()


def hyvideo15_root_or_skip_reason() -> Tuple[Optional[Path], Optional[str]]:
    """(root, None) for a usable HunyuanVideo-1.5 checkout, else (None, why the tests skip)."""
    return checkout_or_skip_reason(HYVIDEO15_ROOT_ENV, ["generate.py", "hyvideo/pipelines/hunyuan_video_pipeline.py"],
                                   "Tencent-Hunyuan/HunyuanVideo-1.5")


def single_process_env() -> dict:
    """What torchrun would set for one process (the device mesh needs a rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


# ----------------------------------------------------------------------------- CPU shims
def _unpad_input(hidden_states, attention_mask, unused_mask=None):
    """flash_attn.bert_padding.unpad_input: the valid tokens packed, their indices and cu_seqlens."""
    seqlens = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return flat[indices], indices, cu_seqlens, int(seqlens.max()), seqlens


def _pad_input(hidden_states, indices, batch, seqlen):
    """flash_attn.bert_padding.pad_input: scatter packed tokens back, zeros elsewhere."""
    out = hidden_states.new_zeros(batch * seqlen, *hidden_states.shape[1:])
    out[indices] = hidden_states
    return out.reshape(batch, seqlen, *hidden_states.shape[1:])


def _flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None,
                                      causal=False, **_unused):
    """flash_attn_varlen_qkvpacked_func on CPU: [total, 3, heads, dim] packed, attention per segment."""
    out = torch.zeros_like(qkv[:, 0])
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds, bounds[1:]):
        if end > start:
            q, k, v = (qkv[start:end, i].transpose(0, 1) for i in range(3))
            out[start:end] = F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout_p, is_causal=causal, scale=softmax_scale).transpose(0, 1)
    return out


def _flash_attn_stub() -> dict:
    package = types.ModuleType("flash_attn")
    package.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None, is_package=True)
    package.__path__ = []
    package.flash_attn_varlen_qkvpacked_func = _flash_attn_varlen_qkvpacked_func
    padding = types.ModuleType("flash_attn.bert_padding")
    padding.__spec__ = importlib.machinery.ModuleSpec("flash_attn.bert_padding", None)
    padding.pad_input, padding.unpad_input = _pad_input, _unpad_input
    package.bert_padding = padding
    return {"flash_attn": package, "flash_attn.bert_padding": padding}


class _TorchWithCudaAutocastOnCpu:
    """Forwards to ``torch``; only ``torch.autocast(device_type="cuda", ...)`` runs on the CPU, its
    float16 as bfloat16 (the CPU's fast half type)."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def autocast(device_type="cuda", dtype=None, *args, **kwargs):
        if device_type == "cuda" and not torch.cuda.is_available():
            device_type = "cpu"
            dtype = torch.bfloat16 if dtype == torch.float16 else dtype
        return torch.autocast(device_type, dtype, *args, **kwargs)


def _torchvision_stub() -> types.ModuleType:
    """torchvision.transforms' Compose, Resize (Lanczos), CenterCrop, ToTensor, Normalize, on PIL."""
    from PIL import Image

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

        def __call__(self, x):
            for t in self.transforms:
                x = t(x)
            return x

    class InterpolationMode:
        LANCZOS = Image.LANCZOS

    class Resize:
        def __init__(self, size, interpolation=Image.BILINEAR):
            self.size, self.interpolation = size, interpolation

        def __call__(self, image):
            return image.resize((self.size[1], self.size[0]), self.interpolation)

    class CenterCrop:
        def __init__(self, size):
            self.size = size

        def __call__(self, image):
            (h, w), (W, H) = self.size, image.size
            left, top = int(round((W - w) / 2.0)), int(round((H - h) / 2.0))
            return image.crop((left, top, left + w, top + h))

    class ToTensor:
        def __call__(self, image):
            return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = mean, std

        def __call__(self, x):
            mean = torch.tensor(self.mean).view(-1, 1, 1)
            std = torch.tensor(self.std).view(-1, 1, 1)
            return (x - mean) / std

    transforms = types.ModuleType("torchvision.transforms")
    for cls in (Compose, InterpolationMode, Resize, CenterCrop, ToTensor, Normalize):
        setattr(transforms, cls.__name__, cls)
    package = types.ModuleType("torchvision")
    package.transforms = transforms
    return package


@contextlib.contextmanager
def enable_cpu_shims(root: Path) -> Iterator[types.SimpleNamespace]:
    """Make the HunyuanVideo-1.5 checkout importable and runnable on CPU; yields its modules.

    On exit every change is undone, the default process group (if one was made) destroyed, and the
    ``hyvideo`` modules imported here removed from ``sys.modules``.
    """
    root = str(Path(root).resolve())
    modules_before = set(sys.modules)
    patches = Patches()
    try:
        import diffusers.pipelines.pipeline_utils  # noqa: F401  (before any stub: they probe packages)
        import transformers  # noqa: F401

        sys.path.insert(0, root)
        if importlib.util.find_spec("torchvision") is None:
            patches.set_item(sys.modules, "torchvision", _torchvision_stub())
            patches.set_item(sys.modules, "torchvision.transforms", sys.modules["torchvision"].transforms)
        pipeline = importlib.import_module("hyvideo.pipelines.hunyuan_video_pipeline")
        sr_pipeline = importlib.import_module("hyvideo.pipelines.hunyuan_video_sr_pipeline")
        patches.undo()  # the torchvision stub only while the pipeline modules import
        parallel_states = importlib.import_module("hyvideo.commons.parallel_states")
        commons = importlib.import_module("hyvideo.commons")
        transformer = importlib.import_module("hyvideo.models.transformers.hunyuanvideo_1_5_transformer")

        if importlib.util.find_spec("flash_attn") is None:
            for name, module in _flash_attn_stub().items():
                patches.set_item(sys.modules, name, module)
        if not torch.cuda.is_available():
            proxy = _TorchWithCudaAutocastOnCpu()
            patches.set(pipeline, "torch", proxy)
            patches.set(sr_pipeline, "torch", proxy)
            init = pipeline.HunyuanVideo_1_5_Pipeline.__init__

            @functools.wraps(init)
            def init_on_cpu(self, *args, **kwargs):
                if str(kwargs.get("execution_device")) == "cuda":
                    kwargs["execution_device"] = "cpu"
                return init(self, *args, **kwargs)

            patches.set(pipeline.HunyuanVideo_1_5_Pipeline, "__init__", init_on_cpu)
            vae_config = pipeline.HunyuanVideo_1_5_Pipeline.get_vae_inference_config

            def vae_config_on_cpu(memory_limitation=None):
                return {**vae_config(memory_limitation), "dtype": torch.float32}

            patches.set(pipeline.HunyuanVideo_1_5_Pipeline, "get_vae_inference_config", staticmethod(vae_config_on_cpu))
            build_mesh = parallel_states.ParallelDims.build_mesh

            def build_mesh_on_cpu(self, device_type):
                return build_mesh(self, "cpu" if device_type == "cuda" else device_type)

            patches.set(parallel_states.ParallelDims, "build_mesh", build_mesh_on_cpu)

        yield types.SimpleNamespace(pipeline=pipeline, sr_pipeline=sr_pipeline, commons=commons,
                                    parallel_states=parallel_states, transformer=transformer, root=Path(root))
    finally:
        patches.undo()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name in set(sys.modules) - modules_before:
            if name == "hyvideo" or name.startswith("hyvideo."):
                del sys.modules[name]
        if root in sys.path:
            sys.path.remove(root)


# ----------------------------------------------------------------------------- tiny checkpoints
def _write_transformers(model_path: Path, generator: torch.Generator) -> None:
    from hyvideo.models.transformers.hunyuanvideo_1_5_transformer import HunyuanVideo_1_5_DiffusionTransformer

    state = None
    for version, extra in VERSIONS.items():
        model = HunyuanVideo_1_5_DiffusionTransformer(**TINY_DIT, **extra)
        if state is None:
            randomize_(model, generator)
            state = model.state_dict()
        missing = model.load_state_dict(state, strict=False).missing_keys  # the same weights in every folder
        for name in missing:  # meanflow's time_r_in
            with torch.no_grad():
                model.get_parameter(name).copy_(torch.randn(model.get_parameter(name).shape, generator=generator) * 0.1)
        model.save_pretrained(model_path / "transformer" / version)


def _write_vae(model_path: Path, generator: torch.Generator) -> None:
    from hyvideo.models.autoencoders.hunyuanvideo_15_vae import AutoencoderKLConv3D

    model = AutoencoderKLConv3D(**TINY_VAE)
    randomize_(model, generator)
    model.save_pretrained(model_path / "vae")


def _write_scheduler(model_path: Path) -> None:
    from hyvideo.schedulers.scheduling_flow_match_discrete import FlowMatchDiscreteScheduler

    FlowMatchDiscreteScheduler(shift=5.0, reverse=True, solver="euler").save_pretrained(model_path / "scheduler")


def _llm_tokenizer():
    """Word-level Qwen-like tokenizer: its chat markers and the words of hyvideo's prompt templates."""
    from transformers import PreTrainedTokenizerFast
    from hyvideo.models.text_encoders import PROMPT_TEMPLATE

    texts = [m["content"] for t in PROMPT_TEMPLATE.values() for m in t["template"]]
    texts += ["user\nassistant\nsystem\n", " ".join(_WORDS), "\n"]
    backend, _ = word_level_backend(_SPLIT, texts, _LLM_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="<unk>", model_max_length=4096)
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


def _write_llm(model_path: Path) -> None:
    """text_encoder/llm: a tiny Qwen2 (what AutoModel gives; Tencent's is Qwen2.5-VL-7B) + tokenizer."""
    from transformers import Qwen2Config, Qwen2Model

    tokenizer = _llm_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=LLM_HIDDEN, intermediate_size=2 * LLM_HIDDEN,
                         num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id)
    folder = model_path / "text_encoder" / "llm"
    Qwen2Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _write_byt5(model_path: Path) -> None:
    """text_encoder/byt5-small (a tiny T5, byte tokenizer) and Glyph-SDXL-v2 (its assets and the
    encoder checkpoint after hyvideo adds its colour and font tokens, as Tencent's byt5_model.pt)."""
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration
    from hyvideo.models.text_encoders.byT5 import load_byt5_and_byt5_tokenizer

    byt5 = model_path / "text_encoder" / "byt5-small"
    tokenizer = ByT5Tokenizer()
    config = T5Config(vocab_size=len(tokenizer), d_model=1472, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                      num_heads=2, feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1)
    T5ForConditionalGeneration(config).save_pretrained(byt5)
    tokenizer.save_pretrained(byt5)
    glyph = model_path / "text_encoder" / "Glyph-SDXL-v2"
    (glyph / "assets").mkdir(parents=True, exist_ok=True)
    (glyph / "checkpoints").mkdir(parents=True, exist_ok=True)
    (glyph / "assets" / "color_idx.json").write_text(json.dumps({"white": 0, "black": 1, "red": 2}))
    (glyph / "assets" / "multilingual_10-lang_idx.json").write_text(json.dumps({"en-Roboto": 0, "zh-Hei": 1}))
    encoder, _ = load_byt5_and_byt5_tokenizer(
        byt5_name=str(byt5), special_token=True, color_special_token=True, font_special_token=True,
        color_ann_path=str(glyph / "assets" / "color_idx.json"),
        font_ann_path=str(glyph / "assets" / "multilingual_10-lang_idx.json"), multilingual=True, device="cpu")
    torch.save(encoder.state_dict(), glyph / "checkpoints" / "byt5_model.pt")


def _write_siglip(model_path: Path) -> None:
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    folder = model_path / "vision_encoder" / "siglip"
    SiglipVisionModel(SiglipVisionConfig(**SIGLIP)).save_pretrained(folder / "image_encoder")
    SiglipImageProcessor(size={"height": SIGLIP["image_size"], "width": SIGLIP["image_size"]}).save_pretrained(
        folder / "feature_extractor")


def write_tiny_checkpoints(model_path: Path, seed: int = SEED) -> Path:
    """Seeded tiny random weights in HunyuanVideo-1.5's ``--model_path`` layout (inside the shims)."""
    model_path = Path(model_path)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # transformers' own initialisation
        _write_transformers(model_path, generator)
        _write_vae(model_path, generator)
        _write_scheduler(model_path)
        _write_llm(model_path)
        _write_byt5(model_path)
        _write_siglip(model_path)
    return model_path


def write_reference_image(path: Path, width: int = 96, height: int = 64) -> Path:
    """A small RGB image for I2V (a gradient with a square)."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    image[height // 4: height // 2, width // 4: width // 2] = [250, 30, 30]
    Image.fromarray(image).save(path)
    return path


def tiny_flags(model_path: Path) -> list:
    """generate.py flags for the tiny checkpoints on CPU: fp32 transformer, no group offload, no rewrite."""
    return ["--model_path", str(model_path), "--resolution", "480p", "--dtype", "fp32", "--sr", "false",
            "--group_offloading", "false", "--rewrite", "false", "--video_length", "1"]
