#!/usr/bin/env python3
"""Does a Kalman estimate of EasyCache's rate ``k`` (NaviCache's change to the rule) help EasyCache?

    OMP_NUM_THREADS=1 .venv/bin/python bench/kalman_check.py --out bench/results --overwrite

For each demo model, on the benchmark's own videos (its default prompts, seeds 0 1, 50 steps): each
EasyCache variant the project offers (the rule; the extrapolated delta) with and without the Kalman
estimate (``Q = R = 0.05``, NaviCache's release), over a fine threshold sweep. No timing: computed
calls and quality are deterministic. The question is the issue's: more PSNR at the same computed
calls? At every point of either curve's front (the points no other point of the same curve beats
with as few computed calls; uncached points left out), the other curve's front is interpolated
linearly in computed calls where it reaches, and the PSNR (whole video) differences, Kalman minus
plain, are reported (mean, median, min, max, how many favour Kalman). Writes ``kalman.json`` and
``kalman.md`` into ``<out>/<model>/``.

The Kalman rate is NaviCache's rule (``bench/navicache.py``), which EasyCache's ``kalman_rate`` knob
reproduces call for call (``tests/test_peers.py``); this measurement is what decided to offer the knob.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import navicache  # noqa: E402
from run_bench import DEFAULT_PROMPTS, frames_of, quality  # noqa: E402

import easycache  # noqa: E402

THRESHOLDS = (0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.07, 0.1)
VARIANTS = {"EasyCache": {}, "EasyCache + extrapolated delta": {"extrapolate": True}}


def generate(pipe, prompt: str, seed: int, steps: int):
    return frames_of(pipe(prompt, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed),
                          output_type="np"))


def run_curve(pipe, jobs, steps, base_videos, extra: dict, kalman: bool, thresholds) -> list[dict]:
    points = []
    for thresh in thresholds:
        config = easycache.EasyCacheConfig(thresh=thresh, warmup_steps=5, **extra)
        videos, computed, calls = [], 0, 0
        for prompt, seed in jobs:
            if kalman:
                handle = navicache.install(pipe, config)
            else:
                handle = easycache.apply_easycache(pipe, config)
            try:
                videos.append(generate(pipe, prompt, seed, steps))
                summary = handle.summary()
            finally:
                (navicache.remove if kalman else easycache.remove_easycache)(pipe)
            computed, calls = computed + summary["computed"], calls + summary["calls"]
        points.append({"thresh": thresh, "computed": computed, "calls": calls,
                       **quality(base_videos, videos, None)})
    return points


def front(points: list[dict]) -> list[dict]:
    """A curve's points that no other beats (fewer or as many computed calls, and more PSNR), by
    computed calls; points that computed every call (the uncached video, 100 dB) left out."""
    points = sorted((p for p in points if p["computed"] < p["calls"]), key=lambda p: (p["computed"], -p["psnr"]))
    kept: list[dict] = []
    for p in points:
        if not kept or p["psnr"] > kept[-1]["psnr"]:
            kept.append(p)
    return kept


def compare(plain: list[dict], kalman: list[dict]) -> dict:
    """Kalman's PSNR minus the plain variant's at the same computed calls, both ways: at each point
    of either curve's front (``front``), the other front interpolated linearly in computed calls
    where it reaches."""

    def at(curve: list[dict], computed: int) -> float | None:
        xs, ys = [p["computed"] for p in curve], [p["psnr"] for p in curve]
        return float(np.interp(computed, xs, ys)) if xs and xs[0] <= computed <= xs[-1] else None

    plain, kalman = front(plain), front(kalman)
    diffs = []
    for p in plain:
        other = at(kalman, p["computed"])
        if other is not None:
            diffs.append({"computed": p["computed"], "at": "plain", "plain": p["psnr"], "kalman": other,
                          "difference": other - p["psnr"]})
    for p in kalman:
        other = at(plain, p["computed"])
        if other is not None:
            diffs.append({"computed": p["computed"], "at": "kalman", "plain": other, "kalman": p["psnr"],
                          "difference": p["psnr"] - other})
    diffs.sort(key=lambda d: d["computed"])
    d = [x["difference"] for x in diffs]
    return {"points": diffs, "mean": float(np.mean(d)) if d else None, "median": float(np.median(d)) if d else None,
            "min": min(d, default=None), "max": max(d, default=None), "better_at": sum(x > 0 for x in d),
            "compared": len(d)}


def write_md(path: Path, model: str, curves: dict, comparisons: dict, meta: dict) -> None:
    lines = [f"Model `{model}`: {len(meta['prompts'])} prompts x {len(meta['seeds'])} seeds, {meta['steps']} steps; "
             f"Kalman: Q = {meta['Q']}, R = {meta['R']} (NaviCache as released). PSNR of the whole video's MSE.",
             "", "| variant | thresh | computed / calls | PSNR | SSIM |", "|---|---|---|---|---|"]
    for name, points in curves.items():
        for p in points:
            lines.append(f"| {name} | {p['thresh']} | {p['computed']} / {p['calls']} | {p['psnr']:.2f} | {p['ssim']:.4f} |")
    lines += ["", "Kalman's PSNR minus the plain variant's at the same computed calls: at every point of either "
              "curve's front (points no other point of the curve beats with as few calls; uncached points left "
              "out), the other front interpolated linearly in computed calls:", "",
              "| variant | points compared | Kalman better at | mean | median | min | max |", "|---|---|---|---|---|---|---|"]
    for name, c in comparisons.items():
        fmt = lambda v: "-" if v is None else f"{v:+.2f} dB"  # noqa: E731
        lines.append(f"| {name} | {c['compared']} | {c['better_at']} | {fmt(c['mean'])} | {fmt(c['median'])} | {fmt(c['min'])} | {fmt(c['max'])} |")
    path.write_text("\n".join(lines) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["demo", "demo-wan"], choices=["demo", "demo-wan"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--out", default="bench-results/kalman", help="<out>/<model>/kalman.{json,md}")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from easycache.demo import load_demo_pipeline

    for model in args.model:
        folder = Path(args.out) / model
        if (folder / "kalman.json").exists() and not args.overwrite:
            print(f"error: {folder / 'kalman.json'} exists; add --overwrite", file=sys.stderr)
            return 2
        started = time.perf_counter()
        pipe = load_demo_pipeline(model=model)
        jobs = [(p, s) for p in DEFAULT_PROMPTS for s in args.seeds]
        with torch.no_grad():
            base = [generate(pipe, p, s, args.steps) for p, s in jobs]
            curves = {}
            for name, extra in VARIANTS.items():
                curves[name] = run_curve(pipe, jobs, args.steps, base, extra, False, args.thresholds)
                curves[f"{name} + Kalman k"] = run_curve(pipe, jobs, args.steps, base, extra, True, args.thresholds)
        comparisons = {name: compare(curves[name], curves[f"{name} + Kalman k"]) for name in VARIANTS}
        meta = {"model": model, "prompts": DEFAULT_PROMPTS, "seeds": args.seeds, "steps": args.steps,
                "Q": navicache.PROCESS_NOISE, "R": navicache.MEASUREMENT_NOISE, "torch": torch.__version__,
                "command": "python bench/kalman_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "seconds": round(time.perf_counter() - started, 1)}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kalman.json").write_text(json.dumps({"meta": meta, "curves": curves, "comparisons": comparisons},
                                                       indent=2))
        write_md(folder / "kalman.md", model, curves, comparisons, meta)
        print((folder / "kalman.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
