"""A cached video against its baseline, measured: PSNR (both forms), SSIM, calls computed, speedups,
into ``*_metrics.json`` and a side-by-side GIF. The runner writes it when a backend compares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from .gif import side_by_side_gif
from .metrics import compare_videos, metrics_to_json


def as_uint8(frames) -> np.ndarray:
    """Frames in [0, 1] as 8-bit, the way they are written: the codec's loss is not the cache's."""
    array = frames.detach().float().cpu().numpy() if torch.is_tensor(frames) else np.asarray(frames)
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


def write_comparison(baseline_frames, cached_frames, baseline: dict, cached: dict, videos: list[Path],
                     metrics_path: Path, gif_path: Path, timing_note: str) -> dict:
    """Metrics between two (T, H, W, 3) videos in [0, 1]; ``baseline``/``cached`` carry each run's
    ``summary`` and ``end_to_end_seconds``. Returns what it wrote to ``metrics_path``."""
    s = cached["summary"]
    metrics = compare_videos(as_uint8(baseline_frames), as_uint8(cached_frames), torch.device("cpu"))
    measured = metrics_to_json(metrics)
    comparison = {
        "baseline": str(videos[0]),
        "easycache": str(videos[1]),
        "thresh": s["thresh"],
        "computed_fraction": s["computed"] / s["calls"],
        "calls_speedup": s["speedup"],
        "transformer_speedup": baseline["summary"]["seconds"] / s["seconds"],
        "end_to_end_speedup": baseline["end_to_end_seconds"] / cached["end_to_end_seconds"],
        "timing": timing_note,
        "psnr": measured["psnr"],
        "psnr_frame_mean": measured.get("psnr_frame_mean"),
        "ssim": metrics.ssim,
    }
    metrics_path.write_text(json.dumps(comparison, indent=2))
    psnr = comparison["psnr"]
    psnr_text = psnr if isinstance(psnr, str) else f"{psnr:.2f}"
    side_by_side_gif(baseline_frames, cached_frames, gif_path, labels=(
        "baseline", f"EasyCache {comparison['transformer_speedup']:.1f}x {psnr_text} dB"))
    logger.info(
        f"EasyCache vs baseline: PSNR {psnr_text} dB (whole-video MSE), SSIM {metrics.ssim:.4f}, "
        f"{s['computed']}/{s['calls']} calls computed, transformer {comparison['transformer_speedup']:.2f}x, "
        f"end to end {comparison['end_to_end_speedup']:.2f}x faster; {metrics_path}, {gif_path}"
    )
    return comparison
