#!/usr/bin/env python3
"""EasyCache against every peer, side by side: same model, same prompts and seeds, one run.

    python bench/run_bench.py --repeats 2            # both demo models: ./bench-results/run-YYYYmmdd-HHMMSS/{demo,demo-wan}/
    python bench/run_bench.py --model demo-wan       # one model: its files straight in the folder

Several ``--model``s run one after another in the same process, each against its own baseline, and
each writes its own table, JSON and plot into a subfolder named after it; one model writes them
into the folder itself. Calls are also counted per guidance branch (``cond``, ``uncond``, or
``cond_uncond`` for both in one batched call) where the pipeline names them.

For each method and setting: transformer calls computed / total, wall-clock speedup over the
baseline measured in this run, PSNR (of the whole video's MSE, and the mean of per-frame PSNRs),
SSIM (and LPIPS where it loads) against the baseline's frames, peak memory. Writes results.md
(table), results.json and speed_psnr.png into a new folder (``--out``; an existing folder that
already holds results is refused unless ``--overwrite``).

"Computed" counts calls in which the transformer's last block ran (its output projection):
EasyCache and NaviCache skip whole calls, TeaCache runs a call's embedders and output layer but
none of its blocks, block caches (FirstBlockCache, DBCache, MagCache) run the call but skip its
later blocks; TaylorSeer and PyramidAttentionBroadcast skip work inside blocks, so their
calls all count as computed and only their time shows the saving.

Timing. One untimed generation warms the process up (allocator, kernels). Then, for each repeat
and each (prompt, seed), the methods run in turn with the baseline (no cache) timed again before
every ``--baseline-every`` methods and once after the last: ``baseline, m1, baseline, m2, ...,
baseline``. A video's time is the best (minimum) of its runs, for the baseline over all of its
interleaved runs, so background load while the baseline runs cannot inflate a speedup. Methods whose
removal leaves the transformer patched (cache-dit) are timed in a second round after all the
others; each method's speedup is against the baseline runs of its own round. Where every call
counted as computed runs the whole transformer (EasyCache, NaviCache, TeaCache, FirstBlockCache,
MagCache, DBCache), a speedup cannot exceed calls / computed; one that does (by more than 5%) is a timing artefact and
is flagged in the table, the JSON and the log.

Every mistake that can be known before the model loads (a bad flag, a missing model or prompt file,
an --out that is a file, unwritable, or already holds results) is refused first, in one line, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the heavy imports (torch, diffusers) wait until the flags are known to be good
    from methods import Method

DEFAULT_PROMPTS = [
    "a red circle moving left",
    "a blue square moving up",
    "a green triangle moving right",
    "a yellow circle moving down",
]
RESULT_FILES = ("results.json", "results.md", "speed_psnr.png")
DEFAULT_OUT_ROOT = "bench-results"  # under the current directory; never the committed bench/results
MAX_SEED = 2**63 - 1
# A speedup above calls / computed by more than this is flagged (timing noise of min-of-repeats is
# well below it; the artefact it catches was 11.8x against a bound of 6.15x).
SPEEDUP_TOLERANCE = 0.05
# "owner/name" (or a bare "name", refused as a hub id: no diffusers pipeline on the hub is one); on POSIX
# it contains os.sep, so it is a path only if it exists.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


class Refusal(Exception):
    """A mistake known before the model loads: printed as ``error: <message>``, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage + error lines become one line
        raise Refusal(f"{message} (see --help)")


def load_model(name: str, dtype: str):
    """The pipeline to benchmark: the shipped demo model, or a diffusers pipeline folder / hub id."""
    import torch

    from easycache.demo import DEMO_FOLDERS, load_demo_pipeline

    if name in DEMO_FOLDERS:
        return load_demo_pipeline(model=name)
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(os.path.expanduser(name), torch_dtype=getattr(torch, dtype))
    return pipe.to("cuda" if torch.cuda.is_available() else "cpu")


class CallCounter:
    """Counts transformer calls, and those in which its last block actually ran, per branch: the
    name the pipeline gives the call through diffusers' ``cache_context`` (``cond``, ``uncond``, or
    ``cond_uncond`` for both branches in one batched call; ``None`` where it names none)."""

    def __init__(self, transformer):
        import torch

        self.branch = None
        self.counts: dict = {}  # branch -> [calls, computed]
        linears = [m for m in _last_block(transformer).modules() if isinstance(m, torch.nn.Linear)]
        probe = linears[-1]  # the block's output projection: runs whenever the block itself runs
        self._hooks = [
            transformer.register_forward_pre_hook(lambda *_: self._count(0)),
            probe.register_forward_pre_hook(lambda *_: self._count(1)),
        ]
        scope = getattr(transformer, "cache_context", None)
        if scope is not None:  # an instance attribute over the class's method; caches installed later wrap it
            transformer.cache_context = self._naming(scope)

    def _naming(self, scope):
        @contextlib.contextmanager
        def cache_context(name, *args, **kwargs):
            with scope(name, *args, **kwargs):
                before, self.branch = self.branch, name
                try:
                    yield
                finally:
                    self.branch = before

        return cache_context

    def _count(self, index: int):
        self.counts.setdefault(self.branch, [0, 0])[index] += 1

    def take(self) -> tuple[int, int, dict]:
        """(calls, computed, {branch: [calls, computed]}) since the last take."""
        counts, self.counts = self.counts, {}
        return sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()), counts


def _last_block(transformer):
    """The block that runs last: single-stream blocks follow double-stream ones (HunyuanVideo, Flux)."""
    for name in ("single_transformer_blocks", "transformer_blocks", "blocks", "layers"):
        blocks = getattr(transformer, name, None)
        if blocks is not None and len(blocks):
            return blocks[-1]
    raise TypeError(f"{type(transformer).__name__} has no transformer blocks to watch")


def call_kwargs(pipe, prompt: str, seed: int, args) -> dict:
    import inspect

    import torch

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


def frames_of(output):
    """The first video of a pipeline output as (T, H, W, 3) uint8."""
    import numpy as np
    import torch

    video = output.frames[0]
    video = video.detach().float().cpu().numpy() if torch.is_tensor(video) else np.asarray(video)
    if video.shape[-1] not in (1, 3) and video.shape[1] in (1, 3):
        video = video.transpose(0, 2, 3, 1)
    return (np.clip(video, 0, 1) * 255).round().astype(np.uint8)


def guidance_mismatch(method: Method, pipe, calls_per_step: float) -> str | None:
    """Why ``method`` cannot run on this pipeline's guidance, or None."""
    if method.needs_guidance and calls_per_step < 2:
        return ("needs classifier-free guidance; this model makes one transformer call per step "
                "(guidance-distilled, or guidance off)")
    if method.batches_guidance and not hasattr(pipe, "batch_guidance"):
        return (f"needs the two guidance branches in one batched call; {type(pipe).__name__} calls them "
                "separately and offers no batched mode")
    return None


def reset_peak_memory():
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:  # Linux: reset the process's peak resident size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_bytes() -> int | None:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# Timing: interleaved with the baseline, best of repeats, a speedup checked against its bound.


def interleaved_order(n_methods: int, baseline_every: int = 1) -> list[int | None]:
    """One (prompt, seed)'s runs in one repeat: indices of the methods, ``None`` for the baseline,
    which runs before every ``baseline_every`` methods and once after the last."""
    order: list[int | None] = []
    for i in range(n_methods):
        if i % baseline_every == 0:
            order.append(None)
        order.append(i)
    order.append(None)
    return order


def calls_ratio(calls: int, computed: int) -> float | None:
    """calls / computed: the most that skipping calls (or a call's last block) can speed a run up."""
    return calls / computed if computed else None


def speedup_exceeds_calls_ratio(speedup: float, calls: int, computed: int, bounded: bool,
                                tolerance: float = SPEEDUP_TOLERANCE) -> bool:
    """True where a speedup is above calls / computed (by more than ``tolerance``), for a method
    whose computed calls each run the whole transformer (``bounded``): what it saves is the skipped
    calls (or their later blocks) at most, the pipeline's other work (text encoders, VAE) is the
    same, so a larger speedup is a timing artefact. Methods that skip work inside blocks
    (TaylorSeer, PyramidAttentionBroadcast) count every call as computed, have no such bound and
    are never flagged."""
    ratio = calls_ratio(calls, computed)
    if not bounded or ratio is None:
        return False
    return speedup > ratio * (1 + tolerance)


@dataclass
class Timing:
    """One method's runs: per video its frames (first run), run times, counts (first run)."""

    videos: list = field(default_factory=list)
    run_seconds: list[list[float]] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)
    branches: dict = field(default_factory=dict)  # branch -> [calls, computed], first runs summed
    peak_memory_bytes: int | None = None

    def add(self, job: int, frames, seconds: float, calls: int, computed: int, memory: int | None, branches: dict):
        if job == len(self.videos):
            self.videos.append(frames)
            self.run_seconds.append([])
            self.calls.append(calls)
            self.computed.append(computed)
            for name, (n, k) in branches.items():
                total = self.branches.setdefault(name, [0, 0])
                total[0], total[1] = total[0] + n, total[1] + k
        self.run_seconds[job].append(seconds)
        if memory is not None:
            self.peak_memory_bytes = max(memory, self.peak_memory_bytes or 0)

    @property
    def seconds(self) -> float:
        """The sum over videos of each video's best (minimum) run."""
        return sum(min(runs) for runs in self.run_seconds)


def _generate(pipe, counter: CallCounter, prompt: str, seed: int, args):
    import torch

    kwargs = call_kwargs(pipe, prompt, seed, args)
    reset_peak_memory()
    counter.take()
    started = time.perf_counter()
    frames = frames_of(pipe(**kwargs))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    calls, computed, branches = counter.take()
    return frames, seconds, calls, computed, peak_memory_bytes(), branches


def time_methods(methods: list[Method], pipe, counter: CallCounter, jobs, args):
    """Time the baseline (no cache installed) and ``methods`` interleaved (see ``interleaved_order``), each method
    installed just before its generation and removed just after; methods that ``leave_state`` in a
    second round, after all the others. Returns (baseline's Timing over every round, {method index:
    the baseline's Timing of the method's own round}, {method index: Timing}, {method index: reason
    it failed}); a method that fails is dropped from later runs and reported, not fatal. A method's
    speedup is against the baseline runs of its own round: load on the machine that comes and goes
    between rounds then slows both sides of the ratio."""
    base = Timing()
    timings = {i: Timing() for i in range(len(methods))}
    failed: dict[int, str] = {}
    # Methods whose removal leaves the transformer patched run after every other method has finished.
    phases = [[i for i, m in enumerate(methods) if m.leaves_state == last] for last in (False, True)]
    phases = [phase for phase in phases if phase]
    rounds = [Timing() for _ in phases]
    round_base = {i: rounds[k] for k, phase in enumerate(phases) for i in phase}
    for repeat, k in ((r, k) for k in range(len(phases)) for r in range(args.repeats)):
        phase = phases[k]
        order = [None if k is None else phase[k] for k in interleaved_order(len(phase), args.baseline_every)]
        logger().info(f"repeat {repeat + 1}/{args.repeats}: {len(jobs)} videos x {len(order)} runs "
                      f"({order.count(None)} of them the baseline)")
        for j, (prompt, seed) in enumerate(jobs):
            for i in order:
                if i is None:
                    result = _generate(pipe, counter, prompt, seed, args)
                    base.add(j, *result)
                    rounds[k].add(j, *result)
                    continue
                if i in failed:
                    continue
                method = methods[i]
                try:
                    handle = method.install(pipe)
                    try:
                        result = _generate(pipe, counter, prompt, seed, args)
                    finally:
                        method.remove(pipe, handle)
                except Exception as error:  # a peer that breaks on this model is reported, not fatal
                    failed[i] = (f"failed on this model: {type(error).__name__}: "
                                 f"{(str(error).splitlines() or [''])[0][:200]}")
                    logger().warning(f"{method.label}: {failed[i]}")
                    continue
                timings[i].add(j, *result)
    return base, round_base, timings, failed


def quality(base_videos, videos, lpips_fn) -> dict:
    """Mean over videos of each metric against the baseline (easycache.metrics defines them).

    psnr is the whole-video-MSE PSNR (EasyCache's protocol), psnr_frame_mean the mean of per-frame
    PSNRs (cache-dit / Sparse-VideoGen); a video's inf (identical frames) is capped at 100 dB.
    """
    import numpy as np
    import torch

    from easycache.metrics import compare_videos

    scores = [compare_videos(a, b, torch.device("cpu"), lpips_fn=lpips_fn) for a, b in zip(base_videos, videos)]
    mean = lambda values: float(np.mean(values)) if values and None not in values else None  # noqa: E731
    return {
        "psnr": mean([min(s.psnr, 100.0) for s in scores]),
        "psnr_frame_mean": mean([min(s.psnr_frame_mean, 100.0) for s in scores]),
        "ssim": mean([s.ssim for s in scores]),
        "lpips": mean([s.lpips for s in scores]) if lpips_fn is not None else None,
    }


def result_row(method: Method, timing: Timing, base: Timing, base_quality_of, speedup: float | None = None) -> dict:
    """A method's row; ``base``: the baseline runs its speedup is against (those of its own round)."""
    calls, computed = sum(timing.calls), sum(timing.computed)
    speedup = base.seconds / timing.seconds if speedup is None else speedup
    bounded = method.calls_bound_speedup
    return {
        "method": method.name, "setting": method.setting,
        "calls": calls, "computed": computed, "seconds": timing.seconds, "speedup": speedup,
        "branches": {str(name): {"calls": n, "computed": k} for name, (n, k) in timing.branches.items()},
        "calls_ratio": calls_ratio(calls, computed),
        "calls_ratio_bounds_speedup": bounded,
        "speedup_exceeds_calls_ratio": speedup_exceeds_calls_ratio(speedup, calls, computed, bounded),
        "run_seconds": timing.run_seconds, "baseline_seconds": base.seconds,
        "peak_memory_bytes": timing.peak_memory_bytes,
        **base_quality_of(timing.videos),
    }


# ---------------------------------------------------------------------------------------------
# Flags: everything that can be checked before the model loads.


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["demo", "demo-wan"],
                        help="models to benchmark, one after another: demo, demo-wan (the embedded demos), or a "
                             "diffusers pipeline folder / hub id (owner/name) (default: demo demo-wan)")
    parser.add_argument("--prompt-file", help="one prompt per line, UTF-8 (default: four demo prompts)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds in [0, 2**63-1] (default: 0)")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps per video, >= 1 (default: 30)")
    parser.add_argument("--height", type=int, help=">= 1 (default: the pipeline's)")
    parser.add_argument("--width", type=int, help=">= 1 (default: the pipeline's)")
    parser.add_argument("--frames", type=int, help=">= 1 (default: the pipeline's)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.025, 0.05, 0.1],
                        help="EasyCache thresholds, finite and >= 0")
    parser.add_argument("--warmup-steps", type=int, default=5, help="EasyCache's warmup steps, >= 0")
    parser.add_argument("--methods", nargs="+", help="only methods whose name contains one of these (no cache always runs)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs of each method per video, >= 1; the fastest is kept (2 or more for "
                             "speedups you will quote)")
    parser.add_argument("--baseline-every", type=int, default=1, metavar="K",
                        help="time the baseline again before every K methods (default 1: between every two "
                             "methods; larger is faster, and less robust to background load)")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("--dtype", default="bfloat16", help="torch dtype for a diffusers model (default: bfloat16)")
    parser.add_argument("--out", metavar="FOLDER",
                        help=f"where results.json, results.md and speed_psnr.png go (default: a new folder "
                             f"./{DEFAULT_OUT_ROOT}/run-YYYYmmdd-HHMMSS under the current directory; never the "
                             f"committed bench/results). A folder that already holds one of them is refused "
                             f"unless --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results.json, results.md, speed_psnr.png in an existing --out (nothing "
                             "else in the folder is touched)")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def check_numbers(args) -> None:
    def at_least(flag: str, value, low: int, what: str):
        if value is not None and value < low:
            raise Refusal(f"{flag} {value}: must be at least {low} ({what})")

    at_least("--steps", args.steps, 1, "denoising steps per video")
    at_least("--repeats", args.repeats, 1, "timed runs of each method per video")
    at_least("--baseline-every", args.baseline_every, 1, "methods between two timed baseline runs")
    at_least("--warmup-steps", args.warmup_steps, 0, "EasyCache's steps that always compute")
    for flag in ("height", "width", "frames"):
        at_least(f"--{flag}", getattr(args, flag), 1, f"the video's {flag}; leave it out for the pipeline's default")
    for seed in args.seeds:
        if not 0 <= seed <= MAX_SEED:
            raise Refusal(f"--seeds {seed}: a seed must be in [0, 2**63-1]")
    for threshold in args.thresholds:
        if not (math.isfinite(threshold) and threshold >= 0):
            raise Refusal(f"--thresholds {threshold}: an EasyCache threshold must be a finite number >= 0")


def check_model(name: str) -> None:
    """A local folder must exist and be a diffusers pipeline; a hub id must be ``owner/name`` and its
    ``model_index.json`` cached (offline) or fetchable (online): decided before anything is made,
    each failure one line. A bare word that is neither a demo nor a folder here (``dmeo``) is
    refused without asking the hub: every diffusers pipeline there is ``owner/name``."""
    import difflib

    from easycache.demo import DEMO_FOLDERS

    if name in DEMO_FOLDERS:
        return
    path = Path(os.path.expanduser(name))
    if path.exists():
        if not path.is_dir():
            raise Refusal(f"--model {name} is a file; pass a diffusers pipeline folder, a hub id (owner/name), or demo / demo-wan")
        if not (path / "model_index.json").is_file():
            raise Refusal(f"--model {name} has no model_index.json, so it is not a diffusers pipeline folder; "
                          f"pass the folder pipe.save_pretrained() wrote, a hub id (owner/name), or demo / demo-wan")
        return
    looks_like_path = os.path.isabs(name) or name.startswith((".", "~")) or not HUB_ID.fullmatch(name) or (
        os.altsep is not None and os.altsep in name)
    if looks_like_path:
        raise Refusal(f"--model {name}: no such folder; pass a diffusers pipeline folder, a hub id (owner/name), or demo / demo-wan")
    if "/" not in name:
        near = difflib.get_close_matches(name, DEMO_FOLDERS, n=1)
        raise Refusal(f"--model {name}: not a demo ({' / '.join(DEMO_FOLDERS)}), no folder of that name here, and not "
                      f"a hub id (owner/name){f'; did you mean {near[0]}?' if near else ''}")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "model_index.json"), str):
            raise Refusal(f"--model {name}: not a local folder, and not in the hub cache while HF_HUB_OFFLINE is "
                          f"set; download it first, or pass a local pipeline folder")
        return
    why = fetch_problem(name)
    if why:
        raise Refusal(f"--model {name}: {why}")


def fetch_problem(name: str) -> str | None:
    """Why hub id ``name``'s ``model_index.json`` cannot be fetched (what ``from_pretrained`` fetches
    first), in a few words; None when it can. The hub client's retry warnings are kept quiet: the
    answer is one line (an unreachable hub takes its retries, about 25 s)."""
    import huggingface_hub
    from huggingface_hub.utils import logging as hub_logging

    before = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        huggingface_hub.hf_hub_download(name, "model_index.json")
        return None
    except Exception as error:  # noqa: BLE001 - every way of not getting it is one line
        kinds = {cls.__name__ for cls in type(error).__mro__}
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if "GatedRepoError" in kinds:
            return "a gated model: accept its terms on the hub and log in (`hf auth login`), or pass a local folder"
        if "RepositoryNotFoundError" in kinds:
            return ("no such model on the hub (or a private one: log in with `hf auth login`); pass a diffusers "
                    "pipeline folder, a hub id (owner/name), or demo / demo-wan")
        if "LocalEntryNotFoundError" in kinds or "OfflineModeIsEnabled" in kinds:
            return ("cannot reach the hub to fetch it, and it is not in the hub cache; check the connection "
                    "(HF_ENDPOINT), or pass a local pipeline folder")
        if "EntryNotFoundError" in kinds or "RemoteEntryNotFoundError" in kinds:
            return "has no model_index.json on the hub, so it is not a diffusers pipeline"
        return f"cannot fetch it from the hub ({type(error).__name__}: {first[:200]})"
    finally:
        hub_logging.set_verbosity(before)


def check_prompt_file(path: str | None) -> list[str]:
    if path is None:
        return DEFAULT_PROMPTS
    if not Path(path).is_file():
        what = "is a folder" if Path(path).is_dir() else "no such file"
        raise Refusal(f"--prompt-file {path}: {what}; pass a text file with one prompt per line")
    from easycache.batch import read_prompts
    from easycache.errors import UsageError

    try:
        return read_prompts(path)  # unreadable, not UTF-8 (named by line), or no prompts: one UsageError
    except UsageError as error:
        raise Refusal(str(error)) from None


def check_dtype(name: str) -> None:
    import torch

    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise Refusal(f"--dtype {name}: not a torch dtype; use bfloat16, float16 or float32")


def chosen_methods(args, model: str | None = None) -> list[Method]:
    """The baseline first, then the methods ``--methods`` names (all where it is not given), for
    ``model`` (TeaCache looks up its coefficients by the model's folder name)."""
    from methods import (
        all_methods,  # bench/: Python puts a script's own folder on the import path
    )

    methods = all_methods(args.steps, tuple(args.thresholds), warmup_steps=args.warmup_steps, model=model,
                          folder=folder_name(model) if model else None)
    if args.methods:
        unmatched = [k for k in args.methods if not any(k.lower() in m.name.lower() for m in methods)]
        if unmatched:
            names = ", ".join(dict.fromkeys(m.name for m in methods))
            raise Refusal(f"--methods {' '.join(unmatched)}: matches no method; choose from: {names}")
        methods = [m for m in methods if m.name == "no cache" or any(k.lower() in m.name.lower() for k in args.methods)]
    return methods


def model_folders(out: Path, models: list[str]) -> list[Path]:
    """Where each model's results go: ``out`` itself for one model, else a subfolder per model named
    after it (``demo``, ``demo-wan``; a local folder by its name, a hub id ``owner--name``)."""
    if len(models) == 1:
        return [out]
    return [out / folder_name(m) for m in models]


def folder_name(model: str) -> str:
    """A model's folder name: a local folder by its own name; a hub id owner/name as owner--name."""
    path = Path(os.path.expanduser(model))
    text = path.name if path.is_dir() else model
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text).strip("-.") or "model"


def check_model_list(models: list[str]) -> None:
    if len(set(models)) != len(models):
        raise Refusal(f"--model {' '.join(models)}: a model is named twice; name each once")
    folders = [f.name for f in model_folders(Path("."), models)]
    if len(models) > 1 and len(set(folders)) != len(folders):
        raise Refusal(f"--model {' '.join(models)}: two models would write to the same folder "
                      f"({', '.join(folders)}); run them separately with their own --out")


def check_out(args) -> list[str]:
    """Without touching anything: --out is not a file, can be created, and holds no results (in any
    model's folder) unless --overwrite. Returns the result files that --overwrite will replace
    (relative to --out)."""
    if args.out is None:
        return []
    out = Path(os.path.expanduser(args.out))
    if out.exists() and not out.is_dir():
        raise Refusal(f"--out {args.out} is a file; pass a folder (a new one, or one that holds no results)")
    if not out.exists():
        parent = next(p for p in out.absolute().parents if p.exists())
        if not parent.is_dir():
            raise Refusal(f"--out {args.out}: cannot create the folder, {parent} is a file; pass another --out")
        return []
    present = []
    for folder in model_folders(out, args.model):
        if folder != out and os.path.lexists(folder) and not folder.is_dir():
            raise Refusal(f"--out {args.out}: {folder.name} there is a file, where {folder.name}'s results would "
                          f"go; move it away or pass another --out")
        present += [str((folder / name).relative_to(out)) for name in RESULT_FILES if os.path.lexists(folder / name)]
    if present and not args.overwrite:
        raise Refusal(f"--out {args.out} already holds {', '.join(present)}; pass a new folder, or add --overwrite "
                      f"to replace {'it' if len(present) == 1 else 'them'} (nothing else in the folder is touched)")
    for name in present:
        if not (out / name).is_file() or (out / name).is_symlink():
            raise Refusal(f"--out {args.out}: {name} there is not a plain file, so --overwrite would not replace "
                          f"it; move it away or pass another --out")
    return present


def default_out(root: Path | None = None) -> Path:
    """A folder name not taken yet: ``./bench-results/run-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... when
    taken)."""
    root = Path.cwd() / DEFAULT_OUT_ROOT if root is None else root
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = root / f"run-{stamp}", 1
    while os.path.lexists(candidate):
        n += 1
        candidate = root / f"run-{stamp}-{n}"
    return candidate


def prepare_out(args) -> tuple[Path, list[Path]]:
    """Create --out (or the new default folder) and prove it writable with a probe file (written and
    deleted). Returns the folder and the folders created, deepest first (removed again if the run
    writes nothing)."""
    given = args.out is not None
    out = Path(os.path.expanduser(args.out)) if given else default_out()
    created = [p for p in (out, *out.absolute().parents) if not os.path.lexists(p)]
    try:
        out.mkdir(parents=True, exist_ok=given)
    except FileExistsError:
        if not given:  # the default folder appeared meanwhile (another run this second): take the next
            return prepare_out(args)
        raise Refusal(f"--out {out} is a file; pass a folder (a new one, or one that holds no results)") from None
    except OSError as error:
        raise Refusal(f"--out {out}: cannot create the folder ({error.strerror}); pass a writable folder") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-probe-"):
            pass
    except OSError as error:
        remove_if_empty(created)
        raise Refusal(f"--out {out}: cannot write there ({error.strerror}); pass a writable folder") from None
    return out, created


def remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()  # only ever an empty folder this run created
        except OSError:
            return


def write_results(out: Path, rows: list[dict], meta: dict, overwrite: bool) -> tuple[Path, str]:
    """results.json, results.md, speed_psnr.png, each written under a temporary name then renamed.
    Without --overwrite, results that appeared in ``out`` during the run are kept: ours then go to a
    new folder inside it."""
    from report import write_plot, write_table

    out.mkdir(parents=True, exist_ok=True)  # a model's subfolder
    present = [name for name in RESULT_FILES if os.path.lexists(out / name)]
    if present and not overwrite:
        fresh = default_out(out)
        logger().warning(f"{out} got {', '.join(present)} during this run; they are kept, these results go to {fresh}")
        out = fresh
        out.mkdir(parents=True)
    elif present:
        logger().info(f"--overwrite: replacing {', '.join(present)} in {out}")
    partial = {name: out / f".{Path(name).stem}.partial-{os.getpid()}{Path(name).suffix}" for name in RESULT_FILES}
    try:
        partial["results.json"].write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        table = write_table(rows, meta, partial["results.md"])
        write_plot(rows, meta, partial["speed_psnr.png"])
        for name, path in partial.items():
            os.replace(path, out / name)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
    return out, table


def logger():
    from loguru import logger as _logger

    return _logger


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    try:
        return _main(argv)
    except Refusal as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2


def _main(argv=None) -> int:
    args = parse_args(argv)
    # Cheap checks first (no torch), then those that import it; nothing is created before all pass.
    check_numbers(args)
    check_model_list(args.model)
    for model in args.model:
        check_model(model)
    replaced = check_out(args)
    prompts = check_prompt_file(args.prompt_file)
    check_dtype(args.dtype)
    chosen_methods(args)  # --methods checked here; each model gets fresh methods when it runs
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise Refusal("matplotlib is not installed (it draws speed_psnr.png): pip install -e '.[bench]'")
    out, created = prepare_out(args)
    if replaced:
        logger().info(f"--overwrite: {', '.join(replaced)} in {out} will be replaced at the end of the run")
    written = False
    try:
        import torch

        with torch.no_grad():
            written = run(args, prompts, out)
    finally:
        if not written:
            remove_if_empty(created)
    return 0


def run(args, prompts: list[str], out: Path) -> bool:
    """Every model in turn, each with fresh methods (MagCache calibrates per model); True once any
    model's results are written."""
    import torch

    from easycache.metrics import LpipsUnavailable, load_lpips

    lpips_fn, lpips_status = None, "skipped (--no-lpips)"
    if not args.no_lpips:
        try:
            lpips_fn, lpips_status = load_lpips("alex", torch.device("cpu")), "alex"
        except LpipsUnavailable as error:
            lpips_status = f"unavailable: {error}"
    written = False
    for model, folder in zip(args.model, model_folders(out, args.model)):
        run_model(args, model, prompts, chosen_methods(args, model), folder, (lpips_fn, lpips_status))
        written = True
    return written


def run_model(args, model: str, prompts: list[str], methods: list[Method], out: Path, lpips) -> None:
    import torch

    log = logger()
    lpips_fn, lpips_status = lpips
    jobs = [(p, s) for p in prompts for s in args.seeds]
    log.info(f"loading model {model} ...")
    pipe = load_model(model, args.dtype)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    counter = CallCounter(pipe.transformer)

    counter.take()
    frames_of(pipe(**call_kwargs(pipe, *jobs[0], args)))  # warm-up, untimed
    calls_per_step = counter.take()[0] / args.steps
    baseline, peers = methods[0], methods[1:]  # all_methods lists the baseline (no cache) first
    reasons = {i: m.unavailable or guidance_mismatch(m, pipe, calls_per_step) for i, m in enumerate(peers)}
    for i, method in enumerate(peers):
        if not reasons[i] and method.prepare is not None:
            reasons[i] = method.prepare(pipe)  # e.g. TeaCache: no coefficients for this model
    unavailable: dict[int, str] = {i: reason for i, reason in reasons.items() if reason}
    for i, method in enumerate(peers):
        if i in unavailable or method.calibrate is None:
            continue
        try:
            method.calibrate(pipe, lambda: frames_of(pipe(**call_kwargs(pipe, *jobs[0], args))))
        except Exception as error:
            unavailable[i] = f"calibration failed on this model: {type(error).__name__}: {str(error)[:200]}"
    for i in sorted(unavailable):
        log.warning(f"{peers[i].label}: not run: {unavailable[i]}")
    runnable = [i for i in range(len(peers)) if i not in unavailable]
    log.info(f"timing {len(runnable)} methods against {baseline.label} on {len(jobs)} videos, "
             f"{args.repeats} repeat(s), the baseline before every {args.baseline_every} method(s)")
    base, round_base, timings, failed = time_methods([peers[i] for i in runnable], pipe, counter, jobs, args)
    timings = {runnable[k]: t for k, t in timings.items()}
    round_base = {runnable[k]: t for k, t in round_base.items()}
    unavailable.update({runnable[k]: reason for k, reason in failed.items()})

    base_quality_of = lambda videos: quality(base.videos, videos, lpips_fn)  # noqa: E731
    rows = [result_row(baseline, base, base, base_quality_of, speedup=1.0)]
    for i, method in enumerate(peers):
        if i in unavailable:
            rows.append({"method": method.name, "setting": method.setting, "unavailable": unavailable[i]})
            continue
        row = result_row(method, timings[i], round_base[i], base_quality_of)
        if row["speedup_exceeds_calls_ratio"]:
            log.warning(f"{method.label}: speedup {row['speedup']:.2f}x is above calls / computed "
                        f"({row['calls']} / {row['computed']} = {row['calls_ratio']:.2f}x), the most that skipping "
                        f"calls can give: a timing artefact (background load?); rerun with more --repeats")
        rows.append(row)

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    details = {}
    for i in runnable:
        if peers[i].details and peers[i].name not in details:
            details[peers[i].name] = peers[i].details
    meta = {
        "model": model, "prompts": prompts, "calls_per_step": calls_per_step, "seeds": args.seeds, "steps": args.steps,
        "details": details,
        "repeats": args.repeats, "device": device, "lpips": lpips_status, "torch": torch.__version__,
        "timing": {
            "warmup": "one untimed baseline generation before anything is timed",
            "order": ("for each repeat, for each (prompt, seed): the methods in turn, each installed just "
                      "before its generation and removed after it, the baseline timed before every "
                      f"{args.baseline_every} method(s) and once after the last"),
            "baseline_every": args.baseline_every,
            "repeats": args.repeats,
            "rounds": 1 + any(peers[i].leaves_state for i in runnable) if runnable else 1,
            "rounds_note": "methods whose removal leaves the transformer patched (cache-dit) are timed in a "
                           "second round, after every other method, each round with its own baseline runs",
            "baseline_runs_per_video": len(base.run_seconds[0]),
            "seconds": "per video the best (minimum) of its runs (the baseline: of all its interleaved runs), "
                       "summed over videos",
            "speedup": "baseline seconds / method seconds, the baseline's of the method's own round (the runs "
                       "interleaved with it; a row's baseline_seconds)",
            "calls_ratio_bound": ("where calls_ratio_bounds_speedup (every computed call runs the whole "
                                  "transformer: EasyCache, NaviCache, TeaCache, FirstBlockCache, MagCache, DBCache) a speedup above "
                                  f"calls / computed x {1 + SPEEDUP_TOLERANCE:g} is a timing artefact: "
                                  "speedup_exceeds_calls_ratio"),
        },
    }
    out, table = write_results(out, rows, meta, args.overwrite)
    log.info(f"wrote {out / 'results.md'}, results.json, speed_psnr.png")
    sys.stdout.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
