"""Run Tencent's real HunyuanVideo code (outside this repo) on CPU with tiny random checkpoints.

The checkout is named by the ``HYVIDEO_ROOT`` environment variable; none of its code lives here.
Typical use::

    with enable_cpu_shims(hyvideo_root, model_base):
        flags = write_tiny_checkpoints(model_base)["cli_flags"]
        sys.argv = ["sample_video.py", *flags, "--prompt", "a cat", ...]
        ...  # hyvideo.config.parse_args / HunyuanVideoSampler.from_pretrained / predict

or, for a script: ``run_script(script, argv, hyvideo_root, model_base)`` (also available from the
command line: ``python easycache/testing/tencent_tiny.py --model-base DIR SCRIPT [ARGS...]``).

Only CUDA-only pieces of HunyuanVideo are shimmed (see ``enable_cpu_shims``); everything else
(argument parsing, model/VAE/text-encoder loading, the pipeline, scheduler, sampling) is Tencent's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
import os
import re
import runpy
import sys
import types
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

HYVIDEO_ROOT_ENV = "HYVIDEO_ROOT"

# A name of our own in hyvideo's HUNYUAN_VIDEO_CONFIG, so that `--model TINY_NAME` passes argparse.
TINY_NAME = "HYVideo-T/2-cfgdistill-tiny"
# Same keys as Tencent's "HYVideo-T/2-cfgdistill" entry, tiny sizes: head_dim 16 = sum(rope_dim_list).
TINY_DIT_CONFIG = {
    "mm_double_blocks_depth": 2,
    "mm_single_blocks_depth": 2,
    "rope_dim_list": [4, 6, 6],
    "hidden_size": 64,
    "heads_num": 4,
    "mlp_width_ratio": 4,
    "guidance_embed": True,
}
LATENT_CHANNELS = 16  # the "16c" of the "884-16c-hy" VAE name; hyvideo's --latent-channels default.
LLM_HIDDEN = 48  # --text-states-dim (4096 for the real llava-llama-3-8b).
CLIP_HIDDEN = 32  # --text-states-dim-2 (768 for the real CLIP-L).
SEED = 1234

# Tiny stand-in for the 3D causal VAE "884-16c-hy": 4 blocks give 8x spatial and 4x temporal
# compression exactly as the real config (block_out_channels [128, 256, 512, 512]) does.
TINY_VAE_CONFIG = {
    "_class_name": "AutoencoderKLCausal3D",
    "act_fn": "silu",
    "block_out_channels": [8, 8, 8, 8],
    "down_block_types": ["DownEncoderBlockCausal3D"] * 4,
    "up_block_types": ["UpDecoderBlockCausal3D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": LATENT_CHANNELS,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 256,
    "sample_tsize": 64,
    "scaling_factor": 0.476986,
    "time_compression_ratio": 4,
    "spatial_compression_ratio": 8,
    "mid_block_add_attention": True,
}

# Llama-3's pre-tokenizer split; with one token per piece it reproduces the crop_start values of
# hyvideo's PROMPT_TEMPLATE (36 image / 95 video tokens, BOS included).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLM_SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>", "<pad>", "<unk>",
]
_EXTRA_WORDS = "a cat dog walks runs on the grass in a park under blue sky with sun".split()


# ----------------------------------------------------------------------------- locating the checkout


def checkout_or_skip_reason(variable: str, required: Sequence[str], repository: str
                            ) -> Tuple[Optional[Path], Optional[str]]:
    """(root, None) when the environment ``variable`` names a folder holding every ``required``
    file, else (None, why the tests that need it skip)."""
    value = os.environ.get(variable)
    if not value:
        return None, f"set {variable} to a checkout of {repository}"
    root = Path(value).expanduser().resolve()
    missing = [name for name in required if not (root / name).is_file()]
    if missing:
        return None, f"{variable}={value} has no {' and '.join(missing)}"
    return root, None


def hyvideo_root_or_skip_reason() -> Tuple[Optional[Path], Optional[str]]:
    """Return (root, None) for a usable HunyuanVideo checkout, else (None, reason to skip)."""
    return checkout_or_skip_reason(HYVIDEO_ROOT_ENV, ["hyvideo/inference.py"], "Tencent's HunyuanVideo repository")


def model_paths(model_base: Path) -> dict:
    """HunyuanVideo's on-disk layout under MODEL_BASE (see hyvideo/constants.py and inference.py)."""
    model_base = Path(model_base)
    return {
        "dit_weight": model_base / "hunyuan-video-t2v-720p" / "transformers" / "mp_rank_00_model_states.pt",
        "vae": model_base / "hunyuan-video-t2v-720p" / "vae",
        "text_encoder": model_base / "text_encoder",
        "text_encoder_2": model_base / "text_encoder_2",
    }


# ----------------------------------------------------------------------------- CPU shims


def _flash_attn_varlen_func_cpu(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None,
                                max_seqlen_k=None, dropout_p=0.0, softmax_scale=None,
                                causal=False, **_unused):
    """Stand-in for flash_attn.flash_attn_varlen_func (on CPU here, on a GPU in bench/gpu/tencent.py):
    packed [total, heads, dim] inputs, attention computed separately inside each [cu[i], cu[i+1])
    segment (an empty segment contributes nothing), output packed the same way.

    Each segment goes to SDPA as a 4-D (1, heads, seq, dim) batch: SDPA's fused kernels (flash,
    memory-efficient, cuDNN; on CPU its flash kernel) accept only 4-D inputs, and 3-D ones fall to
    the math kernel, which materializes every (seq x seq) score: at HunyuanVideo's 544p sequence it
    asked an H200 for 408 GiB (24 heads x 67,576^2 scores)."""
    out = torch.zeros_like(q)
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for i in range(len(bounds_q) - 1):
        q0, q1, k0, k1 = bounds_q[i], bounds_q[i + 1], bounds_k[i], bounds_k[i + 1]
        if q1 == q0 or k1 == k0:
            continue
        # [seq, heads, dim] -> (1, heads, seq, dim)
        seg = F.scaled_dot_product_attention(
            q[q0:q1].transpose(0, 1)[None], k[k0:k1].transpose(0, 1)[None], v[k0:k1].transpose(0, 1)[None],
            dropout_p=dropout_p, is_causal=causal, scale=softmax_scale,
        )
        out[q0:q1] = seg[0].transpose(0, 1)  # (1, heads, seq, dim) -> [seq, heads, dim]
    return out


class _TorchWithCudaLiteralOnCpu:
    """Forwards to `torch`; only `torch.zeros(..., device="cuda")` is created on the CPU instead."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def zeros(*args, **kwargs):
        if str(kwargs.get("device")) == "cuda":
            kwargs["device"] = "cpu"
        return torch.zeros(*args, **kwargs)


def _with_cuda_literal_on_cpu(fn: types.FunctionType) -> types.FunctionType:
    """A copy of `fn` running its own, unchanged code with `torch` resolved to the proxy above."""
    globals_ = dict(fn.__globals__, torch=_TorchWithCudaLiteralOnCpu())
    clone = types.FunctionType(fn.__code__, globals_, fn.__name__, fn.__defaults__, fn.__closure__)
    return functools.update_wrapper(clone, fn)


def _make_grid(tensor, nrow=8, padding=2, pad_value=0.0, **_unused):
    """torchvision.utils.make_grid for a [B, C, H, W] batch (what hyvideo's save_videos_grid uses)."""
    if tensor.size(0) == 1:
        return tensor.squeeze(0)
    nmaps, channels = tensor.size(0), tensor.size(1)
    xmaps = min(nrow, nmaps)
    ymaps = int(math.ceil(nmaps / xmaps))
    height, width = tensor.size(2) + padding, tensor.size(3) + padding
    grid = tensor.new_full((channels, height * ymaps + padding, width * xmaps + padding), pad_value)
    for k in range(nmaps):
        y, x = divmod(k, xmaps)
        grid[:, y * height + padding: (y + 1) * height, x * width + padding: (x + 1) * width] = tensor[k]
    return grid


def _import_without_torchvision(module_name: str):
    """Import `module_name` while a make_grid-only `torchvision` stub is in sys.modules, then remove
    the stub again so that no other library sees a fake torchvision."""
    if importlib.util.find_spec("torchvision") is not None or module_name in sys.modules:
        return importlib.import_module(module_name)
    stub = types.ModuleType("torchvision")
    stub.utils = types.SimpleNamespace(make_grid=_make_grid)
    sys.modules["torchvision"] = stub
    try:
        return importlib.import_module(module_name)
    finally:
        sys.modules.pop("torchvision", None)


class Patches:
    """setattr / item assignment, undone in reverse order."""

    def __init__(self):
        self._undo = []

    def set(self, obj, name, value):
        had = name in vars(obj)
        old = vars(obj).get(name)
        self._undo.append(lambda: setattr(obj, name, old) if had else delattr(obj, name))
        setattr(obj, name, value)

    def set_item(self, mapping, key, value):
        had, old = key in mapping, mapping.get(key)
        self._undo.append(lambda: mapping.__setitem__(key, old) if had else mapping.pop(key))
        mapping[key] = value

    def undo(self):
        while self._undo:
            self._undo.pop()()


@contextlib.contextmanager
def enable_cpu_shims(hyvideo_root: Path, model_base: Path) -> Iterator[types.SimpleNamespace]:
    """Make the HunyuanVideo checkout importable and runnable on CPU with the tiny checkpoints.

    Yields a namespace of the imported hyvideo modules. On exit every change is undone and the
    hyvideo modules imported here are removed from sys.modules.
    """
    hyvideo_root, model_base = str(Path(hyvideo_root).resolve()), str(Path(model_base).resolve())
    modules_before = set(sys.modules)
    env_before = os.environ.get("MODEL_BASE")
    patches = Patches()
    try:
        # Import path: the checkout stays outside this repository.
        sys.path.insert(0, hyvideo_root)
        # hyvideo.constants derives VAE/text-encoder/tokenizer paths from $MODEL_BASE at import time.
        os.environ["MODEL_BASE"] = model_base
        constants = importlib.import_module("hyvideo.constants")
        attenion = importlib.import_module("hyvideo.modules.attenion")
        models = importlib.import_module("hyvideo.modules.models")
        pipeline_mod = importlib.import_module("hyvideo.diffusion.pipelines.pipeline_hunyuan_video")
        inference = importlib.import_module("hyvideo.inference")
        config = importlib.import_module("hyvideo.config")

        # Same paths again, in place, in case hyvideo.constants was imported before with another base.
        paths = model_paths(Path(model_base))
        patches.set(constants, "MODEL_BASE", model_base)
        patches.set_item(constants.VAE_PATH, "884-16c-hy", str(paths["vae"]))
        for table in (constants.TEXT_ENCODER_PATH, constants.TOKENIZER_PATH):
            patches.set_item(table, "llm", str(paths["text_encoder"]))
            patches.set_item(table, "clipL", str(paths["text_encoder_2"]))

        # Not a shim: registers our tiny model size next to Tencent's 13B configs (argparse choices).
        patches.set_item(models.HUNYUAN_VIDEO_CONFIG, TINY_NAME, dict(TINY_DIT_CONFIG))

        # CUDA-only: the DiT blocks call flash_attn_varlen_func (flash-attn is a CUDA kernel package).
        patches.set(attenion, "flash_attn_varlen_func", _flash_attn_varlen_func_cpu)
        # CUDA-only: get_cu_seqlens allocates its result with a hard-coded device="cuda".
        cpu_cu_seqlens = _with_cuda_literal_on_cpu(attenion.get_cu_seqlens)
        patches.set(attenion, "get_cu_seqlens", cpu_cu_seqlens)
        patches.set(models, "get_cu_seqlens", cpu_cu_seqlens)  # models.py imported the name directly.
        # Not shimmed: `--use-cpu-offload` (diffusers' enable_sequential_cpu_offload) needs an
        # accelerator; on CPU diffusers raises, and forcing device="cpu" breaks inside accelerate.
        # Not CUDA: hyvideo.utils.file_utils imports torchvision only for make_grid in
        # save_videos_grid, and torchvision must not be installed in this venv.
        file_utils = _import_without_torchvision("hyvideo.utils.file_utils")
        # Not CUDA (transformers 5): CLIPTextModel lost its inner `.text_model` (CLIPTextTransformer)
        # and now owns final_layer_norm itself; hyvideo's load_text_encoder reads
        # `clip.text_model.final_layer_norm`, so alias `text_model` to the model itself.
        import transformers

        if int(transformers.__version__.split(".")[0]) >= 5:
            patches.set(transformers.CLIPTextModel, "text_model", property(lambda self: self))
        # Left as is (harmless on CPU): torch.autocast(device_type="cuda") in the pipeline only warns
        # and disables itself, and with fp32 precisions it is not even enabled; every other "cuda"
        # in hyvideo is behind torch.cuda.is_available() or the multi-GPU (xfuser/nccl) path.

        yield types.SimpleNamespace(
            constants=constants, attenion=attenion, models=models, pipeline=pipeline_mod,
            inference=inference, config=config, file_utils=file_utils, root=Path(hyvideo_root),
        )
    finally:
        patches.undo()
        for name in set(sys.modules) - modules_before:
            if name == "hyvideo" or name.startswith("hyvideo."):
                del sys.modules[name]
        if hyvideo_root in sys.path:
            sys.path.remove(hyvideo_root)
        if env_before is None:
            os.environ.pop("MODEL_BASE", None)
        else:
            os.environ["MODEL_BASE"] = env_before


# ----------------------------------------------------------------------------- tiny checkpoints


def randomize_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Overwrite every parameter with seeded noise: hyvideo zero-inits its modulation and final
    layers, which would make a freshly built DiT an identity no-op."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=generator))
            else:  # norm scales
                p.copy_(1.0 + 0.02 * torch.randn(p.shape, generator=generator))


def _write_transformer(path: Path, generator: torch.Generator) -> None:
    """DeepSpeed-style checkpoint of HYVideoDiffusionTransformer: {"module": state_dict}."""
    from hyvideo.modules.models import HYVideoDiffusionTransformer

    args = argparse.Namespace(text_states_dim=LLM_HIDDEN, text_states_dim_2=CLIP_HIDDEN)
    model = HYVideoDiffusionTransformer(
        args, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, **TINY_DIT_CONFIG
    )
    randomize_(model, generator)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": model.state_dict()}, path)


def _write_vae(vae_dir: Path, generator: torch.Generator) -> None:
    """config.json + pytorch_model.pt, as hyvideo.vae.load_vae reads them."""
    from hyvideo.vae import AutoencoderKLCausal3D

    config = dict(TINY_VAE_CONFIG)
    model = AutoencoderKLCausal3D.from_config(config)
    randomize_(model, generator)
    vae_dir.mkdir(parents=True, exist_ok=True)
    (vae_dir / "config.json").write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), vae_dir / "pytorch_model.pt")


def word_level_backend(split_regex: str, texts: list[str], specials: tuple[str, ...]):
    """A byte-level word tokenizer (``tokenizers``) knowing every piece of ``texts`` as split by
    ``split_regex``, and ``specials`` as special tokens (ids first; kept whole where a text names
    them): what both Tencent harnesses' tiny LLM tokenizers stand on. Returns (backend, vocab)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    vocab = {tok: i for i, tok in enumerate(specials)}
    for text in texts:
        for part in re.split(r"(<\|[a-z_]+\|>)", text):
            if part and part not in vocab:
                for piece, _ in pre.pre_tokenize_str(part):
                    vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True) for t in specials])
    return backend, vocab


def _llm_tokenizer():
    """Word-level Llama-3-like tokenizer covering hyvideo's prompt templates and negative prompt."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from hyvideo.constants import NEGATIVE_PROMPT, PROMPT_TEMPLATE

    texts = [t["template"] for t in PROMPT_TEMPLATE.values()] + [NEGATIVE_PROMPT, " ".join(_EXTRA_WORDS)]
    backend, vocab = word_level_backend(_LLAMA3_SPLIT, texts, _LLM_SPECIALS)
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        pad_token="<pad>", unk_token="<unk>", model_max_length=1024,
    )


def _write_llm(out_dir: Path) -> None:
    """text_encoder/: a tiny Llama causal LM (what HunyuanVideo extracts from llava-llama-3) + tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _llm_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=LLM_HIDDEN, intermediate_size=2 * LLM_HIDDEN,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _write_clip(out_dir: Path) -> None:
    """text_encoder_2/: a tiny CLIP text model + CLIP's tokenizer files (vocab.json, merges.txt):
    a byte-level vocabulary without merges, so any text tokenizes, one token per character."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTextConfig, CLIPTextModel

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # largest id, as in CLIP; also unk and pad by default
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=CLIP_HIDDEN, intermediate_size=2 * CLIP_HIDDEN,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
        projection_dim=CLIP_HIDDEN, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
    )
    CLIPTextModel(config).save_pretrained(out_dir)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n")


def write_tiny_checkpoints(model_base: Path, seed: int = SEED) -> dict:
    """Write seeded tiny random checkpoints in HunyuanVideo's layout under `model_base`.

    Must run inside `enable_cpu_shims` (it builds the DiT and VAE with hyvideo's own classes).
    Returns the paths and `cli_flags`: the hyvideo.config arguments selecting these checkpoints.
    """
    model_base = Path(model_base)
    paths = model_paths(model_base)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # transformers' own initialisation of the text encoders
        _write_transformer(paths["dit_weight"], generator)
        _write_vae(paths["vae"], generator)
        _write_llm(paths["text_encoder"])
        _write_clip(paths["text_encoder_2"])
    return {"model_base": model_base, **paths, "cli_flags": tiny_cli_flags(model_base)}


def tiny_cli_flags(model_base: Path) -> list:
    """hyvideo.config arguments that select the tiny checkpoints under `model_base` (fp32 on CPU)."""
    paths = model_paths(model_base)
    return [
        "--model-base", str(Path(model_base)),
        "--dit-weight", str(paths["dit_weight"]),
        "--model", TINY_NAME,
        "--precision", "fp32",
        "--vae-precision", "fp32",
        "--text-encoder-precision", "fp32",
        "--text-encoder-precision-2", "fp32",
        "--text-states-dim", str(LLM_HIDDEN),
        "--text-states-dim-2", str(CLIP_HIDDEN),
    ]


# ----------------------------------------------------------------------------- running a script


def run_script(script: Path, argv: Sequence[str], hyvideo_root: Path, model_base: Path,
               write_checkpoints: bool = True) -> dict:
    """Run `script` as __main__ with sys.argv = [script, *tiny flags, *argv] under the CPU shims."""
    argv_before = sys.argv
    with enable_cpu_shims(hyvideo_root, model_base):
        if write_checkpoints:
            write_tiny_checkpoints(model_base)
        sys.argv = [str(script), *tiny_cli_flags(model_base), *argv]
        sys.path.insert(0, str(Path(script).resolve().parent))  # as `python SCRIPT` would
        try:
            return runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv = argv_before
            sys.path.remove(str(Path(script).resolve().parent))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base", required=True, type=Path)
    parser.add_argument("script", type=Path)
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """CLI: python easycache/testing/tencent_tiny.py --model-base DIR SCRIPT [SCRIPT ARGS...]"""
    ns = build_parser().parse_args(argv)
    root, reason = hyvideo_root_or_skip_reason()
    if root is None:
        raise SystemExit(reason)
    run_script(ns.script, ns.script_args, root, ns.model_base)


if __name__ == "__main__":
    main()
