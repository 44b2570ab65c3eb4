"""SVGConfig: the knobs of sparse video attention, with Sparse-VideoGen's names and semantics."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..cache import knob
from .attention import BACKENDS

PATTERNS = ("SVG", "dense", "spatial", "temporal")
# Sparse-VideoGen's HunyuanVideo code multiplies first_layers_fp by 42 (not by HunyuanVideo's 20 double
# + 40 single blocks) and compares it with the block's index *within its own stack*: with 0.025,
# double blocks 0-1 and single blocks 0-1 stay dense (index < 1.05).
SVG_LAYER_COUNT = 42
# Timesteps run from 1000 (pure noise) down to 0; a step is dense while t > 1000 * (1 - first_times_fp).
TIMESTEP_RANGE = 1000.0


@dataclasses.dataclass(frozen=True)
class SVGConfig:
    """Sparse video attention (Sparse-VideoGen) for HunyuanVideo: each field's help says what it trades."""

    pattern: str = knob(
        "SVG", "SVG: each head takes the spatial or the temporal mask, whichever reproduces its sampled rows "
        "better; dense: the model's own attention everywhere (the baseline, same code path); "
        "spatial/temporal: that mask on every head", choices=PATTERNS,
    )
    num_sampled_rows: int = knob(
        64, "query rows sampled per head to choose its mask; more rows choose more surely and cost more "
        "(each is one exact attention row)",
    )
    sparsity: float = knob(
        0.2, "fraction of the attention map KEPT (0 < s <= 1; 1 is dense): text rows and columns plus a "
        "diagonal band over video tokens (frame-major for spatial heads, token-major for temporal heads); "
        "lower is faster and further from dense",
    )
    first_times_fp: float = knob(
        0.055, "a step runs dense attention while its timestep t (1000 = pure noise, falling to 0) satisfies "
        "t > 1000 * (1 - first_times_fp), as in Sparse-VideoGen; with flow shift 7, 0.055 keeps about the "
        "first 30% of 50 steps dense",
    )
    first_layers_fp: float = knob(
        0.025, "a block runs dense attention while its index within its own stack (double blocks 0-19, "
        "single blocks 0-39, each from 0) is below 42 * first_layers_fp, as in Sparse-VideoGen (42, not "
        "60); 0.025 keeps double blocks 0-1 and single blocks 0-1 dense",
    )
    record_attention: bool = knob(
        False, "write, per attention call (step, block, layer), the pattern chosen for each head and its "
        "sampled-row errors, as JSON lines under --output_path",
    )
    output_path: str = knob(
        "./results", "where --record_attention writes: a folder (gets svg_attention_<time>.jsonl) or a "
        ".jsonl file; videos go to --save-path",
    )
    backend: str = knob(
        "auto", "the kernel of SVG's sparse steps (its dense steps take --attention): flex: block-sparse "
        "flex_attention (torch >= 2.5, compiled on CUDA); sdpa: SDPA with SVG's mask as a dense boolean mask, "
        "the reference (memory grows with the sequence length squared); auto: flex on CUDA "
        "(--attention-backend is its former name)", flag="--attention-sparse", choices=BACKENDS,
        aliases=("--attention-backend",),
    )
    seed: int = knob(0, "seeds the choice of sampled rows (a private generator: the video's noise is untouched)",
                      cli=False)

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

    def record_file(self) -> Path | None:
        """Where attention records go: ``output_path`` if it names a .jsonl file, else a new
        time-stamped file in that folder; None without ``record_attention``."""
        if not self.record_attention:
            return None
        path = Path(self.output_path)
        return path if path.suffix == ".jsonl" else path / f"svg_attention_{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
