"""The state of sparse attention on one transformer, and the hooks that feed it.

A forward pre-hook on the transformer tells the state the timestep and the latent grid of each
call; each block (a pre/post hook pair in Tencent's code, the attention processor in diffusers')
marks itself as the active block while it runs. The attention function both code bases dispatch
to is replaced by one that asks the active block's state what to do: dense (the model's own
attention, untouched) or sparse. Outside an active block, it is the model's own attention.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
from typing import Any

import torch
from loguru import logger

from ..calls import call_argument, parameter_names, timestep_value
from .attention import sparse_attention
from .config import SVG_LAYER_COUNT, TIMESTEP_RANGE, SVGConfig
from .layout import VideoLayout
from .masks import band_from_sparsity
from .profiling import classify_heads

_ACTIVE: contextvars.ContextVar["ActiveBlock | None"] = contextvars.ContextVar("easycache_svg_block", default=None)


@dataclasses.dataclass(frozen=True)
class ActiveBlock:
    state: "SVGState"
    kind: str  # "double" or "single"
    index: int  # the block's index within its own stack


def active_block() -> ActiveBlock | None:
    return _ACTIVE.get()


def set_active(block: ActiveBlock | None) -> contextvars.Token:
    return _ACTIVE.set(block)


def reset_active(token: contextvars.Token) -> None:
    _ACTIVE.reset(token)


class SVGState:
    """Per transformer: the current step, timestep and latent grid; counters; attention records."""

    def __init__(self, config: SVGConfig, patch_size: tuple[int, int, int]):
        self.config = config
        self.patch_size = patch_size
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = -1
        self.timestep: float | None = None
        self.grid: tuple[int, int] | None = None  # (frames, tokens per frame) after patchifying
        self.attention_calls = 0
        self.sparse_calls = 0
        self.records: list[dict] = []
        self.record_path = config.record_file()
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            self.record_path.write_text("")

    # ------------------------------------------------------------------ fed by the transformer hook
    def begin_call(self, latent: torch.Tensor, timestep: Any) -> None:
        """A transformer call: its timestep (a new one is a new step) and its latent's grid."""
        t = timestep_value(timestep)
        if t is not None and t != self.timestep:
            if self.timestep is not None and t > self.timestep:  # timesteps fall: a rise is a new generation
                self.step = -1
            self.step += 1
            self.timestep = t
        pt, ph, pw = self.patch_size
        _, _, frames, height, width = latent.shape
        self.grid = (frames // pt, (height // ph) * (width // pw))

    # ------------------------------------------------------------------ asked by the attention hook
    def dense_here(self, index: int) -> bool:
        """Sparse-VideoGen's rule: dense for the first blocks of each stack and the noisiest steps."""
        config = self.config
        if config.pattern == "dense" or index < SVG_LAYER_COUNT * config.first_layers_fp:
            return True
        return self.timestep is not None and self.timestep > TIMESTEP_RANGE * (1.0 - config.first_times_fp)

    def layout(self, seq_len: int, text_valid: list[int]) -> VideoLayout:
        if self.grid is None:
            raise RuntimeError("sparse attention ran before its transformer's forward: hooks are missing")
        frames, per_frame = self.grid
        return VideoLayout(frames, per_frame, seq_len - frames * per_frame, tuple(int(n) for n in text_valid))

    def attend(self, block: ActiveBlock, q, k, v, text_valid: list[int]) -> torch.Tensor:
        """Sparse attention of (batch, heads, seq_len, head_dim) tensors for the active block."""
        layout = self.layout(q.shape[2], text_valid)
        band = band_from_sparsity(layout, self.config.sparsity)
        pattern, errors = self.config.pattern, None
        if pattern == "SVG":
            temporal, errors = classify_heads(q, k, v, layout, band, self.config.num_sampled_rows, self.generator)
        else:
            temporal = torch.full(q.shape[:2], pattern == "temporal", dtype=torch.bool)
        self.sparse_calls += 1
        self.record(block, temporal=temporal, errors=errors, band=band)
        return sparse_attention(q, k, v, layout, temporal, band, backend=self.config.backend)

    def count(self, block: ActiveBlock, dense: bool) -> None:
        self.attention_calls += 1
        if dense:
            self.record(block)

    def record(self, block: ActiveBlock, temporal=None, errors=None, band=None) -> None:
        entry = {"step": self.step, "timestep": self.timestep, "block": block.kind, "layer": block.index}
        if temporal is None:
            entry["mode"] = "dense"
        else:
            entry.update(mode="sparse", band=band,
                         heads=[["temporal" if t else "spatial" for t in row] for row in temporal.tolist()])
            if errors is not None:
                entry["mse_spatial"], entry["mse_temporal"] = errors.float().cpu().tolist()
        self.records.append(entry)
        if self.record_path is not None:
            with self.record_path.open("a") as stream:
                stream.write(json.dumps(entry) + "\n")

    def summary(self) -> dict:
        """Counts, and for sparse calls, how often each pattern was chosen."""
        chosen = {"spatial": 0, "temporal": 0}
        for entry in self.records:
            for row in entry.get("heads", []):
                for name in row:
                    chosen[name] += 1
        return {"attention_calls": self.attention_calls, "sparse_calls": self.sparse_calls,
                "dense_calls": self.attention_calls - self.sparse_calls, "heads_chosen": chosen}


# ---------------------------------------------------------------------------- hook helpers
def add_transformer_hook(model: torch.nn.Module, state: SVGState, latent_names: tuple[str, ...],
                         timestep_names: tuple[str, ...]):
    """A forward pre-hook giving ``state`` the latent and the timestep of each call."""
    names = parameter_names(model)
    latent = next(n for n in latent_names if n in names)
    timestep = next(n for n in timestep_names if n in names)

    def begin(module, args, kwargs):
        state.begin_call(call_argument(args, kwargs, names, latent), call_argument(args, kwargs, names, timestep))

    return model.register_forward_pre_hook(begin, with_kwargs=True)


def add_block_hooks(block: torch.nn.Module, active: ActiveBlock) -> list:
    """Mark ``block`` as the active block while it runs (pre-hook sets, post-hook clears)."""
    tokens: list[contextvars.Token] = []

    def enter(module, args):
        tokens.append(set_active(active))

    def leave(module, args, output):
        if tokens:
            reset_active(tokens.pop())

    return [block.register_forward_pre_hook(enter), block.register_forward_hook(leave, always_call=True)]


def log_summary(state: SVGState) -> None:
    s = state.summary()
    logger.info(f"sparse attention: {s['sparse_calls']}/{s['attention_calls']} attention calls sparse, "
                f"heads chosen {s['heads_chosen']}")
