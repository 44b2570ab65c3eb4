"""Saving and loading the demo's weights: one safetensors file and one JSON config beside it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import DEMO_DIR, DEMO_FOLDERS  # noqa: F401 (DEMO_FOLDERS: the shipped models, for the scripts)
from .model import DemoConfig, build_transformer
from .text import TextEncoder

WEIGHTS = "demo.safetensors"
CONFIG = "config.json"


def build_modules(config: DemoConfig) -> tuple[torch.nn.Module, TextEncoder]:
    """The transformer and text encoder of ``config``, with random weights."""
    text_encoder = TextEncoder(width=config.text_width, layers=config.text_layers, max_length=config.max_words)
    return build_transformer(config), text_encoder


def save_demo(folder: Path, config: DemoConfig, transformer: torch.nn.Module, text_encoder: torch.nn.Module,
              extra: dict | None = None) -> None:
    """Write ``config.json`` and ``demo.safetensors`` (fp16: half the size, ample for this model)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"transformer.{k}": v for k, v in transformer.state_dict().items()}
    tensors.update({f"text_encoder.{k}": v for k, v in text_encoder.state_dict().items()})
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in tensors.items()}
    tmp = folder / (WEIGHTS + ".partial")
    save_file(tensors, str(tmp))
    tmp.replace(folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps({**config.to_dict(), **({"training": extra} if extra else {})}, indent=2))


def load_demo_config(folder: Path = DEMO_DIR) -> DemoConfig:
    """The shipped model's config (its frames, size, sampler), without its weights."""
    data = json.loads((folder / CONFIG).read_text())
    data.pop("training", None)
    return DemoConfig.from_dict(data)


def load_demo(folder: Path = DEMO_DIR) -> tuple[DemoConfig, torch.nn.Module, TextEncoder]:
    """The trained modules (float32, eval mode) and their config from ``folder``."""
    config = load_demo_config(folder)
    transformer, text_encoder = build_modules(config)
    tensors = load_file(str(folder / WEIGHTS))
    for prefix, module in (("transformer.", transformer), ("text_encoder.", text_encoder)):
        state = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
    return config, transformer.eval(), text_encoder.eval()
