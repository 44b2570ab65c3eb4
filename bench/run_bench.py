#!/usr/bin/env python3
"""EasyCache against every peer, side by side: same model, same prompts and seeds, one run.

    python bench/run_bench.py --model demo --out bench/results

For each method and setting: transformer calls computed / total, wall-clock speedup over the
baseline measured in this run, PSNR (of the whole video's MSE, and the mean of per-frame PSNRs),
SSIM (and LPIPS where it loads) against the baseline's frames, peak memory. Writes results.md
(table), results.json and speed_psnr.png.

"Computed" counts calls in which the transformer's last block ran (its output projection):
EasyCache skips whole calls, block caches (FirstBlockCache, DBCache, MagCache, TaylorSeer) run the
call but skip its later blocks; PyramidAttentionBroadcast skips attention inside blocks, so its
calls all count as computed and only its time shows the saving. Before anything is timed, one
generation warms the process up (allocator, kernels), so the baseline is not charged for it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from easycache.metrics import LpipsUnavailable, compare_videos, load_lpips
from methods import Method, all_methods  # bench/: Python puts a script's own folder on the import path
from report import write_plot, write_table

DEFAULT_PROMPTS = [
    "a red circle moving left",
    "a blue square moving up",
    "a green triangle moving right",
    "a yellow circle moving down",
]


def load_model(name: str, dtype: str):
    """The pipeline to benchmark: the shipped demo model, or a diffusers pipeline folder / hub id."""
    if name == "demo":
        from easycache.demo import load_demo_pipeline

        return load_demo_pipeline()
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(name, torch_dtype=getattr(torch, dtype))
    return pipe.to("cuda" if torch.cuda.is_available() else "cpu")


class CallCounter:
    """Counts transformer calls, and those in which its last block actually ran."""

    def __init__(self, transformer: torch.nn.Module):
        self.calls = self.computed = 0
        linears = [m for m in _last_block(transformer).modules() if isinstance(m, torch.nn.Linear)]
        probe = linears[-1]  # the block's output projection: runs whenever the block itself runs
        self._hooks = [
            transformer.register_forward_pre_hook(lambda *_: self._count("calls")),
            probe.register_forward_pre_hook(lambda *_: self._count("computed")),
        ]

    def _count(self, what):
        setattr(self, what, getattr(self, what) + 1)

    def take(self) -> tuple[int, int]:
        counts = (self.calls, self.computed)
        self.calls = self.computed = 0
        return counts


def _last_block(transformer: torch.nn.Module) -> torch.nn.Module:
    """The block that runs last: single-stream blocks follow double-stream ones (HunyuanVideo, Flux)."""
    for name in ("single_transformer_blocks", "transformer_blocks", "blocks", "layers"):
        blocks = getattr(transformer, name, None)
        if blocks is not None and len(blocks):
            return blocks[-1]
    raise TypeError(f"{type(transformer).__name__} has no transformer blocks to watch")


def call_kwargs(pipe, prompt: str, seed: int, args) -> dict:
    wanted = {
        "prompt": prompt,
        "num_inference_steps": args.steps,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "np",
        "height": args.height,
        "width": args.width,
        "num_frames": args.frames,
    }
    accepted = inspect.signature(type(pipe).__call__).parameters
    return {k: v for k, v in wanted.items() if v is not None and k in accepted}


def frames_of(output) -> np.ndarray:
    """The first video of a pipeline output as (T, H, W, 3) uint8."""
    video = output.frames[0]
    video = video.detach().float().cpu().numpy() if torch.is_tensor(video) else np.asarray(video)
    if video.shape[-1] not in (1, 3) and video.shape[1] in (1, 3):
        video = video.transpose(0, 2, 3, 1)
    return (np.clip(video, 0, 1) * 255).round().astype(np.uint8)


def reset_peak_memory():
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:  # Linux: reset the process's peak resident size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_bytes() -> int | None:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_method(method: Method, pipe, counter: CallCounter, jobs, args) -> dict:
    """Generate every job with ``method`` installed; frames, counts, seconds, memory."""
    generate = lambda prompt, seed: frames_of(pipe(**call_kwargs(pipe, prompt, seed, args)))  # noqa: E731
    if method.calibrate is not None:
        method.calibrate(pipe, lambda: generate(*jobs[0]))
    handle = method.install(pipe)
    try:
        reset_peak_memory()
        counter.take()
        videos, seconds = [], 0.0
        for prompt, seed in jobs:
            best = math.inf
            for _ in range(args.repeats):
                started = time.perf_counter()
                frames = generate(prompt, seed)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - started)
            videos.append(frames)
            seconds += best
        calls, computed = counter.take()
        memory = peak_memory_bytes()
    finally:
        method.remove(pipe, handle)
    return {"videos": videos, "seconds": seconds, "calls": calls // args.repeats,
            "computed": computed // args.repeats, "peak_memory_bytes": memory}


def quality(base_videos, videos, lpips_fn) -> dict:
    """Mean over videos of each metric against the baseline (easycache.metrics defines them).

    psnr is the whole-video-MSE PSNR (EasyCache's protocol), psnr_frame_mean the mean of per-frame
    PSNRs (cache-dit / Sparse-VideoGen); a video's inf (identical frames) is capped at 100 dB.
    """
    scores = [compare_videos(a, b, torch.device("cpu"), lpips_fn=lpips_fn) for a, b in zip(base_videos, videos)]
    mean = lambda values: float(np.mean(values)) if values and None not in values else None  # noqa: E731
    return {
        "psnr": mean([min(s.psnr, 100.0) for s in scores]),
        "psnr_frame_mean": mean([min(s.psnr_frame_mean, 100.0) for s in scores]),
        "ssim": mean([s.ssim for s in scores]),
        "lpips": mean([s.lpips for s in scores]) if lpips_fn is not None else None,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo", help="demo, or a diffusers pipeline folder / hub id")
    parser.add_argument("--prompt-file", help="one prompt per line (default: four demo prompts)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.025, 0.05, 0.1],
                        help="EasyCache thresholds")
    parser.add_argument("--warmup-steps", type=int, default=5, help="EasyCache's warmup steps")
    parser.add_argument("--methods", nargs="+", help="only methods whose name contains one of these")
    parser.add_argument("--repeats", type=int, default=1, help="time each generation this many times, keep the fastest")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("--dtype", default="bfloat16", help="dtype for a diffusers model")
    parser.add_argument("--out", default="bench/results")
    return parser.parse_args(argv)


@torch.no_grad()
def main(argv=None) -> int:
    args = parse_args(argv)
    prompts = DEFAULT_PROMPTS
    if args.prompt_file:
        from easycache.batch import read_prompts

        prompts = read_prompts(args.prompt_file)
    jobs = [(p, s) for p in prompts for s in args.seeds]
    pipe = load_model(args.model, args.dtype)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    counter = CallCounter(pipe.transformer)
    lpips_fn, lpips_status = None, "skipped (--no-lpips)"
    if not args.no_lpips:
        try:
            lpips_fn, lpips_status = load_lpips("alex", torch.device("cpu")), "alex"
        except LpipsUnavailable as error:
            lpips_status = f"unavailable: {error}"

    methods = all_methods(args.steps, tuple(args.thresholds), warmup_steps=args.warmup_steps)
    if args.methods:
        methods = [m for m in methods if m.name == "no cache" or any(k.lower() in m.name.lower() for k in args.methods)]
    frames_of(pipe(**call_kwargs(pipe, *jobs[0], args)))  # warm-up, untimed
    rows, base = [], None
    for method in methods:
        row = {"method": method.name, "setting": method.setting}
        if method.unavailable:
            row["unavailable"] = method.unavailable
            logger.warning(f"{method.label}: not run: {method.unavailable}")
            rows.append(row)
            continue
        logger.info(f"{method.label}: {len(jobs)} videos")
        try:
            result = run_method(method, pipe, counter, jobs, args)
        except Exception as error:  # a peer that breaks on this model is reported, not fatal
            row["unavailable"] = f"failed on this model: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            logger.warning(f"{method.label}: {row['unavailable']}")
            rows.append(row)
            continue
        if base is None:
            base = result
        row.update(
            calls=result["calls"], computed=result["computed"], seconds=result["seconds"],
            speedup=base["seconds"] / result["seconds"], peak_memory_bytes=result["peak_memory_bytes"],
            **quality(base["videos"], result["videos"], lpips_fn),
        )
        rows.append(row)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    meta = {"model": args.model, "prompts": prompts, "seeds": args.seeds, "steps": args.steps,
            "repeats": args.repeats, "device": device, "lpips": lpips_status, "torch": torch.__version__}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = write_table(rows, meta, out / "results.md")
    write_plot(rows, meta, out / "speed_psnr.png")
    logger.info(f"wrote {out / 'results.md'}, results.json, speed_psnr.png")
    sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
