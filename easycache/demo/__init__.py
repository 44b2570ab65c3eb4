"""The embedded demo: a tiny text-to-video model of HunyuanVideo's architecture, trained on moving
coloured shapes (``scripts/train_demo.py``), shipped in this folder, runnable on a laptop CPU.

    from easycache.demo import load_demo_pipeline
    pipe = load_demo_pipeline()
    frames = pipe("a red circle moving left", generator=torch.Generator().manual_seed(0)).frames[0]
"""

from __future__ import annotations

from pathlib import Path

import torch

from .pipeline import DemoOutput, DemoPipeline
from .weights import DEMO_DIR, load_demo

__all__ = ["DemoOutput", "DemoPipeline", "load_demo_pipeline", "DEMO_DIR"]


def load_demo_pipeline(device: str | torch.device = "cpu", folder: str | Path | None = None) -> DemoPipeline:
    """The shipped demo pipeline (or one saved in ``folder`` by ``scripts/train_demo.py --out``)."""
    config, transformer, text_encoder = load_demo(Path(folder) if folder else DEMO_DIR)
    return DemoPipeline(config, transformer, text_encoder).to(device)
