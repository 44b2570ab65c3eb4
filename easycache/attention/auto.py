"""``--attention auto``: ``sdpa`` where it is faster than the model's own path, ``model`` elsewhere.

The rule stands on one H200 (torch 2.11, bf16; ``bench/results/gpu/attention-and-vae.json`` and
``diffusers-mask-544p.json``), one attention call of 24 heads x 128 at HunyuanVideo's sequences:

| kernel                                      | 544p (67,576 tokens) | 720p (119,056 tokens) |
|---------------------------------------------|----------------------|-----------------------|
| SDPA, no mask (torch picks cuDNN on Hopper) | 97 ms                | 312 ms                |
| SDPA with an all-True key-padding mask      | 137 ms               | 440 ms                |
| SDPA's flash kernel (= FlashAttention-2)    | 155 ms               | 486 ms                |

and a whole diffusers HunyuanVideo call at 544p: 10.90 s with its mask, 8.37 s without (1.30x).

- Not on CUDA: ``model``. A CPU runs the same arithmetic either way; the model's path is its authors'.
- A masked SDPA call (diffusers' HunyuanVideo and HunyuanVideo-1.5, HunyuanVideo-1.5's own "torch"
  mode): ``sdpa`` (1.41x per call at 720p, 1.30x per transformer call at 544p).
- flash-attn 2 (Tencent's HunyuanVideo; HunyuanVideo-1.5 without flash-attn 3): ``sdpa`` from Hopper
  (compute capability 9) on, where torch runs cuDNN's kernel (1.56x per call at 720p); ``model``
  before it, where SDPA's own unmasked kernel is FlashAttention-2 itself.
- flash-attn 3 (HunyuanVideo-1.5 picks it first): ``model``; not measured here, and it is the
  fastest dense kernel its authors know on Hopper.
- No mask and SDPA already (Wan): ``model``; ``sdpa`` would run the same kernel.
"""

from __future__ import annotations

import importlib.util

import torch

from .code_base import ModelPath

H200 = "one H200, bench/results/gpu/attention-and-vae.json"


def on_cuda(model: torch.nn.Module) -> torch.device | None:
    """The CUDA device the model computes on, or None: its weights' device, or with CPU offloading
    (accelerate's or diffusers' hooks move each block to the GPU as it runs; HunyuanVideo's README
    runs with ``--use-cpu-offload``) the current CUDA device."""
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device.type == "cuda":
        return parameter.device
    offloaded = any(hasattr(m, "_hf_hook") or hasattr(m, "_diffusers_hook") for m in model.modules())
    if offloaded and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return None


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def masked_sdpa(model: torch.nn.Module, kernel: str) -> ModelPath:
    if on_cuda(model) is None:
        return ModelPath(kernel, False, "not on CUDA: the same arithmetic either way")
    return ModelPath(kernel, True, f"masked SDPA 440 ms vs unmasked 312 ms per 720p call ({H200})")


def flash_attn_2(model: torch.nn.Module, kernel: str = "flash-attn 2 (varlen)") -> ModelPath:
    device = on_cuda(model)
    if device is None:
        return ModelPath(kernel, False, "not on CUDA: the same arithmetic either way")
    if torch.cuda.get_device_capability(device)[0] >= 9:
        return ModelPath(kernel, True, f"FlashAttention-2 486 ms vs cuDNN SDPA 312 ms per 720p call ({H200})")
    return ModelPath(kernel, False, "before Hopper, SDPA's unmasked kernel is FlashAttention-2 itself")


def flash_attn_3(model: torch.nn.Module) -> ModelPath:
    return ModelPath("flash-attn 3", False, "flash-attn 3 is the model's choice on Hopper; not measured here")


def same_kernel(model: torch.nn.Module, kernel: str = "SDPA without a mask") -> ModelPath:
    return ModelPath(kernel, False, "the model's path already runs SDPA without a mask")
