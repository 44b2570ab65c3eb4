"""``--model demo`` / ``--model demo-wan``: the embedded demo models (``easycache/demo``), the whole
job on a CPU in seconds. ``demo`` is HunyuanVideo's architecture (one transformer call a step);
``demo-wan`` is Wan 2.1's with true classifier-free guidance (two calls a step, ``--cfg-scale``
defaulting to its trained 5.0; ``--cfg-scale 1`` turns guidance off).

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
from ..versions import require_diffusers_class
from .diffusers import DiffusersBackend


class DemoBackend(DiffusersBackend):
    name = "demo"
    fps = 8
    timing_repeats = 3
    compare_with_baseline = True

    def parser(self) -> argparse.ArgumentParser:
        from ..demo.weights import load_demo_config

        config = load_demo_config()  # both demos make the same frames and size
        parser = super().parser()
        parser.prog = "easycache_sample_video.py --backend demo"
        parser.set_defaults(model="demo", video_size=[config.size, config.size], video_length=config.frames,
                            cfg_scale=None, flow_shift=None)  # None: the model's own (filled in by parse)
        return parser

    def parse(self, argv: list[str], need_prompt: bool):
        from ..demo.weights import DEMO_FOLDERS, load_demo_config

        args, settings = super().parse(argv, need_prompt)
        if args.model not in DEMO_FOLDERS:
            raise UsageError(f"--model {args.model}: the demo backend runs the embedded demo models; pass --model "
                             f"{' or --model '.join(DEMO_FOLDERS)}, or --backend diffusers for a diffusers pipeline")
        config = load_demo_config(DEMO_FOLDERS[args.model])
        if config.architecture == "wan":  # HunyuanVideo's demo runs on any diffusers (demo/hunyuan_torch.py)
            require_diffusers_class("WanTransformer3DModel", f"--model {args.model} (Wan 2.1's architecture)")
        if args.cfg_scale is None:  # the trained guidance: 1 (none) for demo, 5 for demo-wan
            args.cfg_scale = config.guidance_scale
        if args.flow_shift is None:  # the trained shift: 7 for demo, 3 for demo-wan
            args.flow_shift = config.shift
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
        pipe = load_demo_pipeline(device, model=args.model)
        if args.flow_shift != pipe.config.shift:
            logger.warning(f"--flow-shift {args.flow_shift}: the demo was trained with shift {pipe.config.shift}")
            key = "flow_shift" if "flow_shift" in pipe.scheduler.config else "shift"
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **{key: args.flow_shift})
        logger.info(f"{args.model} model ({pipe.config.architecture} architecture, {pipe.config.frames} frames of "
                    f"{pipe.config.size}x{pipe.config.size}, {args.infer_steps} steps, guidance {args.cfg_scale:g}) "
                    f"on {device}")
        pipe("warm-up", num_inference_steps=2, generator=torch.Generator().manual_seed(0))  # not timed
        return pipe

    def sample(self, pipe: Any, args: argparse.Namespace, prompt: str, seed: int, num_videos: int) -> list[Video]:
        frames = pipe(
            prompt,
            num_inference_steps=args.infer_steps,
            guidance_scale=args.cfg_scale,  # the model's trained guidance unless --cfg-scale was given
            negative_prompt=args.neg_prompt or "",
            num_videos_per_prompt=num_videos,
            generator=torch.Generator().manual_seed(seed),
        ).frames
        return [Video(video, seed) for video in frames]


BACKEND = DemoBackend
