"""How close is an accelerated video to its baseline: PSNR, SSIM and LPIPS.

Metrics (frames read as RGB in [0, 1]; easycache.metrics computes them):
  PSNR   one MSE over the whole video, PSNR = 10 * log10(1 / MSE) (EasyCache's protocol, the
         first PSNR line); identical videos give inf.
  PSNR (mean of per-frame)
         10 * log10(1 / MSE) of each frame, averaged over frames (cache-dit / Sparse-VideoGen
         protocol). Never lower than the whole-video PSNR; inf as soon as one frame is identical.
  SSIM   torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 1) per frame, averaged
         over frames.
  LPIPS  LPIPS distance (AlexNet by default, --lpips_net alex|vgg) per frame with inputs scaled
         to [-1, 1], averaged over frames. Needs the `lpips` package (or torchvision for
         torchmetrics' copy) and pretrained weights, downloaded on first use; when it cannot
         load, PSNR and SSIM still print and the LPIPS line says why.

Both inputs may be video files (mp4, gif, or anything else imageio reads) or two directories,
whose videos are paired by file name. Frames are streamed in chunks, so memory stays bounded
for long high-resolution videos.

Example:
  python tools/video_metrics.py --original_video video1.mp4 --generated_video video2.mp4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from easycache.metrics import (
    LPIPS_HINT,
    LpipsFn,
    LpipsUnavailable,
    MetricsError,
    VideoMetrics,
    average,
    compare_videos,
    find_pairs,
    load_lpips,
    mean_metrics_to_json,
    metrics_to_json,
    short_reason,
)
from easycache.outputs import written_whole

PSNR_LEGEND = (
    "PSNR: whole-video MSE (EasyCache's protocol); "
    "PSNR frame-mean: mean of per-frame PSNR (cache-dit / Sparse-VideoGen protocol)"
)


# ---------------------------------------------------------------- output


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def format_single(m: VideoMetrics, lpips_line: str | None) -> str:
    size = f"Frames: {m.frames} at {m.width}x{m.height}"
    if m.resized_from:
        size += f" (generated resized from {m.resized_from[1]}x{m.resized_from[0]})"
    lines = [
        size,
        f"PSNR: {_fmt(m.psnr, 2)} dB (whole-video MSE, EasyCache's protocol)",
        f"PSNR (mean of per-frame): {_fmt(m.psnr_frame_mean, 2)} dB (cache-dit / Sparse-VideoGen protocol)",
        f"SSIM: {_fmt(m.ssim, 4)}",
        lpips_line or f"LPIPS: {_fmt(m.lpips, 4)}",
    ]
    return "\n".join(lines)


def format_table(results: dict[str, VideoMetrics], lpips_line: str | None) -> str:
    rows = [
        "| video | frames | PSNR (dB) | SSIM | LPIPS | PSNR frame-mean (dB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in results.items():
        rows.append(
            f"| {name} | {m.frames} | {_fmt(m.psnr, 2)} | {_fmt(m.ssim, 4)} | {_fmt(m.lpips, 4)} "
            f"| {_fmt(m.psnr_frame_mean, 2)} |"
        )
    ms = list(results.values())
    rows.append(
        f"| mean ({len(ms)} pairs) | | {_fmt(average([m.psnr for m in ms]), 2)} "
        f"| {_fmt(average([m.ssim for m in ms]), 4)} | {_fmt(average([m.lpips for m in ms]), 4)} "
        f"| {_fmt(average([m.psnr_frame_mean for m in ms]), 2)} |"
    )
    rows.append(PSNR_LEGEND)
    if lpips_line:
        rows.append(lpips_line)
    return "\n".join(rows)


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="video_metrics.py",
        description=(__doc__ or "").split("\nExample:")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--original_video", required=True, help="baseline video, or a directory of them")
    add("--generated_video", required=True, help="accelerated video, or a directory of them")
    add("--lpips_net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default: alex)")
    add("--no_lpips", action="store_true", help="skip LPIPS")
    add("--device", default=None, help="torch device: cuda, cuda:1, cpu, ... (default: cuda if available)")
    add("--resize", action="store_true",
        help="resize generated frames to the original's size when they differ (area when shrinking, else bilinear)")
    add("--json", metavar="PATH",
        help="also write every metric, per-frame values and the frame size here (a new file; never one of the "
        "input videos)")
    add("--overwrite", action="store_true", help="let --json replace a file already at PATH")
    add("--chunk_size", type=int, default=8, help="frames decoded and compared at a time (default: 8)")
    return parser


def resolve_device(name: str | None) -> torch.device:
    """The requested device, checked to be usable."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.zeros(1, device=device)
    except Exception as exc:
        raise MetricsError(
            f"device '{name}' is not usable ({short_reason(exc)}); pick another with --device, e.g. cpu"
        ) from exc
    return device


def _check_input(path: Path, role: str) -> None:
    if not path.exists():
        raise MetricsError(f"{role} video not found: {path}; check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise MetricsError(f"{role} video is an empty file (0 bytes): {path}; regenerate it")


def _lpips_setup(args: argparse.Namespace, device: torch.device) -> tuple[LpipsFn | None, str | None]:
    """LPIPS function (or None) and the line to print instead of a value (or None)."""
    if args.no_lpips:
        return None, "LPIPS: skipped (--no_lpips)"
    try:
        return load_lpips(args.lpips_net, device), None
    except LpipsUnavailable as exc:
        return None, f"LPIPS: unavailable ({LPIPS_HINT}) - {exc}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _check_json_path(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse, before anything is computed, a --json path that would destroy a file: one of the
    input videos (always), a folder, or any existing file unless --overwrite."""
    for video in inputs:
        if _same_file(out, video) or out.resolve() == video.resolve():
            raise MetricsError(f"--json {out} is one of the input videos ({video}); pass another --json path")
    if out.is_dir():
        raise MetricsError(f"--json {out} is a folder; pass a file path, e.g. {out / 'metrics.json'}")
    if out.exists() and not overwrite:
        raise MetricsError(f"--json {out} already exists; pass --overwrite to replace it, or another --json path")


def run(args: argparse.Namespace) -> str:
    """Compute the metrics the arguments ask for; returns the text to print."""
    original, generated = Path(args.original_video), Path(args.generated_video)
    _check_input(original, "original")
    _check_input(generated, "generated")
    if original.is_dir() != generated.is_dir():
        raise MetricsError("give two video files or two directories, not one of each")
    if args.chunk_size < 1:
        raise MetricsError("--chunk_size must be at least 1")
    pairs = find_pairs(original, generated) if original.is_dir() else None
    if args.json:
        inputs = [original, generated] if pairs is None else [d / name for d in (original, generated) for name in pairs]
        _check_json_path(Path(args.json), inputs, args.overwrite)
    device = resolve_device(args.device)

    lpips_fn, lpips_line = _lpips_setup(args, device)
    lpips_status = "ok" if lpips_line is None else lpips_line.removeprefix("LPIPS: ")
    options = dict(device=device, resize=args.resize, lpips_fn=lpips_fn, chunk_size=args.chunk_size)

    if pairs is None:
        m = compare_videos(original, generated, **options)
        text = format_single(m, lpips_line)
        report = {"original": str(original), "generated": str(generated), **metrics_to_json(m)}
    else:
        from tqdm import tqdm

        results = {}
        for name in tqdm(pairs, desc="pairs", unit="pair", leave=False, disable=None):
            try:
                results[name] = compare_videos(original / name, generated / name, **options)
            except MetricsError as exc:
                raise MetricsError(f"{name}: {exc}") from exc
        text = format_table(results, lpips_line)
        report = {
            "original_dir": str(original),
            "generated_dir": str(generated),
            "pairs": [{"name": n, **metrics_to_json(m)} for n, m in results.items()],
            "mean": mean_metrics_to_json(list(results.values())),
        }
    report.update(lpips_net=args.lpips_net, lpips_status=lpips_status)

    if args.json:
        try:
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            with written_whole(out) as tmp:  # whole or not at all: never a half-written report
                tmp.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise MetricsError(f"cannot write --json file {args.json}: {short_reason(exc)}") from exc
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(run(args))
    except MetricsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print("error: out of GPU memory; lower --chunk_size or use --device cpu", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
