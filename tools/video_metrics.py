"""How close is an accelerated video to its baseline: PSNR, SSIM and LPIPS.

Metrics, as the EasyCache paper's tool defines them (frames read as RGB in [0, 1]):
  PSNR   one MSE over the whole video, PSNR = 10 * log10(1 / MSE); identical videos give inf.
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
import importlib.util
import json
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger
from torchmetrics.functional.image import structural_similarity_index_measure

VIDEO_SUFFIXES = (".mp4", ".gif", ".mkv", ".avi", ".mov", ".webm")
LPIPS_HINT = "install `lpips` with torchvision: pip install lpips"
MIN_SIDE = 11  # SSIM's Gaussian window needs frames at least this large
SSIM_BATCH = 2  # frames per SSIM call

LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MetricsError(Exception):
    """A user-facing problem with the input: printed as one line, exit code 2."""


class LpipsUnavailable(Exception):
    """LPIPS could not be loaded; the message says why."""


@dataclass
class VideoMetrics:
    """Metrics of one (original, generated) video pair."""

    frames: int
    height: int
    width: int
    psnr: float
    ssim: float
    lpips: float | None
    psnr_per_frame: list[float]
    ssim_per_frame: list[float]
    lpips_per_frame: list[float] | None
    resized_from: tuple[int, int] | None = None


# ---------------------------------------------------------------- reading


def _short_reason(exc: BaseException) -> str:
    """One short line describing an exception (ffmpeg's long stderr dump trimmed)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "does not contain any stream" in text:
        reason = "no video stream in the file (empty or truncated video?)"
    elif "=== stderr ===" in text and len(lines) > 1:
        reason = f"{lines[0]}: {lines[-1]}"
    else:
        reason = lines[0]
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _to_rgb(frame: np.ndarray, path: Path) -> np.ndarray:
    """Return a frame as an HxWx3 uint8 array (gray expanded, alpha dropped)."""
    if frame.dtype != np.uint8:
        raise MetricsError(f"unsupported pixel type {frame.dtype} in {path}; use 8-bit videos")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3:
        raise MetricsError(f"unexpected frame shape {frame.shape} in {path}")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame[:, :, :3]


def _read_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode frames one at a time with imageio (kept separate so tests can swap it)."""
    import imageio.v3 as iio

    yield from iio.imiter(path)


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video as HxWx3 uint8 arrays; decoding errors become MetricsError."""
    frames = _read_frames(path)
    try:
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except Exception as exc:
                raise MetricsError(
                    f"cannot read video {path}: {_short_reason(exc)}; check that it is a valid mp4 or gif"
                ) from exc
            yield _to_rgb(np.asarray(frame), path)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def frame_source(video: Path | np.ndarray) -> Iterator[np.ndarray]:
    """The frames of a video file, or of an in-memory (T, H, W, 3) uint8 array (benchmarks)."""
    if isinstance(video, np.ndarray):
        return (frame for frame in video)
    return iter_frames(Path(video))


def _take(frames: Iterator[np.ndarray], n: int) -> list[np.ndarray]:
    """Up to n next frames."""
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == n:
            break
    return chunk


def _to_tensor(chunk: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack uint8 HxWx3 frames into an Nx3xHxW float tensor in [0, 1] on device."""
    batch = torch.from_numpy(np.stack(chunk)).to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


# ---------------------------------------------------------------- LPIPS


def load_lpips(net: str, device: torch.device) -> LpipsFn:
    """Load LPIPS (`lpips` package, else torchmetrics); returns f(x, y) -> per-frame distances.

    Inputs of f are Nx3xHxW tensors in [-1, 1]. Raises LpipsUnavailable with a short reason.
    """
    if importlib.util.find_spec("torchvision") is None:
        raise LpipsUnavailable("torchvision is not installed")
    reasons = []
    try:
        import lpips

        model = lpips.LPIPS(net=net, verbose=False).to(device).eval().requires_grad_(False)
        return lambda x, y: model(x, y, normalize=False).flatten()
    except Exception as exc:  # import error, broken torchvision, weights not downloadable
        reasons.append(f"lpips: {_short_reason(exc)}")
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=False).to(device)

        def per_frame(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.stack([metric(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])

        return per_frame
    except Exception as exc:
        reasons.append(f"torchmetrics: {_short_reason(exc)}")
    raise LpipsUnavailable("; ".join(reasons))


# ---------------------------------------------------------------- metrics


def _size_text(height: int, width: int) -> str:
    return f"{width}x{height}"


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize Nx3xHxW frames: box average when shrinking both sides, else bilinear."""
    if frames.shape[-2] >= size[0] and frames.shape[-1] >= size[1]:
        return F.interpolate(frames, size=size, mode="area")
    out = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def _psnr(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _count_rest(frames: Iterator[np.ndarray]) -> int:
    return sum(1 for _ in frames)


@torch.inference_mode()
def compare_videos(
    original: Path | np.ndarray,
    generated: Path | np.ndarray,
    device: torch.device,
    resize: bool = False,
    lpips_fn: LpipsFn | None = None,
    chunk_size: int = 8,
) -> VideoMetrics:
    """Stream both videos (files, or uint8 frame arrays) chunk by chunk and compute PSNR, SSIM and
    (optionally) LPIPS."""
    orig_frames, gen_frames = frame_source(original), frame_source(generated)
    sse_total, elements, done = 0.0, 0, 0
    psnrs: list[float] = []
    ssims: list[float] = []
    lpipss: list[float] = []
    size = gen_size = None
    try:
        while True:
            a, b = _take(orig_frames, chunk_size), _take(gen_frames, chunk_size)
            if done == 0:
                for path, chunk in ((original, a), (generated, b)):
                    if not chunk:
                        raise MetricsError(f"video has no frames: {path}; regenerate it")
                size, gen_size = a[0].shape[:2], b[0].shape[:2]
                if size != gen_size and not resize:
                    raise MetricsError(
                        f"frame sizes differ: original {_size_text(*size)}, generated "
                        f"{_size_text(*gen_size)}; pass --resize to resize the generated frames "
                        "to the original's size"
                    )
                if min(size) < MIN_SIDE:
                    raise MetricsError(
                        f"frames of {original} are {_size_text(*size)}; SSIM needs at least "
                        f"{MIN_SIDE}x{MIN_SIDE} pixels"
                    )
            if len(a) != len(b):
                n_orig = done + len(a) + _count_rest(orig_frames)
                n_gen = done + len(b) + _count_rest(gen_frames)
                raise MetricsError(
                    f"frame counts differ: original has {n_orig} frames, generated has {n_gen}; "
                    "compare videos of the same length"
                )
            if not a:
                break
            for path, chunk, expected in ((original, a, size), (generated, b, gen_size)):
                if any(f.shape[:2] != expected for f in chunk):
                    raise MetricsError(f"frame size changes within {path}; frames must all have one size")

            x, y = _to_tensor(a, device), _to_tensor(b, device)
            if y.shape[-2:] != x.shape[-2:]:
                y = _resize(y, x.shape[-2:])
            sse = (y - x).pow_(2).flatten(1).sum(dim=1, dtype=torch.float64)
            per_frame_elements = x[0].numel()
            sse_total += float(sse.sum())
            elements += per_frame_elements * len(a)
            psnrs += [_psnr(v / per_frame_elements) for v in sse.tolist()]
            for i in range(0, len(a), SSIM_BATCH):  # SSIM needs ~10 float maps per frame: keep batches small
                ssims += structural_similarity_index_measure(
                    y[i : i + SSIM_BATCH], x[i : i + SSIM_BATCH], data_range=1.0, reduction="none"
                ).tolist()
            if lpips_fn is not None:
                lpipss += lpips_fn(y * 2 - 1, x * 2 - 1).flatten().float().tolist()
            done += len(a)
    finally:
        orig_frames.close()
        gen_frames.close()

    return VideoMetrics(
        frames=done,
        height=size[0],
        width=size[1],
        psnr=_psnr(sse_total / elements),
        ssim=sum(ssims) / len(ssims),
        lpips=sum(lpipss) / len(lpipss) if lpips_fn is not None else None,
        psnr_per_frame=psnrs,
        ssim_per_frame=ssims,
        lpips_per_frame=lpipss if lpips_fn is not None else None,
        resized_from=tuple(gen_size) if gen_size != size else None,
    )


# ---------------------------------------------------------------- pairing and output


def find_pairs(original_dir: Path, generated_dir: Path) -> list[str]:
    """File names of videos present in both directories (sorted); warns about the rest."""
    def videos(d: Path) -> set[str]:
        return {p.name for p in d.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES}

    orig, gen = videos(original_dir), videos(generated_dir)
    pairs = sorted(orig & gen)
    unmatched = sorted(orig ^ gen)
    if pairs and unmatched:
        shown = ", ".join(unmatched[:5]) + (", ..." if len(unmatched) > 5 else "")
        logger.warning(f"skipping {len(unmatched)} video(s) without a same-named partner: {shown}")
    if not pairs:
        raise MetricsError(
            f"no matching video pairs: no video file name in {original_dir} also appears in "
            f"{generated_dir}; give generated videos the same names as the originals"
        )
    return pairs


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _json_number(value: float | None) -> float | str | None:
    """JSON has no infinity: write it as the string "inf"."""
    return "inf" if value is not None and math.isinf(value) else value


def metrics_to_json(m: VideoMetrics) -> dict:
    return {
        "frames": m.frames,
        "height": m.height,
        "width": m.width,
        "resized_from": list(m.resized_from) if m.resized_from else None,
        "psnr": _json_number(m.psnr),
        "ssim": m.ssim,
        "lpips": m.lpips,
        "per_frame": {
            "psnr": [_json_number(v) for v in m.psnr_per_frame],
            "ssim": m.ssim_per_frame,
            "lpips": m.lpips_per_frame,
        },
    }


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def format_single(m: VideoMetrics, lpips_line: str | None) -> str:
    size = f"Frames: {m.frames} at {_size_text(m.height, m.width)}"
    if m.resized_from:
        size += f" (generated resized from {_size_text(*m.resized_from)})"
    lines = [size, f"PSNR: {_fmt(m.psnr, 2)} dB", f"SSIM: {_fmt(m.ssim, 4)}"]
    lines.append(lpips_line or f"LPIPS: {_fmt(m.lpips, 4)}")
    return "\n".join(lines)


def format_table(results: dict[str, VideoMetrics], lpips_line: str | None) -> str:
    rows = ["| video | frames | PSNR (dB) | SSIM | LPIPS |", "|---|---:|---:|---:|---:|"]
    for name, m in results.items():
        rows.append(f"| {name} | {m.frames} | {_fmt(m.psnr, 2)} | {_fmt(m.ssim, 4)} | {_fmt(m.lpips, 4)} |")
    ms = list(results.values())
    rows.append(
        f"| mean ({len(ms)} pairs) | | {_fmt(_mean([m.psnr for m in ms]), 2)} "
        f"| {_fmt(_mean([m.ssim for m in ms]), 4)} | {_fmt(_mean([m.lpips for m in ms]), 4)} |"
    )
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
    add("--json", metavar="PATH", help="also write every metric, per-frame values and the frame size here")
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
            f"device '{name}' is not usable ({_short_reason(exc)}); pick another with --device, e.g. cpu"
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


def run(args: argparse.Namespace) -> str:
    """Compute the metrics the arguments ask for; returns the text to print."""
    original, generated = Path(args.original_video), Path(args.generated_video)
    _check_input(original, "original")
    _check_input(generated, "generated")
    if original.is_dir() != generated.is_dir():
        raise MetricsError("give two video files or two directories, not one of each")
    if args.chunk_size < 1:
        raise MetricsError("--chunk_size must be at least 1")
    device = resolve_device(args.device)
    pairs = find_pairs(original, generated) if original.is_dir() else None

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
        ms = list(results.values())
        report = {
            "original_dir": str(original),
            "generated_dir": str(generated),
            "pairs": [{"name": n, **metrics_to_json(m)} for n, m in results.items()],
            "mean": {
                "psnr": _json_number(_mean([m.psnr for m in ms])),
                "ssim": _mean([m.ssim for m in ms]),
                "lpips": _mean([m.lpips for m in ms]),
            },
        }
    report.update(lpips_net=args.lpips_net, lpips_status=lpips_status)

    if args.json:
        try:
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise MetricsError(f"cannot write --json file {args.json}: {_short_reason(exc)}") from exc
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
