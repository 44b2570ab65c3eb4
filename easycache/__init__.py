"""EasyCache: training-free, runtime-adaptive caching for video diffusion transformers.

    import easycache
    cache = easycache.apply_easycache(pipe_or_transformer, easycache.EasyCacheConfig(thresh=0.025))
    video = pipe(...)
    print(cache.summary())
"""

from .cache import CallRecord, EasyCache, EasyCacheConfig
from .api import apply_attention, apply_easycache, installed_attention, installed_cache, remove_attention, remove_easycache
from .presets import PRESETS, SUPPORTED_PIPELINES, config_for, preset_for
from .version import __version__

__all__ = [
    "CallRecord", "EasyCache", "EasyCacheConfig", "PRESETS", "SUPPORTED_PIPELINES", "apply_attention",
    "apply_easycache", "__version__", "config_for", "installed_attention", "installed_cache", "preset_for",
    "remove_attention", "remove_easycache",
]
