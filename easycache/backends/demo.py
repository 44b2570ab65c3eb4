"""``--model demo``: the embedded demo model (``easycache/demo``), the whole job on a CPU in seconds.

Run like the diffusers backend (HunyuanVideo's flags), but each prompt is sampled twice from the
same seed through the same code path: the baseline (threshold 0, bit-identical to no cache) and
EasyCache; both videos, their run JSONs, the metrics between them and a side-by-side GIF are
written. CPU timings are noisy, so each video is timed three times and the fastest kept. The model
makes the size and length it was trained on (the defaults here); others are refused in one line.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from loguru import logger

from ..errors import UsageError
from ..runner import Video
from .diffusers import DiffusersBackend


class DemoBackend(DiffusersBackend):
    name = "demo"
    fps = 8
    timing_repeats = 3
    compare_with_baseline = True

    def parser(self) -> argparse.ArgumentParser:
        from ..demo.weights import load_demo_config

        config = load_demo_config()
        parser = super().parser()
        parser.prog = "easycache_sample_video.py --backend demo"
        parser.set_defaults(model="demo", video_size=[config.size, config.size], video_length=config.frames)
        return parser

    def parse(self, argv: list[str], need_prompt: bool):
        args, settings = super().parse(argv, need_prompt)
        from ..demo.weights import load_demo_config

        config = load_demo_config()
        trained = ([config.size, config.size], config.frames)
        if (list(args.video_size), args.video_length) != trained:
            raise UsageError(f"--video-size {' '.join(map(str, args.video_size))} --video-length {args.video_length}: "
                             f"the demo model makes {config.frames} frames of {config.size}x{config.size}, the size "
                             f"it was trained on; leave both flags out (or pass --video-size {config.size} "
                             f"{config.size} --video-length {config.frames})")
        return args, settings

    def load(self, args: argparse.Namespace) -> Any:
        from ..demo import load_demo_pipeline

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        pipe = load_demo_pipeline(device)
        if args.flow_shift != pipe.config.shift:
            logger.warning(f"--flow-shift {args.flow_shift}: the demo was trained with shift {pipe.config.shift}")
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, shift=args.flow_shift)
        logger.info(f"demo model ({pipe.config.frames} frames of {pipe.config.size}x{pipe.config.size}, "
                    f"{args.infer_steps} steps) on {device}")
        pipe("warm-up", num_inference_steps=2, generator=torch.Generator().manual_seed(0))  # not timed
        return pipe

    def sample(self, pipe: Any, args: argparse.Namespace, prompt: str, seed: int, num_videos: int) -> list[Video]:
        frames = pipe(
            prompt,
            num_inference_steps=args.infer_steps,
            # --cfg-scale 1 (HunyuanVideo's default) means the demo's own guidance scale.
            guidance_scale=None if args.cfg_scale == 1.0 else args.cfg_scale,
            negative_prompt=args.neg_prompt or "",
            num_videos_per_prompt=num_videos,
            generator=torch.Generator().manual_seed(seed),
        ).frames
        return [Video(video, seed) for video in frames]


BACKEND = DemoBackend
