"""The embedded demos: tiny text-to-video models trained on moving coloured shapes
(``scripts/train_demo.py``), shipped in this folder, runnable on a laptop CPU. ``demo`` has
HunyuanVideo's architecture (guidance-free, one transformer call a step); ``demo-wan`` has Wan 2.1's,
sampled with true classifier-free guidance (two calls a step), in ``wan/``.

    from easycache.demo import load_demo_pipeline
    pipe = load_demo_pipeline()                 # or load_demo_pipeline(model="demo-wan")
    frames = pipe("a red circle moving left", generator=torch.Generator().manual_seed(0)).frames[0]
"""

from __future__ import annotations

from pathlib import Path

# Where the shipped models are, by their --model name. Defined here, without importing torch or
# diffusers, so the entries can tell a demo name from a diffusers model before loading anything.
DEMO_DIR = Path(__file__).resolve().parent
DEMO_FOLDERS = {"demo": DEMO_DIR, "demo-wan": DEMO_DIR / "wan"}

__all__ = ["DemoOutput", "DemoPipeline", "load_demo_pipeline", "DEMO_DIR", "DEMO_FOLDERS"]


def load_demo_pipeline(device="cpu", folder: str | Path | None = None, model: str = "demo"):
    """A shipped demo pipeline by name (``DEMO_FOLDERS``: ``demo``, ``demo-wan``), or one saved in
    ``folder`` by ``scripts/train_demo.py --out``."""
    from .pipeline import DemoPipeline
    from .weights import load_demo

    if folder is None and model not in DEMO_FOLDERS:
        raise ValueError(f"no demo model {model!r}; one of {', '.join(DEMO_FOLDERS)}")
    config, transformer, text_encoder = load_demo(Path(folder) if folder else DEMO_FOLDERS[model])
    return DemoPipeline(config, transformer, text_encoder).to(device)


def __getattr__(name: str):
    if name in ("DemoOutput", "DemoPipeline"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
