"""Tencent's HunyuanVideo (a checkout with ``hyvideo/``): finding it, its flags, its sampler, one run.

Nothing of HunyuanVideo is copied here: its own parser reads its flags, its own sampler loads the
models and samples, and EasyCache is installed on the sampler's pipeline (its transformer instance)
after everything HunyuanVideo wraps around that instance (xDiT's sequence-parallel forward,
accelerate's CPU-offload hooks), so the cache is the outermost layer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

from .batch import Job, data_parallel_rank, jobs_for, run_jobs
from .cache import EasyCacheConfig
from .errors import UsageError
from .install import apply_easycache
from .outputs import build_run_record, hunyuan_video_path, is_writer_rank, log_generation, prepare_save_dir, write_result

CHECKOUT_HINT = (
    "run this inside a HunyuanVideo checkout, or pass --hunyuan-root PATH "
    "(git clone https://github.com/Tencent/HunyuanVideo), or use --backend diffusers --model "
    "hunyuanvideo-community/HunyuanVideo"
)
DIT_WEIGHT = Path("hunyuan-video-t2v-720p") / "transformers" / "mp_rank_00_model_states.pt"
WEIGHTS_HINT = "download them as HunyuanVideo's README says (ckpts/README.md there), or pass --model-base PATH"


def find_checkout(explicit: str | None) -> Path:
    """The HunyuanVideo checkout: ``--hunyuan-root``, else the current directory."""
    root = Path(explicit).expanduser() if explicit else Path.cwd()
    if not (root / "hyvideo" / "inference.py").is_file():
        where = f"--hunyuan-root {root}" if explicit else f"the current directory ({root})"
        raise UsageError(f"HunyuanVideo's code (hyvideo/) was not found in {where}; {CHECKOUT_HINT}")
    return root.resolve()


def import_hyvideo(root: Path) -> SimpleNamespace:
    """Import HunyuanVideo's parser and sampler from the checkout."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from hyvideo.config import parse_args
        from hyvideo.inference import HunyuanVideoSampler
    except ImportError as error:
        raise UsageError(
            f"HunyuanVideo's code in {root} does not import ({error}); install its requirements "
            "(pip install -r requirements.txt in the checkout)"
        ) from error
    return SimpleNamespace(parse_args=parse_args, Sampler=HunyuanVideoSampler)


def parse_hyvideo_args(hy: SimpleNamespace, argv: list[str], root: Path, need_prompt: bool = True) -> argparse.Namespace:
    """HunyuanVideo's own parser on its own flags, with weights found relative to the checkout.

    HunyuanVideo reads the text-encoder and VAE paths from ``$MODEL_BASE`` (default ``./ckpts``) and
    the transformer from ``--dit-weight`` (default ``ckpts/...``), both relative to the current
    directory. Here they follow ``--model-base`` when it is given, and the checkout's ``ckpts/``
    when run from elsewhere, so one flag points at one set of weights.
    """
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--model-base")
    peek.add_argument("--dit-weight")
    given, _ = peek.parse_known_args(argv)
    model_base = Path(given.model_base or ("ckpts" if Path("ckpts").exists() else root / "ckpts"))
    argv = list(argv)
    if given.model_base is None:
        argv += ["--model-base", str(model_base)]
    if given.dit_weight is None:
        argv += ["--dit-weight", str(model_base / DIT_WEIGHT)]
    os.environ.setdefault("MODEL_BASE", str(model_base))
    saved = sys.argv
    sys.argv = [sys.argv[0], *argv]
    try:
        args = hy.parse_args()
    except ValueError as error:  # HunyuanVideo's own sanity checks raise ValueError
        raise UsageError(f"{error}") from error
    finally:
        sys.argv = saved
    if not Path(args.model_base).is_dir():
        raise UsageError(f"HunyuanVideo's weights were not found at {args.model_base}; {WEIGHTS_HINT}")
    if not Path(args.dit_weight).exists():
        raise UsageError(f"the transformer weights {args.dit_weight} do not exist; {WEIGHTS_HINT}")
    if need_prompt and not args.prompt:
        raise UsageError('no prompt: pass --prompt "..." or --prompt-file FILE')
    return args


def run(argv: list[str], root: Path, cache_config: EasyCacheConfig, easycache_enabled: bool,
        prepare: Callable[[Any, argparse.Namespace], None] | None = None,
        prompts: list[str] | None = None, seeds: list[int] | None = None) -> list[Path]:
    """Load HunyuanVideo, install EasyCache, sample, write each video and its JSON. Returns the videos.

    ``prepare(sampler, args)``, when given, runs after loading and before EasyCache is installed
    (e.g. to install sparse attention inside the cache). With ``prompts`` (a prompt file) or
    ``seeds``, every prompt x seed is one job (``easycache.batch``): resumable, and spread over
    torchrun ranks unless the ranks split one video (``--ulysses-degree`` / ``--ring-degree``).
    """
    batch = prompts is not None or seeds is not None
    hy = import_hyvideo(root)
    args = parse_hyvideo_args(hy, argv, root, need_prompt=prompts is None)
    save_path = args.save_path if args.save_path_suffix == "" else f"{args.save_path}_{args.save_path_suffix}"
    sequence_parallel = args.ulysses_degree * args.ring_degree > 1
    rank, world_size = (0, 1) if sequence_parallel else data_parallel_rank()
    # Ranks that split one video: the first writes. Ranks that share out the jobs: each its own.
    writes = is_writer_rank() or (batch and not sequence_parallel)
    if writes:
        prepare_save_dir(save_path)
    if world_size > 1 and torch.cuda.is_available():  # one model per GPU: HunyuanVideo says "cuda"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))

    started = time.perf_counter()
    sampler = hy.Sampler.from_pretrained(Path(args.model_base), args=args)
    args = sampler.args
    load_seconds = time.perf_counter() - started
    if prepare is not None:
        prepare(sampler, args)

    if sequence_parallel and torch.distributed.is_initialized():
        cache_config.process_group = torch.distributed.group.WORLD
    cache_config.num_steps = args.infer_steps
    cache = apply_easycache(sampler, cache_config)

    def sample(prompt: str, seed: int | None, num_videos: int) -> tuple[dict, dict]:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        outputs = sampler.predict(
            prompt=prompt,
            height=args.video_size[0],
            width=args.video_size[1],
            video_length=args.video_length,
            seed=seed,
            negative_prompt=args.neg_prompt,
            infer_steps=args.infer_steps,
            guidance_scale=args.cfg_scale,
            num_videos_per_prompt=num_videos,
            flow_shift=args.flow_shift,
            batch_size=args.batch_size,
            embedded_guidance_scale=args.embedded_cfg_scale,
        )
        seconds = {"end_to_end_seconds": time.perf_counter() - started, "load_seconds": load_seconds}
        log_generation(cache, seconds)
        return outputs, seconds

    def record(path: Path, seconds: dict, seed: int, prompt: str) -> dict:
        return build_run_record(backend="tencent", args=vars(args), cache=cache, easycache_enabled=easycache_enabled,
                                seconds=seconds, video=path, seed=seed, prompt=prompt)

    if batch:
        def generate(job: Job, path: Path) -> None:
            outputs, seconds = sample(job.prompt, job.seed, 1)
            if writes:
                write_result(path, outputs["samples"][0], record(path, seconds, job.seed, job.prompt))

        jobs = jobs_for(prompts, seeds, args.prompt, args.seed)
        return run_jobs(jobs, Path(save_path), generate, rank, world_size)

    outputs, seconds = sample(args.prompt, args.seed, args.num_videos)
    if not writes:
        return []
    videos = []
    for i, frames in enumerate(outputs["samples"]):
        path = hunyuan_video_path(save_path, outputs["seeds"][i], outputs["prompts"][i])
        videos.append(write_result(path, frames, record(path, seconds, outputs["seeds"][i], outputs["prompts"][i])))
    return videos
