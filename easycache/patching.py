"""Replacing a module-level function (a code base's attention call) while any model needs it.

Sparse attention (``sparse/``) and the dense attention path (``attention/``) both put a dispatcher
in place of the function a model's blocks call (``dispatch_attention_fn``, ``attention``,
``parallel_attention``). Each owner patches once for all its installed models (a use count) and
wraps whatever is there when it patches, so the two nest: installed in one order, removed in the
reverse one (a removal out of order is refused rather than dropping the other's dispatcher).
"""

from __future__ import annotations

from typing import Any, Callable

_PATCHES: dict[tuple[int, str, str], list] = {}  # (id(module), name, owner) -> [module, original, patched, users]


def patch(owner: str, module: Any, name: str, make_dispatcher: Callable) -> None:
    """Put ``make_dispatcher(original)`` in place of ``module.name`` (once per owner; counted)."""
    key = (id(module), name, owner)
    if key not in _PATCHES:
        original = getattr(module, name)
        patched = make_dispatcher(original)
        _PATCHES[key] = [module, original, patched, 0]
        setattr(module, name, patched)
    _PATCHES[key][3] += 1


def unpatch(owner: str, module: Any, name: str) -> None:
    """Undo one ``patch``; the last user puts the original back."""
    key = (id(module), name, owner)
    entry = _PATCHES[key]
    if entry[3] == 1 and getattr(module, name) is not entry[2]:
        raise RuntimeError(f"{module.__name__}.{name} was replaced again after {owner} was installed "
                           "(sparse attention over --attention, say): remove that first")
    entry[3] -= 1
    if entry[3] == 0:
        setattr(module, name, entry[1])
        del _PATCHES[key]
