"""How close an accelerated video is to its baseline: PSNR (two forms), SSIM and LPIPS.

Frames are read as RGB in [0, 1]; both videos must have the same number of frames.

  psnr             PSNR of the whole video's MSE: one MSE over every pixel of every frame,
                   PSNR = 10 * log10(1 / MSE). EasyCache's own evaluation script; the primary number.
  psnr_frame_mean  mean over frames of the per-frame PSNR, 10 * log10(1 / MSE_frame) (the protocol
                   of cache-dit and Sparse-VideoGen). Never lower than `psnr` (Jensen: -log is
                   convex), so the two must not be compared across papers.
  ssim             torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 1) per frame,
                   averaged over frames.
  lpips            LPIPS distance (AlexNet or VGG) per frame with inputs scaled to [-1, 1], averaged
                   over frames. Optional: needs the `lpips` package (or torchvision for torchmetrics'
                   copy) and weights downloaded on first use; imported only by `load_lpips`.

Identical frames have an MSE of 0 and a PSNR of inf. Identical videos give `psnr` = inf, and
`psnr_frame_mean` is the plain mean of the per-frame values, so it is inf as soon as one frame is
identical: that is what the definition gives, and it keeps `psnr_frame_mean >= psnr`. (cache-dit's
metrics tool instead leaves inf frames out of its mean, which reports only the changed frames;
`psnr_per_frame` holds every value for anyone who wants that.) JSON has no infinity:
`metrics_to_json` writes it as the string "inf".

`compare_videos` takes video files (mp4, gif, anything imageio reads) or uint8 (T, H, W, 3)
arrays, and streams frames in chunks so memory stays bounded for long high-resolution videos.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger
from torchmetrics.functional.image import structural_similarity_index_measure

__all__ = [
    "LPIPS_HINT", "LpipsFn", "LpipsUnavailable", "MetricsError", "VIDEO_SUFFIXES", "VideoMetrics", "average",
    "compare_videos", "find_pairs", "frame_source", "iter_frames", "load_lpips", "mean_metrics_to_json",
    "metrics_to_json", "psnr_from_mse", "short_reason",
]

VIDEO_SUFFIXES = (".mp4", ".gif", ".mkv", ".avi", ".mov", ".webm")
LPIPS_HINT = "install `lpips` with torchvision: pip install lpips"
MIN_SIDE = 11  # SSIM's Gaussian window needs frames at least this large
SSIM_BATCH = 2  # frames per SSIM call: SSIM holds ~10 float maps per frame, so keep batches small

LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MetricsError(Exception):
    """A problem with the input that the user can fix; the message is one line saying how."""


class LpipsUnavailable(Exception):
    """LPIPS could not be loaded; the message says why."""


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of an MSE of values in [0, 1]; inf for an MSE of 0."""
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def average(values: list[float | None]) -> float | None:
    """Arithmetic mean; None if there are no values or any is None; inf if any is inf."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


@dataclass
class VideoMetrics:
    """Metrics of one (original, generated) video pair; definitions in the module docstring."""

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

    @property
    def psnr_frame_mean(self) -> float:
        """Mean of the per-frame PSNRs (cache-dit / Sparse-VideoGen); inf if any frame is identical."""
        return average(self.psnr_per_frame)


# ---------------------------------------------------------------- reading


def short_reason(exc: BaseException) -> str:
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
                    f"cannot read video {path}: {short_reason(exc)}; check that it is a valid mp4 or gif"
                ) from exc
            yield _to_rgb(np.asarray(frame), path)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def frame_source(video: Path | str | np.ndarray) -> Iterator[np.ndarray]:
    """The frames of a video file, or of an in-memory (T, H, W, 3) uint8 array."""
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

    `net` is "alex" or "vgg". Inputs of f are Nx3xHxW tensors in [-1, 1]. Raises LpipsUnavailable
    with a short reason when neither loads (no torchvision, weights not downloadable, ...).
    """
    if importlib.util.find_spec("torchvision") is None:
        raise LpipsUnavailable("torchvision is not installed")
    reasons = []
    try:
        import lpips

        model = lpips.LPIPS(net=net, verbose=False).to(device).eval().requires_grad_(False)
        return lambda x, y: model(x, y, normalize=False).flatten()
    except Exception as exc:  # import error, broken torchvision, weights not downloadable
        reasons.append(f"lpips: {short_reason(exc)}")
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=False).to(device)

        def per_frame(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.stack([metric(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])

        return per_frame
    except Exception as exc:
        reasons.append(f"torchmetrics: {short_reason(exc)}")
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


def _count_rest(frames: Iterator[np.ndarray]) -> int:
    return sum(1 for _ in frames)


@torch.inference_mode()
def compare_videos(
    original: Path | str | np.ndarray,
    generated: Path | str | np.ndarray,
    device: torch.device,
    resize: bool = False,
    lpips_fn: LpipsFn | None = None,
    chunk_size: int = 8,
) -> VideoMetrics:
    """PSNR (both forms), SSIM and, given `lpips_fn`, LPIPS of `generated` against `original`.

    Either may be a video file or a uint8 (T, H, W, 3) array. `resize` lets generated frames of
    another size be resized to the original's instead of raising MetricsError. `chunk_size` frames
    are decoded and compared at a time: larger is faster, smaller needs less memory.
    """
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
                        raise MetricsError(f"video has no frames: {_name(path)}; regenerate it")
                size, gen_size = a[0].shape[:2], b[0].shape[:2]
                if size != gen_size and not resize:
                    raise MetricsError(
                        f"frame sizes differ: original {_size_text(*size)}, generated "
                        f"{_size_text(*gen_size)}; pass --resize to resize the generated frames "
                        "to the original's size"
                    )
                if min(size) < MIN_SIDE:
                    raise MetricsError(
                        f"frames of {_name(original)} are {_size_text(*size)}; SSIM needs at least "
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
                    raise MetricsError(f"frame size changes within {_name(path)}; frames must all have one size")

            x, y = _to_tensor(a, device), _to_tensor(b, device)
            if y.shape[-2:] != x.shape[-2:]:
                y = _resize(y, x.shape[-2:])
            sse = (y - x).pow_(2).flatten(1).sum(dim=1, dtype=torch.float64)
            per_frame_elements = x[0].numel()
            sse_total += float(sse.sum())
            elements += per_frame_elements * len(a)
            psnrs += [psnr_from_mse(v / per_frame_elements) for v in sse.tolist()]
            for i in range(0, len(a), SSIM_BATCH):
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
        psnr=psnr_from_mse(sse_total / elements),
        ssim=sum(ssims) / len(ssims),
        lpips=sum(lpipss) / len(lpipss) if lpips_fn is not None else None,
        psnr_per_frame=psnrs,
        ssim_per_frame=ssims,
        lpips_per_frame=lpipss if lpips_fn is not None else None,
        resized_from=tuple(gen_size) if gen_size != size else None,
    )


def _name(video: Path | str | np.ndarray) -> str:
    """How an input is named in error messages: its path, or its shape for an array."""
    return f"array of shape {video.shape}" if isinstance(video, np.ndarray) else str(video)


# ---------------------------------------------------------------- pairing and JSON


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


def _json_number(value: float | None) -> float | str | None:
    """JSON has no infinity: write it as the string "inf"."""
    return "inf" if value is not None and math.isinf(value) else value


def metrics_to_json(m: VideoMetrics) -> dict:
    """Every metric of one pair, its per-frame values and frame size, as JSON-ready values."""
    return {
        "frames": m.frames,
        "height": m.height,
        "width": m.width,
        "resized_from": list(m.resized_from) if m.resized_from else None,
        "psnr": _json_number(m.psnr),
        "psnr_frame_mean": _json_number(m.psnr_frame_mean),
        "ssim": m.ssim,
        "lpips": m.lpips,
        "per_frame": {
            "psnr": [_json_number(v) for v in m.psnr_per_frame],
            "ssim": m.ssim_per_frame,
            "lpips": m.lpips_per_frame,
        },
    }


def mean_metrics_to_json(ms: list[VideoMetrics]) -> dict:
    """Each metric averaged over video pairs (inf if any pair's is inf), as JSON-ready values."""
    return {
        "psnr": _json_number(average([m.psnr for m in ms])),
        "psnr_frame_mean": _json_number(average([m.psnr_frame_mean for m in ms])),
        "ssim": average([m.ssim for m in ms]),
        "lpips": average([m.lpips for m in ms]),
    }
