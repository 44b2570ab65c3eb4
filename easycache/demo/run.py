"""``easycache_sample_video.py --model demo``: the whole job on a CPU in seconds.

One prompt, sampled twice from the same seed through the same EasyCache code path: the baseline
(threshold 0: every step computed, bit-identical to no cache) and EasyCache at the requested
threshold. Both videos and their run JSONs are written, and the metrics between them (PSNR, SSIM;
``tools/video_metrics.py``) with the measured speedup, into ``*_metrics.json`` and a side-by-side GIF.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from ..cache import EasyCacheConfig
from ..install import apply_easycache, remove_easycache
from ..outputs import build_run_record, hunyuan_video_path, prepare_save_dir, write_result
from . import load_demo_pipeline
from .gif import side_by_side_gif

TIMING_REPEATS = 3  # each video is generated this many times and the fastest kept: CPU timings are noisy
METRICS_TOOL = Path(__file__).resolve().parents[2] / "tools" / "video_metrics.py"


def generate(pipe, cache_config: EasyCacheConfig, call: dict, repeats: int = TIMING_REPEATS) -> dict:
    """Sample ``call`` with EasyCache at ``cache_config``; the frames, the cache and the fastest times."""
    cache = apply_easycache(pipe, cache_config)
    try:
        best = None
        for _ in range(repeats):  # same seed each time: the same video, timed again
            kwargs = {**call, "generator": torch.Generator().manual_seed(call["generator"])}
            started = time.perf_counter()
            frames = pipe(**kwargs).frames[0]
            seconds = time.perf_counter() - started
            summary = cache.summary()
            if best is None or seconds < best["end_to_end_seconds"]:
                best = {"frames": frames, "end_to_end_seconds": seconds, "transformer_seconds": summary["seconds"],
                        "summary": summary, "records": list(cache.records)}
        best["cache"] = cache
        cache.records = best["records"]  # the JSON gets the records of the run whose times are kept
        return best
    finally:
        remove_easycache(pipe)


def load_metrics_tool():
    """``tools/video_metrics.py`` (one implementation of the metrics), or None outside a checkout."""
    if not METRICS_TOOL.exists():
        return None
    spec = importlib.util.spec_from_file_location("video_metrics", METRICS_TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_demo(args: argparse.Namespace, cache_config: EasyCacheConfig, easycache_enabled: bool) -> list[Path]:
    """Baseline and EasyCache videos of ``args.prompt``, their JSONs, the metrics and a GIF."""
    save_path = Path(args.save_path if args.save_path_suffix == "" else f"{args.save_path}_{args.save_path_suffix}")
    prepare_save_dir(save_path)
    seed = args.seed if args.seed is not None else random.randint(0, 1_000_000)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    pipe = load_demo_pipeline(device)
    load_seconds = time.perf_counter() - started
    if args.flow_shift != pipe.config.shift:
        logger.warning(f"--flow-shift {args.flow_shift}: the demo was trained with shift {pipe.config.shift}")
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, shift=args.flow_shift)
    steps = args.infer_steps
    call = {"prompt": args.prompt, "num_inference_steps": steps, "generator": seed,
            # --cfg-scale 1 (HunyuanVideo's default) means the demo's own guidance scale.
            "guidance_scale": None if args.cfg_scale == 1.0 else args.cfg_scale,
            "negative_prompt": args.neg_prompt or ""}
    logger.info(f"demo model ({pipe.config.frames} frames of {pipe.config.size}x{pipe.config.size}, "
                f"{steps} steps, seed {seed}) on {device}: {args.prompt!r}")
    pipe(**{**call, "num_inference_steps": 2, "generator": torch.Generator().manual_seed(seed)})  # warm-up

    variants = {"baseline": dataclasses.replace(cache_config, thresh=0.0, num_steps=steps)}
    if easycache_enabled:
        variants["easycache"] = dataclasses.replace(cache_config, num_steps=steps)
    stem = hunyuan_video_path(save_path, seed, args.prompt).stem
    results, videos = {}, []
    for name, config in variants.items():
        result = results[name] = generate(pipe, config, call)
        path = save_path / f"{stem}_{name}.mp4"
        record = build_run_record(
            backend="demo", args=vars(args), cache=result["cache"], easycache_enabled=name == "easycache",
            seconds={"end_to_end_seconds": result["end_to_end_seconds"], "load_seconds": load_seconds},
            video=path, seed=seed, prompt=args.prompt,
        )
        write_result(path, result["frames"], record, fps=8)
        s = result["summary"]
        logger.info(f"{name}: {s['computed']}/{s['calls']} transformer calls computed, transformer "
                    f"{s['seconds']:.3f}s, end to end {result['end_to_end_seconds']:.3f}s")
        videos.append(path)
    if easycache_enabled:
        write_comparison(results, videos, save_path / f"{stem}_metrics.json", save_path / f"{stem}_side_by_side.gif")
    return videos


def write_comparison(results: dict, videos: list[Path], metrics_path: Path, gif_path: Path) -> dict:
    """PSNR / SSIM between the two videos' frames, the computed fraction and the speedups, as JSON and a
    log line."""
    base, cached = results["baseline"], results["easycache"]
    s = cached["summary"]
    comparison = {
        "baseline": str(videos[0]),
        "easycache": str(videos[1]),
        "thresh": s["thresh"],
        "computed_fraction": s["computed"] / s["calls"],
        "calls_speedup": s["speedup"],
        "transformer_speedup": base["transformer_seconds"] / cached["transformer_seconds"],
        "end_to_end_speedup": base["end_to_end_seconds"] / cached["end_to_end_seconds"],
        "timing": f"fastest of {TIMING_REPEATS} runs each",
    }
    tool = load_metrics_tool()
    if tool is None:
        logger.warning(f"{METRICS_TOOL} not found (not a checkout): PSNR/SSIM not computed")
    else:
        # on the frames as generated (8-bit), not the mp4s: the codec's loss is not the cache's
        frames = [(np.clip(np.asarray(r["frames"]), 0, 1) * 255).round().astype(np.uint8) for r in (base, cached)]
        metrics = tool.compare_videos(frames[0], frames[1], torch.device("cpu"))
        comparison.update(psnr=tool.metrics_to_json(metrics)["psnr"], ssim=metrics.ssim)
    metrics_path.write_text(json.dumps(comparison, indent=2))
    psnr = comparison.get("psnr")
    psnr_text = "n/a" if psnr is None else psnr if isinstance(psnr, str) else f"{psnr:.2f}"
    side_by_side_gif(base["frames"], cached["frames"], gif_path, labels=(
        "baseline", f"EasyCache {comparison['transformer_speedup']:.1f}x {psnr_text} dB"))
    logger.info(
        f"EasyCache vs baseline: PSNR {psnr_text} dB, "
        f"SSIM {comparison.get('ssim', float('nan')):.4f}, {s['computed']}/{s['calls']} calls computed, "
        f"transformer {comparison['transformer_speedup']:.2f}x, end to end {comparison['end_to_end_speedup']:.2f}x "
        f"faster; {metrics_path}, {gif_path}"
    )
    return comparison
