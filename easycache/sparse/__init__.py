"""Sparse video attention (Sparse-VideoGen, SVG) for HunyuanVideo, in PyTorch, at any size.

    from easycache.sparse import SVGConfig, apply_svg
    svg = apply_svg(pipe_or_transformer_or_sampler, SVGConfig(sparsity=0.2))
    easycache.apply_easycache(pipe_or_transformer_or_sampler, ...)   # optional, after SVG
    video = pipe(...)
    svg.summary(); svg.records

Files: ``layout.py`` (token layout, token-major order), ``masks.py`` (spatial/temporal masks,
band from sparsity), ``attention.py`` (flex and SDPA backends), ``profiling.py`` (per-head choice),
``config.py`` (knobs), ``runtime.py`` (state and hooks), ``hyvideo_hooks.py`` (Tencent),
``diffusers_processor.py`` (diffusers), ``install.py`` (apply/remove).
"""

from .attention import flex_available, sparse_attention
from .config import SVGConfig
from .install import apply_svg, installed_svg, remove_svg
from .layout import VideoLayout
from .masks import band_from_sparsity
from .profiling import classify_heads

__all__ = ["SVGConfig", "VideoLayout", "apply_svg", "band_from_sparsity", "classify_heads", "flex_available",
           "installed_svg", "remove_svg", "sparse_attention"]
