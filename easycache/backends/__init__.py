"""Backends: one small file per code base, each a ``runner.Backend`` named by its module's
``BACKEND``. A new file here is a new ``--backend`` choice; nothing else changes.

``tencent``: HunyuanVideo's own code (a checkout with ``hyvideo/``); ``diffusers``: any supported
diffusers pipeline (hub id or folder); ``demo``: the embedded demo model (CPU, seconds). A backend
is imported only when chosen, so ``--help`` and flag errors load none of them.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import UsageError

BACKENDS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def make_backend(name: str, hunyuan_root: str | None = None):
    """The backend called ``name`` (``hunyuan_root``: the checkout, for backends that run one)."""
    if name not in BACKENDS:
        raise UsageError(f"--backend {name}: not a backend; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}").BACKEND(hunyuan_root=hunyuan_root)
