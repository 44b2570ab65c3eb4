"""Tencent's HunyuanVideo-1.5 (``hyvideo``): its double and single blocks call ``parallel_attention``
of ``modules/attention.py`` (imported into the transformer's module) with video and text q/k/v and the
text mask; by ``attn_mode`` it runs flash-attn 3 or 2 over the unpadded tokens or, with neither
installed, ``flex_attention`` with a padding ``score_mod``. The text is ordered real tokens first, then
padding (``reorder_txt_token``; a text-to-video call's vision tokens are masked, so padding), so each
sample's real tokens are a prefix of [video, text]: ``sdpa`` replaces that name and attends them
unmasked (per sample where the lengths differ; padded rows zero, as flash-attn leaves them). No
``text``: the replacement drops the padding itself.

Refused (``refuse``): sequence parallelism (heads all-to-all inside ``parallel_attention``), and the
sparse or quantised attention the run chose (``--sparse_attn``, ``--use_sageattn``): ``sdpa`` would
swap it for dense attention, another video (and slower than the sparse one), so ``--attention sdpa``
is a one-line error and ``auto`` keeps the model's path. The replacement hands those modes to the
original too, should they be set after install.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import torch

from . import auto
from .code_base import CodeBase, ModelPath
from .kernels import sdpa_valid_prefix
from .padding import on_sdpa_path

DENSE = ("flash", "flash2", "flash3", "torch")  # the modes whose kernel is dense attention over the real tokens
CHOSEN = {"flex-block-attn": "sparse attention (--sparse_attn, flex-block-attn)",
          "sageattn": "SageAttention (--use_sageattn)"}


def _is_hunyuan15(model: torch.nn.Module) -> bool:
    return type(model).__name__ == "HunyuanVideo_1_5_DiffusionTransformer"


def _module(model: torch.nn.Module):
    return sys.modules[type(model).__module__]


def _sp_enabled() -> bool:
    """Whether hyvideo's parallel state splits the sequence; read, never created (creating it builds
    a device mesh: ``generate.py`` does that at import, ``forward`` on its first call)."""
    states = sys.modules.get("hyvideo.commons.parallel_states")
    if states is None:
        return False
    namespace = vars(states)
    if "__parallel_dims" not in namespace:  # another release: generate.py sets sp = WORLD_SIZE
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    return bool(getattr(namespace["__parallel_dims"], "sp_enabled", False))


def _real_lengths(text_mask: torch.Tensor | None, batch: int, text_len: int) -> list[int] | None:
    """Each sample's count of real text tokens (all of them without a mask), or None when they are
    not a prefix of the text (then the model's own path runs). One host sync."""
    if text_mask is None:
        return [text_len] * batch
    if text_mask.shape != (batch, text_len):
        return None
    real = text_mask.bool()
    lengths = real.sum(dim=1)
    if not bool((real.long().cumprod(dim=1).sum(dim=1) == lengths).all()):
        return None
    return [int(n) for n in lengths.tolist()]


def _replacement(original: Callable) -> Callable:
    def parallel_attention(q, k, v, img_q_len, img_kv_len, attn_mode=None, text_mask=None, *args, **kwargs):
        (img_q, txt_q), (img_k, txt_k), (img_v, txt_v) = q, k, v
        lengths = None
        if (on_sdpa_path() and attn_mode in DENSE and not _sp_enabled() and img_q_len == img_kv_len
                and img_q.shape[1] == img_k.shape[1] == img_q_len and txt_q.shape[1] == txt_k.shape[1]):
            lengths = _real_lengths(text_mask, txt_q.shape[0], txt_q.shape[1])
        if lengths is None:
            return original(q, k, v, img_q_len, img_kv_len, attn_mode, text_mask, *args, **kwargs)
        out = sdpa_valid_prefix(torch.cat([img_q, txt_q], dim=1), torch.cat([img_k, txt_k], dim=1),
                                torch.cat([img_v, txt_v], dim=1), [img_q_len + n for n in lengths])
        return out.reshape(out.shape[0], out.shape[1], -1)  # [B, S, H * D], as the original returns

    parallel_attention.__wrapped__ = original
    return parallel_attention


def _own_mode(model: torch.nn.Module) -> str:
    """The kernel ``model.attn_mode`` runs, as hyvideo's ``maybe_fallback_attn_mode`` resolves it
    (without its warning): "flash" is flash-attn 3, else 2, else "torch"."""
    mode = getattr(model, "attn_mode", "flash")
    commons = sys.modules.get("hyvideo.commons")
    has3 = bool(commons is not None and commons.is_flash3_available())
    has2 = bool(commons is not None and commons.is_flash2_available())
    if mode == "flash":
        return "flash3" if has3 else "flash2" if has2 else "torch"
    if (mode == "flash3" and not has3) or (mode == "flash2" and not has2):
        return "torch"
    return mode


def _model_path(model: torch.nn.Module) -> ModelPath:
    mode = _own_mode(model)
    if mode == "flash3":
        return auto.flash_attn_3(model)
    if mode == "flash2":
        return auto.flash_attn_2(model, "flash-attn 2 (no-pad varlen)")
    if mode == "torch":
        return auto.masked_sdpa(model, "flex_attention with a padding score_mod")
    return ModelPath(mode, False, f"attention mode {mode!r} is not one sdpa knows")


def _refuse(model: torch.nn.Module) -> str | None:
    if _sp_enabled():
        return "sequence parallelism (torchrun) splits the heads over ranks inside parallel_attention"
    mode = getattr(model, "attn_mode", None)
    if mode in CHOSEN:
        return f"it would replace the {CHOSEN[mode]} this run chose by dense attention"
    if mode not in DENSE:
        return f"attention mode {mode!r} is not one sdpa knows"
    return None


HUNYUAN_VIDEO_15 = CodeBase(
    name="Tencent's HunyuanVideo-1.5", matches=_is_hunyuan15, module=_module, function="parallel_attention",
    replacement=_replacement, model_path=_model_path, refuse=_refuse,
)
CODE_BASES = (HUNYUAN_VIDEO_15,)
