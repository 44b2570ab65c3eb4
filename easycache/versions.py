"""Which version of a package is installed, and a feature's floor: one clear line when it is older.

The project runs in HunyuanVideo's own environment (diffusers 0.31, torch 2.4) as well as in new
ones; a feature that needs a newer release (diffusers' HunyuanVideo or Wan classes, HunyuanVideo-1.5's
pipeline, context parallelism, ...) calls ``require`` where it is used, which raises a ``UsageError``
naming the feature, the installed version and the one it needs: the entries print it as one line and
exit 2, never an ImportError traceback.
"""

from __future__ import annotations

from importlib import metadata

from packaging.version import Version

from .errors import UsageError

# What needs which diffusers, read off the releases' own exports.
DIFFUSERS_FLOORS = {
    "HunyuanVideoTransformer3DModel": "0.32", "HunyuanVideoPipeline": "0.32", "AutoencoderKLHunyuanVideo": "0.32",
    "HunyuanVideoImageToVideoPipeline": "0.33", "WanTransformer3DModel": "0.33", "WanPipeline": "0.33",
    "WanImageToVideoPipeline": "0.33", "cache_context": "0.35", "FirstBlockCacheConfig": "0.35",
    "HunyuanVideo15Pipeline": "0.36", "HunyuanVideo15Transformer3DModel": "0.36",
    "HunyuanVideo15ImageToVideoPipeline": "0.36", "ContextParallelConfig": "0.36",
    # HunyuanVideo's attention through diffusers' attention dispatcher, which SVG's diffusers path wraps.
    "dispatch_attention_fn": "0.36",
    # diffusers' own caches, the benchmark's peers.
    "FasterCacheConfig": "0.33", "PyramidAttentionBroadcastConfig": "0.33", "TaylorSeerCacheConfig": "0.36",
    "MagCacheConfig": "0.37", "SeaCacheConfig": "0.41",
}


def installed(package: str) -> Version | None:
    """The installed release of ``package`` (its distribution name), or None when it is absent."""
    try:
        return Version(metadata.version(package))
    except metadata.PackageNotFoundError:
        return None


def at_least(package: str, minimum: str) -> bool:
    """Whether ``package`` is installed at ``minimum`` or newer (local tags like ``+cpu`` ignored)."""
    version = installed(package)
    return version is not None and Version(version.base_version) >= Version(minimum)


def shortfall(feature: str, package: str, minimum: str) -> str | None:
    """None when ``package >= minimum``; else the one line that says so: "FEATURE needs PACKAGE >=
    MINIMUM; this environment has PACKAGE X (pip install 'PACKAGE>=MINIMUM')"."""
    if at_least(package, minimum):
        return None
    version = installed(package)
    has = f"{package} {version}" if version else f"no {package}"
    return f"{feature} needs {package} >= {minimum}; this environment has {has} (pip install '{package}>={minimum}')"


def require(feature: str, package: str, minimum: str) -> None:
    """Raise a ``UsageError`` with ``shortfall``'s line unless ``package >= minimum``."""
    message = shortfall(feature, package, minimum)
    if message:
        raise UsageError(message)


def require_diffusers_class(name: str, feature: str | None = None) -> None:
    """``require`` for a class (or method) diffusers added in a known release; a name this table lacks
    that the installed diffusers does not export gets the same line with "a newer release"."""
    import diffusers

    if name in DIFFUSERS_FLOORS:
        require(feature or f"diffusers' {name}", "diffusers", DIFFUSERS_FLOORS[name])
    elif not hasattr(diffusers, name):
        raise UsageError(f"{feature or name}: this diffusers ({diffusers.__version__}) has no {name}; "
                         "pip install -U diffusers")
