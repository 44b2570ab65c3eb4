"""The dense attention path of each code base (``--attention {auto,model,sdpa}``), installed and
removed like the cache: ``apply_attention``, ``remove_attention``, ``installed_attention``."""

from .install import MODES, AttentionChoice, apply_attention, installed_attention, remove_attention

__all__ = ["MODES", "AttentionChoice", "apply_attention", "installed_attention", "remove_attention"]
