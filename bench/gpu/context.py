"""What every check shares: the device and dtype, the time budget, the shapes (real or tiny), the
real-size transformer (built once, kept for the checks that need it) and the progress lines."""

from __future__ import annotations

import dataclasses
import gc
import time
from typing import Any

import torch

from . import models


class Skipped(Exception):
    """A check (or a piece of one) that was not run; the message is the reason."""


class CheckFailed(Exception):
    """A check that ran and found something wrong; the message says what."""


class Budget:
    """Wall-clock seconds the whole run may take, counted from the run's start.

    Before each check (and before each costly piece of one) the runner asks ``require`` with an
    estimate of the cost; what no longer fits is skipped with the reason "budget (...)". An
    estimate of None (nothing measured yet to estimate from) runs while any time is left.
    """

    def __init__(self, seconds: float, started: float | None = None):
        self.seconds = float(seconds)
        self.started = time.perf_counter() if started is None else started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def require(self, estimate: float | None, what: str) -> None:
        left = self.left()
        if left <= 0 or (estimate is not None and estimate > left):
            needs = "" if estimate is None else f"{what} needs ~{estimate:.0f} s, "
            raise Skipped(f"budget ({needs}{max(left, 0.0):.0f} s of {self.seconds:g} s left)")


@dataclasses.dataclass
class Context:
    """One run of the check. ``tiny``: CPU-sized shapes that exercise every code path in seconds."""

    device: torch.device
    tiny: bool
    budget: Budget
    seed: int = 0
    measured: dict = dataclasses.field(default_factory=dict)  # seconds other checks' estimates use
    objects: dict = dataclasses.field(default_factory=dict)  # built once, shared by checks (tiny pipeline)
    dtype_name: str | None = None  # None: bf16 on CUDA, float32 on a CPU
    _transformer: Any = None

    @property
    def dtype(self) -> torch.dtype:
        """bf16 on CUDA (what HunyuanVideo runs in); float32 on a CPU (its bf16 kernels are slow)."""
        if self.dtype_name is not None:
            return getattr(torch, self.dtype_name)
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    @property
    def sizes(self) -> dict:
        return models.TINY_SIZES if self.tiny else models.REAL_SIZES

    @property
    def transformer_config(self) -> dict:
        return models.TINY_CONFIG if self.tiny else models.HUNYUAN_13B

    @property
    def repeats(self) -> dict:
        """Timed calls per measurement of cheap calls (after a warm-up)."""
        return {"reused": 5, "attention": 5 if not self.tiny else 3}

    def repeats_for(self, seconds: float) -> int:
        """Timed repeats of a call taking ``seconds``: a long GPU call varies little between runs and
        costs much of the budget, so 3 below 10 s, 2 below 30 s, 1 from there."""
        if self.tiny:
            return 3
        return 3 if seconds < 10 else 2 if seconds < 30 else 1

    @property
    def sparse_backend(self) -> str:
        """Ours: block-sparse flex_attention on CUDA; the masked SDPA reference on a CPU."""
        from easycache.sparse import flex_available

        return "flex" if self.device.type == "cuda" and flex_available() else "sdpa"

    def transformer(self) -> torch.nn.Module:
        """The diffusers HunyuanVideo transformer with random weights, built on first use."""
        if self._transformer is None:
            started = time.perf_counter()
            self._transformer = models.build_transformer(self.transformer_config, self.device, self.dtype, self.seed)
            self.measured["transformer_build_seconds"] = time.perf_counter() - started
            self.measured["parameters"] = sum(p.numel() for p in self._transformer.parameters())
            self.say(f"built the transformer ({models.parameter_bytes(self._transformer) / 2**30:.2f} GiB of "
                     f"weights) in {self.measured['transformer_build_seconds']:.1f} s")
        return self._transformer

    def release_transformer(self) -> None:
        """Free the transformer's memory (before a check that builds another large model)."""
        self._transformer = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def say(self, message: str) -> None:
        print(f"[{self.budget.elapsed():7.1f} s] {message}", flush=True)
