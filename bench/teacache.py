"""TeaCache on diffusers' HunyuanVideo and Wan transformers, for the benchmark.

Written from the paper (Liu et al., "Timestep Embedding Tells: It's Time to Cache for Video
Diffusion Model", CVPR 2025) and the rule its released scripts apply (TeaCache4HunyuanVideo,
TeaCache4Wan2.1), not from their code. At each transformer call:

- the *indicator* is read: on HunyuanVideo the video stream entering the first double-stream block,
  layer-normed and modulated with that block's (shift, scale) from the timestep-and-text vector
  (``transformer_blocks[0].norm1``'s first output); on Wan the timestep projection ``e0`` that every
  block adds to its modulation table (what TeaCache4Wan2.1 reads with ``use_ret_steps``; the Wan
  script never reads a block's modulated hidden states);
- ``rel = |ind - ind_prev| / |ind_prev|`` (mean absolute values), rescaled by a polynomial fitted per
  model (``coefficients``, highest degree first, as ``numpy.poly1d`` takes them), is added to an
  accumulator; while the accumulator stays below ``threshold`` the blocks are skipped and the
  residual they added on the last computed call (video stream out minus in) is added instead; when
  it reaches the threshold the blocks run and the accumulator restarts at 0;
- the first ``first_steps`` and the last ``last_steps`` steps always compute.

Each call of a step (the branches of classifier-free guidance: TeaCache4Wan2.1's even / odd calls)
keeps its own indicator, accumulator and residual, and decides on its own. Calls with the same
timestep are one step; a timestep that rises, or a step past the last, starts a new generation.

The embedders, the output norm and projection run on every call, as in the released scripts; a
skipped call runs none of the blocks (the bench's call counter sees the last block not run).

The polynomial is the model's: on the demos it is fitted by ``bench/calibrate_teacache.py`` with
TeaCache's own procedure (full runs on calibration prompts; at every pair of consecutive steps the
indicator's relative L1 change against the transformer output's; ``numpy.polyfit`` of degree 4) and
read from ``bench/results/<model>/teacache_coefficients.json``. For the real models the released
scripts ship coefficients for (HunyuanVideo; Wan 2.1 T2V 1.3B and 14B), those are used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from easycache.calls import prediction_of, timestep_value

RESULTS = Path(__file__).resolve().parent / "results"
COEFFICIENTS_FILE = "teacache_coefficients.json"
DEGREE = 4  # TeaCache's polynomial

# Coefficients the released scripts ship (numbers published with TeaCache, cited, not code): the
# HunyuanVideo one from TeaCache4HunyuanVideo/teacache_sample_video.py, Wan 2.1 T2V's (use_ret_steps)
# from TeaCache4Wan2.1/teacache_generate.py, Wan told apart by its hidden width.
RELEASED = {
    "hunyuan": (7.33226126e02, -4.01131952e02, 6.75869174e01, -3.14987800e00, 9.61237896e-02),
    "wan-1.3B": (-5.21862437e04, 9.23041404e03, -5.28275948e02, 1.36987616e01, -4.99875664e-02),
    "wan-14B": (-3.03318725e05, 4.90537029e04, -2.65530556e03, 5.87365115e01, -3.15583525e-01),
}
WAN_WIDTHS = {1536: "wan-1.3B", 5120: "wan-14B"}

# Steps always computed, as each released script's counters fall out: HunyuanVideo's wraps one step
# early (num_steps = infer_steps - 1), so its last two steps compute; Wan's use_ret_steps computes
# the first 5 steps (ret_steps = 5 * 2 calls) and never cuts off at the end (cutoff = all calls).
FORCED = {"hunyuan": (1, 2), "wan": (5, 0)}
# Thresholds of the released presets: HunyuanVideo 0.1 (1.6x) and 0.15 (2.1x); Wan 2.1 with
# use_ret_steps 0.05 / 0.10 (1.3B) and 0.10 / 0.20 (14B). The bench's sweep of each architecture:
# the presets and values around them, as many for each, reaching over the computed calls EasyCache's
# thresholds reach on the demos.
PRESETS = {"hunyuan": (0.1, 0.15), "wan": (0.05, 0.1, 0.2)}
THRESHOLDS = {"hunyuan": (0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.15),
              "wan": (0.05, 0.06, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5)}
SWEEP_LENGTH = 8
assert all(len(t) == SWEEP_LENGTH and set(PRESETS[a]) <= set(t) for a, t in THRESHOLDS.items())


INDICATORS = {
    "hunyuan": "the video stream entering the first double-stream block, layer-normed and modulated with its "
               "(shift, scale): transformer_blocks[0].norm1's first output",
    "wan": "the timestep projection e0 (timestep_proj) that every block adds to its modulation table "
           "(TeaCache4Wan2.1 with use_ret_steps)",
}


def architecture(transformer: torch.nn.Module) -> str | None:
    """``"hunyuan"`` (double- then single-stream blocks), ``"wan"`` (one block list, a timestep
    projection), or None for a transformer this TeaCache does not know."""
    if len(getattr(transformer, "transformer_blocks", ())) and hasattr(transformer, "single_transformer_blocks"):
        first = transformer.transformer_blocks[0]
        if hasattr(first, "norm1") and hasattr(first, "norm1_context"):
            return "hunyuan"
    if len(getattr(transformer, "blocks", ())) and hasattr(transformer, "condition_embedder"):
        return "wan"
    return None


def blocks_of(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks a computed call runs, in order; a skipped call runs none of them."""
    if architecture(transformer) == "hunyuan":
        return [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    return list(transformer.blocks)


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else args[index]


def indicator(arch: str, block: torch.nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    """What TeaCache compares between steps, from the first block's arguments (see the module doc)."""
    if arch == "wan":
        return _arg(args, kwargs, 2, "temb")  # e0: (B, 6, dim), the timestep projection
    hidden, temb = _arg(args, kwargs, 0, "hidden_states"), _arg(args, kwargs, 2, "temb")
    if type(block).__name__ == "DualStreamBlock":  # the demo's plain-torch HunyuanVideo (diffusers < 0.32)
        from easycache.demo.hunyuan_torch import modulate

        shift, scale = block.norm1(temb)[:2]
        return modulate(hidden, shift, scale)
    return block.norm1(hidden, emb=temb)[0]  # AdaLayerNormZero: the modulated input first


def relative_l1(now: torch.Tensor, before: torch.Tensor) -> float:
    """``|now - before| / |before|``, mean absolute values in float32."""
    return float((now.float() - before.float()).abs().mean() / before.float().abs().mean())


@dataclass(frozen=True)
class TeaCacheConfig:
    """``threshold``: the accumulated rescaled change below which calls are skipped (higher: faster,
    further from the uncached video). ``coefficients``: the rescaling polynomial, highest degree
    first. ``first_steps`` / ``last_steps``: steps always computed at either end."""

    threshold: float
    coefficients: tuple[float, ...]
    first_steps: int = 1
    last_steps: int = 1


@dataclass
class _Branch:
    previous: torch.Tensor | None = None  # the indicator at this branch's previous call
    accumulated: float = 0.0
    residual: torch.Tensor | None = None  # video stream after the blocks minus before, last computed call


@dataclass
class _Generation:
    step: int = -1
    timestep: float | None = None
    num_steps: int = 0
    calls_in_step: int = 0
    branches: dict = field(default_factory=dict)


class TeaCache:
    """TeaCache installed on one transformer (``install`` / ``remove``); ``decisions`` lists, per
    call, (step, branch, computed)."""

    def __init__(self, transformer: torch.nn.Module, config: TeaCacheConfig, num_steps: Callable[[], int | None]):
        self.arch = architecture(transformer)
        if self.arch is None:
            raise TypeError(f"TeaCache here knows HunyuanVideo's and Wan's transformers, not {type(transformer).__name__}")
        self.transformer, self.config, self.num_steps = transformer, config, num_steps
        self.rescale = np.poly1d(config.coefficients)
        self.blocks = blocks_of(transformer)
        self.decisions: list[tuple[int, int, bool]] = []
        self._generation = _Generation()
        self._branch: _Branch | None = None
        self._compute = True
        self._input: torch.Tensor | None = None
        self._handles: list = []

    # ------------------------------------------------------------------ installing
    def install(self) -> "TeaCache":
        self._handles.append(self.transformer.register_forward_pre_hook(self._begin_call, with_kwargs=True))
        # Wrap whatever each block's forward is now (diffusers' hook registries leave their own in
        # the instance); removal puts exactly that back.
        self._before = [block.__dict__.get("forward") for block in self.blocks]
        for i, block in enumerate(self.blocks):
            block.forward = self._wrap(block, block.forward, first=i == 0, last=i == len(self.blocks) - 1)
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for block, before in zip(self.blocks, self._before):
            if before is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = before

    # ------------------------------------------------------------------ the rule
    def _begin_call(self, module, args, kwargs):
        """Which step and which call of it this is; a new generation when the timestep rises or
        the steps run out."""
        t = timestep_value(kwargs.get("timestep", args[1] if len(args) > 1 else None))
        g = self._generation
        if g.step < 0 or t is None or t != g.timestep:
            if g.step + 1 >= g.num_steps or (t is not None and g.timestep is not None and t > g.timestep):
                g = self._generation = _Generation(num_steps=self.num_steps() or 0)
            g.step, g.timestep, g.calls_in_step = g.step + 1, t, 0
        branch = g.calls_in_step
        g.calls_in_step += 1
        self._branch = g.branches.setdefault(branch, _Branch())
        self._branch_index = branch

    def _decide(self, ind: torch.Tensor) -> bool:
        g, b, cfg = self._generation, self._branch, self.config
        if g.step < cfg.first_steps or g.step >= g.num_steps - cfg.last_steps or b.previous is None:
            compute, b.accumulated = True, 0.0
        else:
            b.accumulated += float(self.rescale(relative_l1(ind, b.previous)))
            compute = not b.accumulated < cfg.threshold or b.residual is None
            if compute:
                b.accumulated = 0.0
        b.previous = ind.detach().clone()
        self.decisions.append((g.step, self._branch_index, compute))
        return compute

    def _wrap(self, block, forward, first: bool, last: bool):
        def teacache_block(*args, **kwargs):
            if first:
                self._compute = self._decide(indicator(self.arch, block, args, kwargs))
                if self._compute:
                    self._input = _arg(args, kwargs, 0, "hidden_states")
            if self._compute:
                out = forward(*args, **kwargs)
                if last:
                    video = out[0] if isinstance(out, tuple) else out
                    self._branch.residual = (video - self._input).detach()
                    self._input = None
                return out
            hidden = _arg(args, kwargs, 0, "hidden_states")
            if first:
                hidden = hidden + self._branch.residual
            if self.arch == "hunyuan":  # blocks pass (video, text) on; the text stream is not read after them
                return hidden, _arg(args, kwargs, 1, "encoder_hidden_states")
            return hidden

        return teacache_block


# ---------------------------------------------------------------------------------------------
# Calibration: TeaCache's own procedure, and where the bench finds the coefficients.


class Recorder:
    """On full (uncached) runs: per call, the indicator's and the output's relative L1 change since
    the same branch's call at the previous step. ``pairs`` is [(step, indicator change, output
    change)], ``step`` the later step of the two."""

    def __init__(self, transformer: torch.nn.Module):
        self.arch = architecture(transformer)
        if self.arch is None:
            raise TypeError(f"TeaCache here knows HunyuanVideo's and Wan's transformers, not {type(transformer).__name__}")
        self.transformer = transformer
        self.first = blocks_of(transformer)[0]
        self.pairs: list[tuple[int, float, float]] = []
        self._timestep, self._step, self._call, self._previous, self._indicator = None, -1, 0, {}, None

    def __enter__(self) -> "Recorder":
        forward, self._before = self.first.forward, self.first.__dict__.get("forward")

        def recording_block(*args, **kwargs):
            self._indicator = indicator(self.arch, self.first, args, kwargs).detach().clone()
            return forward(*args, **kwargs)

        self.first.forward = recording_block
        self._handles = [self.transformer.register_forward_pre_hook(self._begin, with_kwargs=True),
                         self.transformer.register_forward_hook(self._end)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        if self._before is None:
            self.first.__dict__.pop("forward", None)
        else:
            self.first.forward = self._before

    def _begin(self, module, args, kwargs):
        t = timestep_value(kwargs.get("timestep", args[1] if len(args) > 1 else None))
        if self._timestep is not None and t is not None and t > self._timestep:
            self._previous, self._step = {}, -1  # a new generation: no pair across it
        if t == self._timestep:
            self._call += 1
        else:
            self._call, self._step = 0, self._step + 1
        self._timestep = t

    def _end(self, module, args, output):
        now = (self._indicator, prediction_of(output).detach().clone())
        before = self._previous.get(self._call)
        if before is not None:
            self.pairs.append((self._step, relative_l1(now[0], before[0]), relative_l1(now[1], before[1])))
        self._previous[self._call] = now


def after_warmup(pairs: list[tuple[int, float, float]], arch: str) -> list[tuple[float, float]]:
    """The (indicator change, output change) pairs from the first step the rule may skip on: the
    first steps always compute, and their changes are never rescaled."""
    first = FORCED[arch][0]
    return [(x, y) for step, x, y in pairs if step >= first]


def fit(pairs: list[tuple[float, float]], degree: int = DEGREE) -> tuple[list[float], float]:
    """``numpy.polyfit`` of the output's change on the indicator's (TeaCache's fit), and its R^2."""
    x, y = np.array(pairs, dtype=np.float64).T
    coefficients = np.polyfit(x, y, degree)
    residual = y - np.poly1d(coefficients)(x)
    r2 = 1.0 - float((residual**2).sum() / ((y - y.mean()) ** 2).sum())
    return [float(c) for c in coefficients], r2


def weights_fingerprint(folder: Path) -> str:
    """sha256 of a demo folder's weights: a committed fit names the weights it was made on."""
    return hashlib.sha256((folder / "demo.safetensors").read_bytes()).hexdigest()


def coefficients_for(model: str, folder_name: str, transformer: torch.nn.Module) -> tuple[tuple[float, ...] | None, str]:
    """The rescaling polynomial for ``model`` and where it comes from; (None, why) where there is none.

    A fit in ``bench/results/<folder_name>/teacache_coefficients.json`` (the demos': committed) comes
    first, refused where it names other weights than a demo's own; else the released coefficients of
    the real HunyuanVideo or Wan 2.1 (1.3B / 14B by width)."""
    from easycache.demo import DEMO_FOLDERS

    path = RESULTS / folder_name / COEFFICIENTS_FILE
    if path.is_file():
        fitted = json.loads(path.read_text())
        if model in DEMO_FOLDERS and fitted.get("weights_sha256") != weights_fingerprint(DEMO_FOLDERS[model]):
            return None, (f"{path.relative_to(RESULTS.parent.parent)} was fitted on other weights than {model}'s; "
                          f"refit: python bench/calibrate_teacache.py --model {model} --overwrite")
        return tuple(fitted["coefficients"]), f"fitted on this model ({path.relative_to(RESULTS.parent.parent)})"
    arch = architecture(transformer)
    if arch == "hunyuan" and model not in DEMO_FOLDERS:
        return RELEASED["hunyuan"], "released for HunyuanVideo (TeaCache4HunyuanVideo)"
    if arch == "wan" and model not in DEMO_FOLDERS:
        width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        if width in WAN_WIDTHS:
            return RELEASED[WAN_WIDTHS[width]], f"released for Wan 2.1 T2V {WAN_WIDTHS[width][4:]} (TeaCache4Wan2.1)"
    return None, (f"no TeaCache coefficients for this model; fit them: python bench/calibrate_teacache.py "
                  f"--model {model}")
