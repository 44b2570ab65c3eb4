"""The same job through diffusers, for users without Tencent's repo: HunyuanVideo's flags, a
diffusers pipeline (hub id or local folder), EasyCache on it, the same outputs.

HunyuanVideo's flags map onto the pipeline call: ``--cfg-scale`` is true classifier-free guidance
(two transformer calls per step, with ``--neg-prompt``), ``--embedded-cfg-scale`` the distilled
guidance the model is conditioned on, ``--flow-shift`` the scheduler's shift. ``--flow-reverse`` is
accepted and changes nothing: diffusers' flow-matching scheduler already runs from noise to data.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..runner import Backend, Settings, Video, prompt_required
from ..versions import require_diffusers_class
from ._checks import check_device, check_frame_grid, check_sampling_flags

DEFAULT_MODEL = "hunyuanvideo-community/HunyuanVideo"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_parser() -> argparse.ArgumentParser:
    """HunyuanVideo's sampling flags, same names and defaults, for a diffusers pipeline."""
    parser = argparse.ArgumentParser(prog="easycache_sample_video.py --backend diffusers", add_help=False,
                                     allow_abbrev=False)
    group = parser.add_argument_group("sampling (HunyuanVideo's flags, run through diffusers)")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="diffusers pipeline: hub id or local folder; 'demo': the embedded demo model (CPU, seconds)")
    group.add_argument("--prompt", help="text prompt")
    group.add_argument("--neg-prompt", default=None, help="negative prompt (used when --cfg-scale > 1)")
    group.add_argument("--video-size", type=int, nargs="+", default=[720, 1280], help="height width")
    group.add_argument("--video-length", type=int, default=129, help="frames (4k+1)")
    group.add_argument("--infer-steps", type=int, default=50)
    group.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, recorded)")
    group.add_argument("--cfg-scale", type=float, default=1.0, help="true classifier-free guidance scale")
    group.add_argument("--embedded-cfg-scale", type=float, default=6.0, help="distilled guidance scale")
    group.add_argument("--flow-shift", type=float, default=7.0)
    group.add_argument("--flow-reverse", action="store_true", help="accepted for HunyuanVideo compatibility")
    group.add_argument("--num-videos", type=int, default=1)
    group.add_argument("--batch-size", type=int, default=1, help="accepted; prompts come one per run")
    group.add_argument("--save-path", default="./results")
    group.add_argument("--save-path-suffix", default="")
    group.add_argument("--use-cpu-offload", action="store_true", help="diffusers' model CPU offload")
    group.add_argument("--precision", choices=sorted(DTYPES), default="bf16", help="pipeline dtype")
    group.add_argument("--vae-precision", choices=sorted(DTYPES), default="fp16")
    group.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    group.add_argument("--ulysses-degree", type=int, default=1,
                       help="diffusers context parallelism (torchrun, one video over several GPUs)")
    group.add_argument("--ring-degree", type=int, default=1, help="diffusers context parallelism, ring attention")
    return parser


def enable_context_parallelism(pipe, args: argparse.Namespace) -> None:
    """Split one video over the torchrun ranks with diffusers' own context parallelism (Ulysses /
    ring attention), for transformers that diffusers gives a context-parallel plan. EasyCache stays
    the outermost layer and every rank takes the same decision (all-reduced)."""
    from diffusers import ContextParallelConfig  # parse() refused a diffusers without it

    if getattr(type(pipe.transformer), "_cp_plan", None) is None:
        raise UsageError(f"diffusers has no context parallelism for {type(pipe.transformer).__name__}; "
                         "run one GPU per video (--prompt-file), or Tencent's code with xDiT for HunyuanVideo")
    world = torch.distributed.get_world_size()
    if world != args.ulysses_degree * args.ring_degree:
        raise UsageError(f"torchrun started {world} processes but --ulysses-degree x --ring-degree is "
                         f"{args.ulysses_degree * args.ring_degree}; make them equal")
    pipe.transformer.enable_parallelism(
        config=ContextParallelConfig(ulysses_degree=args.ulysses_degree, ring_degree=args.ring_degree))


def parse(argv: list[str], need_prompt: bool = True, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The flags, each checked before anything loads."""
    parser = parser or build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise UsageError(f"{' '.join(unknown)}: not a flag of {parser.prog.split(' ', 1)[-1]} (see --help)")
    prompt_required(args.prompt, need_prompt)
    if len(args.video_size) == 1:
        args.video_size = args.video_size * 2
    check_sampling_flags(args)
    check_device(args.device)
    if args.ulysses_degree * args.ring_degree > 1:
        require_diffusers_class("ContextParallelConfig", "--ulysses-degree / --ring-degree (diffusers' context "
                                "parallelism; or Tencent's code with xDiT)")
    looks_like_a_path = args.model.startswith((".", os.sep, "~"))  # a hub id is "org/name"
    if looks_like_a_path and not Path(args.model).expanduser().exists():
        raise UsageError(f"--model {args.model}: no such folder; pass a diffusers pipeline folder or a hub id")
    return args


def check_grid(pipe, args: argparse.Namespace) -> None:
    """Refuse, before sampling, a length or size this pipeline would silently round (its VAE's
    compression times its transformer's patch): diffusers gives 1 frame for --video-length 4."""
    temporal = getattr(pipe, "vae_scale_factor_temporal", 1) or 1
    spatial = getattr(pipe, "vae_scale_factor_spatial", None) or getattr(pipe, "vae_scale_factor", 1) or 1
    patch = getattr(getattr(getattr(pipe, "transformer", None), "config", None), "patch_size", 1) or 1
    patch = patch[-1] if isinstance(patch, (tuple, list)) else patch
    check_frame_grid(args, int(temporal), int(spatial) * int(patch), type(pipe).__name__)


def load_pipeline(model: str, args: argparse.Namespace):
    """A diffusers pipeline from a hub id or a folder, in the requested dtypes, on the device."""
    import diffusers
    from diffusers import DiffusionPipeline

    try:
        class_name = DiffusionPipeline.load_config(model).get("_class_name")  # model_index.json alone
        if class_name and not hasattr(diffusers, class_name):  # e.g. HunyuanVideoPipeline on diffusers 0.31
            require_diffusers_class(class_name, f"--model {model} ({class_name})")
        pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=DTYPES[args.precision])
    except (OSError, ValueError, EnvironmentError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"cannot load the diffusers pipeline {model!r} ({first_line}); pass --model with a local "
            "folder or a hub id you can download"
        ) from error
    if getattr(pipe, "vae", None) is not None:
        pipe.vae.to(DTYPES[args.vae_precision])
        if hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling()
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is not None and "shift" in scheduler.config:
        pipe.scheduler = type(scheduler).from_config(scheduler.config, shift=args.flow_shift)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.use_cpu_offload and device != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def check_prompt_cleaning(pipeline_class: type) -> None:
    """diffusers 0.33 to 0.36 clean every Wan prompt with ftfy, yet import it only when installed (a
    NameError mid-run without it): refuse that before sampling, in one line."""
    clean = getattr(sys.modules.get(pipeline_class.__module__), "basic_clean", None)
    if clean is None:
        return
    try:
        clean("a prompt")
    except NameError as error:
        import diffusers

        raise UsageError(f"{pipeline_class.__name__} of diffusers {diffusers.__version__} cleans every prompt with "
                         f"ftfy, which is not installed ({error}): pip install ftfy") from None


def pipeline_kwargs(pipe, args: argparse.Namespace, seed: int, prompt: str, num_videos: int) -> dict:
    """HunyuanVideo's flags as the pipeline's own arguments (those its ``__call__`` takes)."""
    wanted = {
        "prompt": prompt,
        "height": args.video_size[0],
        "width": args.video_size[1],
        "num_frames": args.video_length,
        "num_inference_steps": args.infer_steps,
        "guidance_scale": args.embedded_cfg_scale,
        "num_videos_per_prompt": num_videos,
        "generator": torch.Generator(device="cpu").manual_seed(seed),
        "output_type": "np",
    }
    if args.cfg_scale > 1.0:
        wanted.update(true_cfg_scale=args.cfg_scale, negative_prompt=args.neg_prompt or "")
    accepted = inspect.signature(type(pipe).__call__).parameters
    missing = [k for k in ("true_cfg_scale",) if k in wanted and k not in accepted]
    if missing:
        raise UsageError(f"{type(pipe).__name__} in this diffusers has no {missing[0]}; use --cfg-scale 1")
    return {k: v for k, v in wanted.items() if k in accepted}


class DiffusersBackend(Backend):
    """A diffusers pipeline (hub id or folder) run with HunyuanVideo's flags."""

    name = "diffusers"

    def parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def print_help(self) -> None:
        print()
        self.parser().print_help()

    def parse(self, argv: list[str], need_prompt: bool) -> tuple[argparse.Namespace, Settings]:
        args = parse(argv, need_prompt, self.parser())
        save_dir = args.save_path if args.save_path_suffix == "" else f"{args.save_path}_{args.save_path_suffix}"
        return args, Settings(save_dir=Path(save_dir), prompt=args.prompt, seed=args.seed, steps=args.infer_steps,
                              num_videos=args.num_videos, splits_video=args.ulysses_degree * args.ring_degree > 1)

    def load(self, args: argparse.Namespace) -> Any:
        context_parallel = args.ulysses_degree * args.ring_degree > 1
        if context_parallel and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        pipe = load_pipeline(args.model, args)
        check_grid(pipe, args)
        check_prompt_cleaning(type(pipe))
        if context_parallel:
            enable_context_parallelism(pipe, args)
        return pipe

    def sample(self, pipe: Any, args: argparse.Namespace, prompt: str, seed: int, num_videos: int) -> list[Video]:
        frames = pipe(**pipeline_kwargs(pipe, args, seed, prompt, num_videos)).frames
        return [Video(video, seed) for video in frames]  # one generator makes all videos of a call


BACKEND = DiffusersBackend
