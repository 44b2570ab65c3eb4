"""Honest timing and memory on any device.

A timed region starts after the device's queue has drained and is measured between two CUDA events
recorded around it (the CPU clock on a CPU); the first call of a measurement is a warm-up (kernel
selection, allocator growth, compilation) reported apart as ``first_seconds``; the result is the
median of the timed repeats, all of which are kept as ``samples``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``(fn(), seconds)``; on CUDA the seconds between events recorded before and after ``fn``."""
    if device.type != "cuda":
        started = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - started
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    out = fn()
    end.record()
    end.synchronize()
    return out, start.elapsed_time(end) / 1000.0


def measure(fn: Callable[[], Any], device: torch.device, repeats: int | Callable[[float], int], warmup: int = 1,
            prepare: Callable[[], Callable[[], Any]] | None = None) -> dict:
    """``warmup`` calls (the first one's seconds are ``first_seconds``: compilation, kernel choice,
    allocator growth), then ``repeats`` timed calls: ``median_seconds`` and all ``samples``; ``last``
    is the last call's output. ``repeats`` may be a function of ``first_seconds`` (long calls: fewer).
    ``prepare``: called untimed before each call, returns the call to time (new inputs each call).
    """
    def one():
        return time_call(prepare() if prepare is not None else fn, device)

    result: dict = {}
    for i in range(warmup):
        out, seconds = one()
        if i == 0:
            result["first_seconds"] = seconds
        del out
    if callable(repeats):
        repeats = repeats(result["first_seconds"])
    out, samples = None, []
    for _ in range(repeats):
        out, seconds = one()
        samples.append(seconds)
    result.update(median_seconds=statistics.median(samples), samples=samples, last=out)
    return result


def median(samples: list[float]) -> float:
    return statistics.median(samples)


# ---------------------------------------------------------------------------- memory
def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    """Peak bytes the caching allocator handed out since ``reset_peak`` (None on a CPU: no such statistics)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def allocated_bytes(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def tensor_bytes_held(root: Any, exclude: set[int] = frozenset(), max_depth: int = 8) -> int:
    """Bytes of the distinct tensor storages reachable from ``root`` through attributes and
    containers (modules and storages in ``exclude``, e.g. the model's weights, not counted).

    This is how much memory an object such as an installed cache keeps alive, on any device.
    """
    seen_objects: set[int] = set()
    seen_storages: set[tuple] = set()
    total = 0
    stack = [(root, 0)]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen_objects or depth > max_depth:
            continue
        seen_objects.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            key = (str(obj.device), storage.data_ptr())
            if key not in seen_storages and storage.data_ptr() not in exclude:
                seen_storages.add(key)
                total += storage.nbytes()
            continue
        if isinstance(obj, (torch.nn.Module, type, str, bytes, int, float, bool)):
            continue
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        else:
            children = list(getattr(obj, "__dict__", {}).values())
            children += [getattr(obj, name) for name in getattr(type(obj), "__slots__", ()) if hasattr(obj, name)]
        stack.extend((child, depth + 1) for child in children)
    return total


def storage_pointers(model: torch.nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
