"""Sparse attention as a step of a run (``hyvideo_svg_easycache.py``): installed on the loaded
model before EasyCache (so a skipped step runs no attention at all), its summary in each run JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from loguru import logger

from ..errors import UsageError
from .config import SVGConfig
from .install import apply_svg


class SparseAttentionStep:
    def __init__(self, config: SVGConfig):
        self.config = config
        self.state = None

    def prepare(self, model: Any, args: Any) -> None:
        try:
            self.state = apply_svg(model, self.config)
        except (TypeError, ValueError) as error:
            raise UsageError(f"sparse attention: {error}") from error
        c = self.config
        logger.info(f"sparse attention: pattern {c.pattern}, sparsity {c.sparsity}, first_times_fp "
                    f"{c.first_times_fp}, first_layers_fp {c.first_layers_fp}"
                    + (f"; attention records: {self.state.record_path}" if self.state.record_path else ""))

    def job_key(self) -> dict:
        """What sparse attention changes in the video (where its records go does not)."""
        config = dataclasses.asdict(self.config)
        return {"svg": {k: v for k, v in config.items() if k not in ("record_attention", "output_path")}}

    def record(self) -> dict:
        """The config and what sparse attention did so far, under "svg"."""
        summary = self.state.summary() if self.state is not None else {}
        return {"svg": {**dataclasses.asdict(self.config), **summary}}
