"""Checks of HunyuanVideo's sampling flags that every backend taking them runs before loading:
each bad value is one line naming the flag and what to do."""

from __future__ import annotations

import argparse
import math

import torch

from ..errors import UsageError


def check_sampling_flags(args: argparse.Namespace) -> None:
    """Steps, length, size, guidance, shift and counts that no model can take."""
    if args.infer_steps < 1:
        raise UsageError(f"--infer-steps {args.infer_steps}: at least 1 denoising step (HunyuanVideo uses 50)")
    if args.video_length < 1:
        raise UsageError(f"--video-length {args.video_length}: at least 1 frame (HunyuanVideo: 4k+1, e.g. 129)")
    if len(args.video_size) != 2 or min(args.video_size) < 1:
        raise UsageError(f"--video-size {' '.join(map(str, args.video_size))}: give HEIGHT WIDTH, each at least 1")
    for flag, value in (("--flow-shift", args.flow_shift), ("--cfg-scale", args.cfg_scale),
                        ("--embedded-cfg-scale", args.embedded_cfg_scale)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{flag} {value}: must be a finite number")
    if args.flow_shift is not None and args.flow_shift <= 0:
        raise UsageError(f"--flow-shift {args.flow_shift}: must be above 0 (HunyuanVideo: 7 at 720p, 5 at 540p)")
    if args.num_videos < 1:
        raise UsageError(f"--num-videos {args.num_videos}: at least 1")


def check_frame_grid(args: argparse.Namespace, temporal: int, spatial: int, model: str) -> None:
    """Refuse a length or size the model would silently round: ``temporal``k+1 frames, sides a
    multiple of ``spatial`` (the VAE's compression times the transformer's patch)."""
    length, (height, width) = args.video_length, args.video_size
    if temporal > 1 and (length - 1) % temporal:
        shorter = (length - 1) // temporal * temporal + 1
        raise UsageError(f"--video-length {length}: {model} makes {temporal}k+1 frames and would give "
                         f"{shorter}; pass {shorter} or {shorter + temporal}")
    if height % spatial or width % spatial:
        raise UsageError(f"--video-size {height} {width}: {model} takes sides that are multiples of {spatial}; "
                         f"pass e.g. {max(spatial, height // spatial * spatial)} {max(spatial, width // spatial * spatial)}")


def check_device(name: str | None) -> None:
    """``--device``: a torch device this machine has."""
    if name is None:
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: not a torch device; pass cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {name}: no CUDA GPU is visible here; pass --device cpu")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise UsageError(f"--device {name}: not supported here; pass cpu or cuda")
