"""SVGConfig: the knobs of sparse video attention, with Sparse-VideoGen's names and semantics."""

from __future__ import annotations

import dataclasses

from .attention import BACKENDS

PATTERNS = ("SVG", "dense", "spatial", "temporal")
# Sparse-VideoGen's HunyuanVideo code multiplies first_layers_fp by 42 (not by HunyuanVideo's 20 double
# + 40 single blocks) and compares it with the block's index *within its own stack*: with 0.025,
# double blocks 0-1 and single blocks 0-1 stay dense (index < 1.05).
SVG_LAYER_COUNT = 42
# Timesteps run from 1000 (pure noise) down to 0; a step is dense while t > 1000 * (1 - first_times_fp).
TIMESTEP_RANGE = 1000.0


@dataclasses.dataclass
class SVGConfig:
    """Sparse video attention (Sparse-VideoGen) for HunyuanVideo.

    pattern: "SVG" profiles each head online and gives it the spatial or the temporal mask;
        "spatial" / "temporal" force one mask on every head; "dense" runs the model's own
        attention everywhere (the baseline, through the same hooks).
    num_sampled_rows: query rows sampled per head to choose its mask; more rows choose more surely
        and cost more (each row is one exact attention row).
    sparsity: fraction of the attention map kept (text rows and columns plus a band over video
        tokens); lower is faster and further from dense attention; 1.0 is dense.
    first_times_fp: steps whose timestep exceeds 1000 * (1 - first_times_fp) stay dense (the noisiest
        steps, where layout is decided); 0.055 with flow shift 7 keeps about the first 30% of 50 steps.
    first_layers_fp: blocks whose index within their own stack (double or single) is below
        42 * first_layers_fp stay dense; 0.025 keeps double blocks 0-1 and single blocks 0-1.
    record_path: a JSON-lines file receiving, per attention call, the pattern chosen for each head.
    backend: "flex" (block-sparse flex_attention, compiled on CUDA), "sdpa" (masked reference, for
        CPUs and tests) or "auto" (flex on CUDA when available, else sdpa).
    seed: seeds the choice of sampled rows (the generator is private: the video's noise is untouched).
    """

    pattern: str = "SVG"
    num_sampled_rows: int = 64
    sparsity: float = 0.2
    first_times_fp: float = 0.055
    first_layers_fp: float = 0.025
    record_path: str | None = None
    backend: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}; got {self.pattern!r}")
        if self.num_sampled_rows < 1:
            raise ValueError(f"num_sampled_rows must be at least 1; got {self.num_sampled_rows}")
        if not 0.0 < self.sparsity <= 1.0:
            raise ValueError(f"sparsity is the fraction of attention kept, in (0, 1]; got {self.sparsity}")
        for name in ("first_times_fp", "first_layers_fp"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {self.backend!r}")
