"""Backends: one small file per code base, each a ``runner.Backend``.

``tencent``: HunyuanVideo's own code (a checkout with ``hyvideo/``); ``diffusers``: any supported
diffusers pipeline (hub id or folder); ``demo``: the embedded demo model (CPU, seconds). Imported
only when chosen, so ``--help`` and flag errors load none of them.
"""

from __future__ import annotations

import importlib

from ..errors import UsageError

BACKENDS = {
    "tencent": "easycache.backends.tencent:TencentBackend",
    "diffusers": "easycache.backends.diffusers:DiffusersBackend",
    "demo": "easycache.backends.demo:DemoBackend",
}


def make_backend(name: str, **options):
    """The backend called ``name``, built with ``options`` (e.g. ``hunyuan_root``)."""
    if name not in BACKENDS:
        raise UsageError(f"--backend {name}: not a backend; choose one of {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**options)
