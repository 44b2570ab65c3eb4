"""Dropping padded text tokens before the blocks: the model's own code, given only the real tokens.

A prompt is padded to a fixed length (256 tokens in HunyuanVideo) and the padding masked as keys in
every attention call; every other operation is per token. So a call whose padding is cut off gives
the same video (bf16 rounding aside), and its attention needs no mask at all. One batch with the
same real length in every sample is cut once; samples of different lengths (classifier-free
guidance batched with a different negative prompt) run one at a time, each cut to its own length,
and their outputs are stacked again.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
from typing import Any, Callable

import torch

from ..calls import prediction_of, with_prediction

_ON: contextvars.ContextVar[bool] = contextvars.ContextVar("easycache_sdpa_path", default=False)


def on_sdpa_path() -> bool:
    """True inside a call of a model that ``sdpa`` is installed on, once its text padding is cut off
    (where its code base has ``text`` arguments: every attention mask in the call is then all-True)."""
    return _ON.get()


@contextlib.contextmanager
def _marked(value: bool):
    token = _ON.set(value)
    try:
        yield
    finally:
        _ON.reset(token)


@dataclasses.dataclass(frozen=True)
class TextArguments:
    """A transformer's forward arguments that carry the padded text, by name."""

    states: str  # [batch, tokens, dim]: the text tokens
    mask: str  # [batch, tokens]: 1 for a real token; real tokens first (the tokenizers pad on the right)
    batched: tuple[str, ...]  # every argument whose first dimension is the batch (split per sample)


def real_lengths(mask: torch.Tensor) -> list[int] | None:
    """Each sample's count of real tokens, or None when the real tokens are not a prefix (or a sample
    has none): then nothing is cut and the model's own path runs. One host sync."""
    real = mask.bool()
    lengths = real.sum(dim=1)
    prefix = real.long().cumprod(dim=1).sum(dim=1)
    ok = bool(((prefix == lengths) & (lengths > 0)).all())
    return [int(n) for n in lengths.tolist()] if ok else None


def sdpa_forward(forward: Callable, text: TextArguments | None) -> Callable:
    """``forward`` on the ``sdpa`` path: the text padding cut off first (see the module doc), where
    ``text`` names it; a call whose padding cannot be cut runs the model's own path."""
    signature = inspect.signature(forward)

    @functools.wraps(forward)
    def unpadded_forward(*args, **kwargs):
        if text is None:
            with _marked(True):
                return forward(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        mask, states = bound.arguments.get(text.mask), bound.arguments.get(text.states)
        lengths = real_lengths(mask) if torch.is_tensor(mask) and mask.ndim == 2 and torch.is_tensor(states) else None
        if lengths is None:
            with _marked(False):
                return forward(*args, **kwargs)
        if len(set(lengths)) == 1:
            return _cut_call(forward, bound, text, lengths[0])
        outputs = [_cut_call(forward, _sample(bound, text, b, len(lengths)), text, n) for b, n in enumerate(lengths)]
        return with_prediction(outputs[0], torch.cat([prediction_of(o) for o in outputs]))

    unpadded_forward.__wrapped__ = forward
    return unpadded_forward


def _cut_call(forward: Callable, bound: inspect.BoundArguments, text: TextArguments, n: int) -> Any:
    arguments = bound.arguments
    arguments[text.states] = arguments[text.states][:, :n]
    arguments[text.mask] = arguments[text.mask][:, :n]
    with _marked(True):
        return forward(*bound.args, **bound.kwargs)


def _sample(bound: inspect.BoundArguments, text: TextArguments, b: int, batch: int) -> inspect.BoundArguments:
    """The call's arguments for sample ``b`` alone."""
    one = inspect.BoundArguments(bound.signature, dict(bound.arguments))
    for name in text.batched:
        value = one.arguments.get(name)
        if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == batch:
            one.arguments[name] = value[b:b + 1]
    return one
