"""Per-model defaults (threshold, warmup) and the diffusers pipelines EasyCache supports.

Each preset names its source. Where EasyCache's authors published a port, its settings are used;
elsewhere the HunyuanVideo setting is the starting point, marked "not tuned": no weights of those
models can be run where this project is tested, so no measured value is claimed for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cache import EasyCacheConfig


@dataclass(frozen=True)
class Preset:
    thresh: float
    warmup_steps: int
    source: str


HUNYUAN = Preset(0.025, 5, "EasyCache paper and its HunyuanVideo script (2.21x, PSNR 32.66)")
UNTUNED = Preset(0.025, 5, "not tuned: HunyuanVideo's setting, no weights of this model were run")
WAN21 = Preset(0.05, 10, "EasyCache's Wan2.1 port (thresh 0.05, ret_steps 10; 2.54x, PSNR 25.24 on 1.3B)")
WAN22_TI2V = Preset(0.05, 7, "published Wan2.2 TI2V-5B port (thresh 0.05, 7 warmup steps)")
WAN22_EXPERTS = Preset(0.05, 10, "not tuned: Wan2.1's port setting, applied to Wan2.2's two experts")

# Pipeline class name -> preset. Subclasses of a listed class are supported too.
PRESETS: dict[str, Preset] = {
    "HunyuanVideoPipeline": HUNYUAN,
    "HunyuanVideoImageToVideoPipeline": UNTUNED,
    "HunyuanSkyreelsImageToVideoPipeline": UNTUNED,
    "HunyuanVideo15Pipeline": UNTUNED,
    "HunyuanVideo15ImageToVideoPipeline": UNTUNED,
    "WanPipeline": WAN21,
    "WanImageToVideoPipeline": WAN21,
    "CogVideoXPipeline": UNTUNED,
    "CogVideoXImageToVideoPipeline": UNTUNED,
    "LTXPipeline": UNTUNED,
    "LTXImageToVideoPipeline": UNTUNED,
    "MochiPipeline": UNTUNED,
    "FluxPipeline": UNTUNED,
    # The embedded demos (easycache/demo): HunyuanVideo's transformer with HunyuanVideo's setting;
    # Wan's (``--model demo-wan``) with Wan 2.1's, told apart by its config in ``preset_for``.
    "DemoPipeline": HUNYUAN,
}
SUPPORTED_PIPELINES = tuple(PRESETS)


def pipeline_family(pipeline: Any) -> str | None:
    """The supported class name ``pipeline`` is (or derives from), or None. HunyuanVideo's own
    (Tencent) pipeline counts as HunyuanVideo."""
    for cls in type(pipeline).__mro__:
        if cls.__name__ in PRESETS:
            return "HunyuanVideoPipeline" if cls.__module__.startswith("hyvideo") else cls.__name__
    return None


def preset_for(pipeline: Any) -> Preset:
    """The preset of a supported pipeline (Wan 2.2 variants told apart by their configuration)."""
    family = pipeline_family(pipeline)
    if family is None:
        raise TypeError(
            f"EasyCache does not support {type(pipeline).__name__}; supported diffusers pipelines: "
            f"{', '.join(SUPPORTED_PIPELINES)}, and Tencent's HunyuanVideo sampler"
        )
    config = getattr(pipeline, "config", {}) or {}
    if family.startswith("Wan") and config.get("expand_timesteps"):
        return WAN22_TI2V
    if family.startswith("Wan") and getattr(pipeline, "transformer_2", None) is not None:
        return WAN22_EXPERTS
    if family == "DemoPipeline" and getattr(config, "architecture", None) == "wan":
        return WAN21
    return PRESETS[family]


def config_for(pipeline: Any, **overrides) -> EasyCacheConfig:
    """An ``EasyCacheConfig`` from the pipeline's preset, with any field overridden."""
    preset = preset_for(pipeline)
    values = {"thresh": preset.thresh, "warmup_steps": preset.warmup_steps, **overrides}
    return EasyCacheConfig(**values)
