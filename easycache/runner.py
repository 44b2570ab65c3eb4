"""One generation skeleton for every backend: parse, ranks, load, install the cache, sample, write.

A backend (``easycache/backends/``) knows one code base: its flags, how to load it and sample one
prompt. Everything else is here, once: the save folder, which rank generates and which writes, one
GPU per process, load timing, the cache config (the model's preset, then the flags the user gave),
per-video timing and peak memory, the run JSON beside each video, one video or a resumable batch,
and the cache summary, logged even when the run is interrupted or fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from loguru import logger

from .api import apply_attention, apply_easycache, default_config
from .batch import Job, JobLock, check_seeds, jobs_for, pending_jobs, run_jobs, shard
from .cache import EasyCache, EasyCacheConfig
from .errors import RunFailed, UsageError
from .outputs import announce_saved, build_run_record, hunyuan_video_path, prepare_save_dir, write_result

# Flags that change how a video is made, not which video: left out of the job a rerun must match.
RUN_ONLY_FLAGS = frozenset({
    "save_path", "save_path_suffix", "prompt", "seed", "num_videos", "batch_size", "use_cpu_offload", "device",
    "ulysses_degree", "ring_degree", "vae_tiling", "disable_autocast", "hunyuan_root",
})


@dataclass(frozen=True)
class Settings:
    """What the runner reads of a backend's parsed command line."""

    save_dir: Path
    prompt: str | None
    seed: int | None
    steps: int
    num_videos: int = 1
    splits_video: bool = False  # the ranks split each video (sequence / context parallelism)
    save_flag: str = "--save-path"  # the flag that names where the videos go, as its messages name it
    save_given: str | None = None  # that flag's value as given, where it is not ``save_dir`` itself


@dataclass
class Video:
    """One sampled video: frames ``(T, H, W, C)`` or ``(C, T, H, W)`` in [0, 1] and its seed."""

    frames: Any
    seed: int


class Backend:
    """One code base. Subclasses set ``name`` and implement ``parse``, ``load`` and ``sample``."""

    name = "backend"
    fps = 24
    timing_repeats = 1  # sample each video this many times and keep the fastest (noisy CPU timings)
    compare_with_baseline = False  # also sample at threshold 0; write both, their metrics and a GIF
    easycache_enabled = True  # set by the runner before ``parse``: False under --no-easycache
    batch = False  # set by the runner before ``parse``: True with --prompt-file or --seeds (videos named by job)

    def __init__(self, hunyuan_root: str | None = None):
        self.hunyuan_root = hunyuan_root  # the checkout, for backends that run one (--hunyuan-root)

    def parse(self, argv: list[str], need_prompt: bool) -> tuple[argparse.Namespace, Settings]:
        """The backend's own flags (one clear ``UsageError`` for a bad one)."""
        raise NotImplementedError

    def print_help(self) -> None:
        """Print the backend's own flags."""

    def load(self, args: argparse.Namespace) -> Any:
        """The model the cache goes on: a pipeline, a sampler or a transformer."""
        raise NotImplementedError

    def prepare(self, model: Any, args: argparse.Namespace) -> None:
        """After loading, before the cache is installed (so it sits inside the cache)."""

    def sample(self, model: Any, args: argparse.Namespace, prompt: str, seed: int, num_videos: int) -> list[Video]:
        """Generate ``num_videos`` videos of ``prompt`` from ``seed``."""
        raise NotImplementedError

    def extra_record(self) -> dict:
        """More to write into each run JSON."""
        return {}

    def video_path(self, save_dir: Path, seed: int, prompt: str) -> Path:
        """Where a single run's video goes (a batch names its videos by job): HunyuanVideo's naming."""
        return hunyuan_video_path(save_dir, seed, prompt)

    def replaces_named_path(self) -> bool:
        """True where the user named the video's file (HunyuanVideo-1.5's ``--output_path``): a single
        run writes that path, replacing what is there, as the code base's own script does. Else
        (the default) a name already taken gets a number (``Names.free``), keeping the earlier video."""
        return False

    def beside(self, path: Path) -> None:
        """Files the code base writes beside a video: called after its run JSON, before the video
        itself, so the video (in a batch, the mark of a finished job) is written last."""

    def beside_paths(self, path: Path) -> list[Path]:
        """The files ``beside`` writes for the video ``path``: a name where one of them is there
        already is taken (``Names.taken``), so they are never written over."""
        return []

    def announce(self, path: Path) -> None:
        """Say that ``path`` is written: the line the code base's own script prints, or ours."""
        announce_saved(path)

    def written(self, path: Path) -> None:
        """After a video (and its run JSON and the files beside it) is written."""

    def job_key(self, args: argparse.Namespace) -> dict:
        """What makes two videos the same job besides prompt, seed and cache settings (the model,
        its size, length, steps, guidance): every flag but those that only change how it runs."""
        return {k: v for k, v in sorted(vars(args).items()) if k not in RUN_ONLY_FLAGS}


@dataclass(frozen=True)
class Ranks:
    """The rank policy, in one place. Ranks that split one video (sequence parallelism) all sample
    it and the first writes; ranks that share out a batch each take every ``world_size``-th job and
    write their own; a single video without splitting is sampled by every rank, written by the first."""

    rank: int  # this process's place among the ranks that share out jobs (0 when they do not)
    world_size: int  # how many ranks share out jobs (1 when they do not)
    local_rank: int
    processes: int  # torchrun's WORLD_SIZE
    writes: bool

    @classmethod
    def from_env(cls, splits_video: bool, batch: bool) -> "Ranks":
        rank, processes = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        shares_jobs = batch and not splits_video
        return cls(rank=rank if shares_jobs else 0, world_size=processes if shares_jobs else 1,
                   local_rank=local_rank, processes=processes, writes=rank == 0 or shares_jobs)

    def use_own_gpu(self) -> None:
        """One GPU per process under torchrun ("cuda" then means this rank's GPU)."""
        if self.processes > 1 and torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)


@dataclass(frozen=True)
class RunOptions:
    """What the entry's own flags ask of a run."""

    cache: dict = field(default_factory=dict)  # EasyCacheConfig fields the user gave; the rest: the preset
    enabled: bool = True  # False: --no-easycache, every step computed through the same code path
    prompts: list[str] | None = None  # --prompt-file
    seeds: list[int] | None = None  # --seeds
    attention: str = "auto"  # --attention: the dense attention path (easycache.attention)

    @property
    def batch(self) -> bool:
        return self.prompts is not None or self.seeds is not None


@dataclass
class Plan:
    """What a command line asks for, known before any model loads: the parsed flags, the job a rerun
    must match, the batch's jobs and the names of their files."""

    backend: Backend
    args: argparse.Namespace
    settings: Settings
    options: RunOptions
    extensions: tuple
    identity: dict  # the job a rerun must match, less its prompt and seed
    names: "Names"
    jobs: list[Job]  # the batch's jobs ([] for one prompt)

    def expected(self, one: Job) -> dict:
        """The job as its run JSON must record it."""
        return {**self.identity, "prompt": one.prompt, "seed": one.seed}


def plan_run(backend: Backend, argv: list[str], options: RunOptions, extensions: tuple = ()) -> Plan:
    """Parse the backend's flags and check the seeds (one ``UsageError`` line for a bad one)."""
    backend.easycache_enabled, backend.batch = options.enabled, options.batch
    args, settings = backend.parse(argv, need_prompt=options.prompts is None)
    check_seeds([settings.seed], "--seed")
    check_seeds(options.seeds or [], "--seeds")
    identity = {"backend": backend.name, **backend.job_key(args),
                "easycache": {"enabled": options.enabled, **options.cache}}
    for step in extensions:
        identity.update(step.job_key())
    jobs = jobs_for(options.prompts, options.seeds, settings.prompt, settings.seed) if options.batch else []
    return Plan(backend, args, settings, options, extensions, identity, Names.for_run(backend, options), jobs)


def start_generation(plan: Plan) -> "Generation":
    """Load the model, run the steps beside the cache (the backend's, then the extensions'), install
    the cache: ready to sample."""
    logger.info(f"loading the model ({plan.backend.name})")
    started = time.perf_counter()
    model = plan.backend.load(plan.args)
    load_seconds = time.perf_counter() - started
    plan.backend.prepare(model, plan.args)
    attention = install_attention(model, plan.options.attention)
    for step in plan.extensions:
        step.prepare(model, plan.args)
    config, source = cache_config(model, plan.options, plan.settings)
    cache = apply_easycache(model, config)
    return Generation(plan.backend, model, plan.args, cache, plan.options, plan.extensions, load_seconds, source,
                      plan.names, attention)


def install_attention(model: Any, mode: str):
    """``--attention`` on the loaded model (after the backend's own preparation, which may parallelise
    it; before sparse attention and the cache, which wrap it); its choice logged."""
    choice = apply_attention(model, mode)
    logger.info(f"attention: {choice.path} ({choice.code_base or 'this transformer'}; its own path: "
                f"{choice.model_kernel}; {choice.reason})")
    return choice


def run(backend: Backend, argv: list[str], options: RunOptions, extensions: tuple = ()) -> list[Path]:
    """Generate what the command line asks for; returns the videos this process wrote.

    ``extensions`` are steps beside the cache (sparse attention): each has ``prepare(model, args)``,
    run after loading and before the cache, ``record() -> dict`` for each run JSON and
    ``job_key() -> dict``, what it changes in the video (part of the job a rerun must match).
    """
    plan = plan_run(backend, argv, options, extensions)
    settings, names = plan.settings, plan.names
    ranks = Ranks.from_env(settings.splits_video, options.batch)
    if ranks.writes:
        prepare_save_dir(settings.save_dir, settings.save_flag, settings.save_given)
    if options.batch and not pending_jobs(shard(plan.jobs, ranks.rank, ranks.world_size), settings.save_dir,
                                          names.final, plan.expected):
        logger.info(f"every video of this run is already in {settings.save_dir}: nothing to do, no model loaded")
        return run_jobs(plan.jobs, settings.save_dir, None, ranks.rank, ranks.world_size, names.final, plan.expected)
    ranks.use_own_gpu()
    generation = start_generation(plan)
    try:
        if options.batch:
            return run_jobs(plan.jobs, settings.save_dir,
                            lambda one, path: generation.job(one, path, plan.expected(one)),
                            ranks.rank, ranks.world_size, names.final, plan.expected)
        seed = settings.seed if settings.seed is not None else random.randint(0, 1_000_000)
        return generation.single(settings.prompt, seed, settings.num_videos, settings.save_dir, ranks.writes,
                                 lambda video_seed: {**plan.identity, "prompt": settings.prompt, "seed": video_seed})
    finally:
        generation.log_total()


def cache_config(model: Any, options: RunOptions, settings: Settings) -> tuple[EasyCacheConfig, str]:
    """The model's preset (or the defaults), then the flags the user gave, the run's step count and,
    when the ranks split each video, their process group (every rank takes the same decision)."""
    config, source = default_config(model)
    if options.cache:
        source = f"{source}; flags: {', '.join(sorted(options.cache))}"
    group = None
    if settings.splits_video and torch.distributed.is_available() and torch.distributed.is_initialized():
        group = torch.distributed.group.WORLD
    config = dataclasses.replace(config, **options.cache, num_steps=settings.steps, process_group=group)
    if not options.enabled:
        config, source = dataclasses.replace(config, thresh=0.0), "--no-easycache: threshold 0"
    return config, source


class Names:
    """The files of one video: itself, or with a baseline ``*_baseline`` and ``*_easycache``.

    A run's files share one NAME, the video's stem (``same`` for ``same.mp4``, ``same_baseline.mp4``,
    ``same_metrics.json``...). A name is taken where any file a run of these variants would write
    under it is there (``files``), and a run reserves the NAME itself (``lock``: ``<stem>.lock``,
    whatever the variants), so two runs choosing one stem exclude each other even where they write
    different variants (a ``--no-easycache`` run and an EasyCache run into one folder in one second)."""

    def __init__(self, backend: Backend, variants: list[str]):
        self.backend = backend  # the code base, for the files it writes beside a video
        self.variants = variants
        self.reserved: dict[Path, JobLock] = {}  # the names ``free`` reserved and ``release`` has not given back

    @classmethod
    def for_run(cls, backend: Backend, options: RunOptions) -> "Names":
        """A command-line run's: the video alone, or the baseline (and EasyCache's) where the backend
        compares them."""
        if not backend.compare_with_baseline:
            return cls(backend, ["video"])
        return cls(backend, ["baseline", "easycache"] if options.enabled else ["baseline"])

    def of(self, path: Path, variant: str) -> Path:
        return path if variant == "video" else path.with_name(f"{path.stem}_{variant}{path.suffix}")

    def final(self, path: Path) -> Path:
        """The file written last for ``path``: its presence marks the job finished."""
        return self.of(path, self.variants[-1])

    @staticmethod
    def metrics(path: Path) -> Path:
        return path.with_name(f"{path.stem}_metrics.json")

    @staticmethod
    def gif(path: Path) -> Path:
        return path.with_name(f"{path.stem}_side_by_side.gif")

    def files(self, path: Path) -> list[Path]:
        """Every file a run of these variants writes under ``path``'s name: each variant's video,
        its run JSON and what the code base writes beside it; with a baseline compared, the
        metrics JSON and the side-by-side GIF."""
        files = []
        for variant in self.variants:
            video = self.of(path, variant)
            files += [video, video.with_suffix(".json"), *self.backend.beside_paths(video)]
        if len(self.variants) == 2:
            files += [self.metrics(path), self.gif(path)]
        return files

    def taken(self, path: Path) -> bool:
        """A file of ``path``'s name is there already (any of ``files``; a link counts, even one
        to nothing): writing under that name would replace it."""
        return any(os.path.lexists(f) for f in self.files(path))

    @staticmethod
    def lock(path: Path) -> JobLock:
        """The reservation of ``path``'s name: ``<stem>.lock`` (not a variant's file), one for every
        run that may choose the name, whatever variants it writes."""
        return JobLock(path.with_suffix(""))

    def free(self, path: Path) -> Path:
        """``path``, or ``path`` numbered ``_2``, ``_3``... where the name is taken, reserved until
        ``release``: the name is taken where one of its files is there, or where another run (of
        this process or any other) reserved it and is writing it. Reserving is atomic (the name's
        ``.lock``, created with O_CREAT | O_EXCL and naming its pid, as batch mode locks a job), so
        two runs into one folder at once never pick the same name; a lock left by a process that is
        gone is taken over."""
        n = 1
        while True:
            candidate = path if n == 1 else path.with_name(f"{path.stem}_{n}{path.suffix}")
            if not self.taken(candidate) and self.reserve(candidate):
                if not self.taken(candidate):  # not written by another run between the look and the lock
                    return candidate
                self.release(candidate)
            n += 1

    def reserve(self, path: Path) -> bool:
        """Reserve ``path``'s name as it is (a batch job's stable name), False where another run
        holds it; ``release`` gives it back."""
        lock = self.lock(path)
        if not lock.acquire():
            return False
        self.reserved[path] = lock
        return True

    def release(self, path: Path) -> None:
        """Give back the name ``free`` reserved for ``path`` (nothing where it reserved none)."""
        lock = self.reserved.pop(path, None)
        if lock is not None:
            lock.release()


class Generation:
    """Sampling, timing and writing the videos of one run, with the cache installed."""

    def __init__(self, backend: Backend, model: Any, args: argparse.Namespace, cache: EasyCache,
                 options: RunOptions, extensions: tuple, load_seconds: float, source: str, names: Names,
                 attention: Any = None):
        self.backend, self.model, self.args, self.cache = backend, model, args, cache
        self.attention = attention  # the AttentionChoice installed on the model, recorded in each run JSON
        self.options, self.extensions, self.load_seconds, self.source = options, extensions, load_seconds, source
        self.names = names
        self.config = cache.config
        # The cache's work per variant (the video; or the baseline and EasyCache, counted apart).
        self.totals = {name: {"videos": 0, "calls": 0, "computed": 0} for name in names.variants}
        self.in_flight: str | None = None  # the variant of a generation started and not yet counted

    # ------------------------------------------------------------------ one prompt
    def single(self, prompt: str, seed: int, num_videos: int, save_dir: Path, writes: bool,
               job: Callable[[int], dict]) -> list[Path]:
        """``num_videos`` videos of one prompt, named as HunyuanVideo names them (never over a
        file of a name taken already: it gets a number), or at the path the user named
        (``Backend.replaces_named_path``). Sets that cannot be written there are written into a
        temporary folder, and the run ends in one line saying why and where (``unsaved``)."""
        variants = self.sample_variants(prompt, seed, num_videos)
        if not writes:
            return []
        written, failed, rescued = [], None, []
        for i, video in enumerate(variants[-1][1]):
            path = self.backend.video_path(save_dir, video.seed, prompt)
            if num_videos > 1 and len({v.seed for v in variants[-1][1]}) == 1:  # one seed for all: number them
                path = path.with_name(f"{path.stem}_{i}{path.suffix}")
            sampled = [(name, videos[i], timing) for name, videos, timing in variants]
            if failed is None:
                try:
                    if not self.backend.replaces_named_path():
                        path = self.names.free(path)
                    written += self.write(path, prompt, job(video.seed), sampled)
                    continue
                except OSError as error:
                    failed = (path, error)
            rescued.append(self.unsaved(path, prompt, job(video.seed), sampled))
        if failed is not None:
            raise RunFailed(unsaved_line(*failed, written, rescued)) from failed[1]
        return written

    # Writing can fail after minutes of sampling although the folder was proven writable before
    # loading (a full disk, the folder removed or made read-only meanwhile). That is no bug and no
    # mistake in the command line: it ends the run in one ``error:`` line naming the path and the
    # reason (exit 1, as a run that could not make everything), never a traceback. The files written
    # before are kept (each written whole: no half file). A single run's sampled videos are not
    # dropped: they are written into a new temporary folder, as the web page does, and the line says
    # where; a batch stops at that job, its finished videos kept, and the same command resumes it.
    def unsaved(self, path: Path, prompt: str, identity: dict, sampled: list) -> Path | OSError:
        """Write a set that could not be written at ``path`` into a new temporary folder: the
        folder, or the error that stopped that too."""
        import tempfile

        if getattr(self, "rescue_folder", None) is None:
            try:
                self.rescue_folder = Path(tempfile.mkdtemp(prefix="easycache_unsaved_"))
            except OSError as error:
                return error
        try:
            self.write(self.names.free(self.rescue_folder / path.name), prompt, identity, sampled)
        except OSError as error:
            return error
        return self.rescue_folder

    def job(self, job: Job, path: Path, identity: dict) -> list[Path]:
        """One prompt x seed of a batch, written under the job's stable name, reserved (``Names.lock``,
        as a single run reserves its name) while it is made: a run making the same name with other
        variants (``--no-easycache`` and EasyCache into one folder) holds it, and the job is left to it."""
        if not self.names.reserve(path):
            pid, host = self.names.lock(path).owner() or ("?", "?")
            logger.info(f"{path.name}: its name is reserved by process {pid} on {host} (another run into this "
                        "folder), left to it")
            return []
        try:
            variants = self.sample_variants(job.prompt, job.seed, 1)
            try:
                return self.write(path, job.prompt, identity,
                                  [(name, videos[0], timing) for name, videos, timing in variants])
            except OSError as error:
                raise RunFailed(f"could not write {path} ({error.strerror or type(error).__name__}): stopped at "
                                "this video; those finished before it are kept, and the same command resumes "
                                f"from it once {path.parent} is writable (free space, permissions)") from error
        finally:
            self.names.release(path)

    # ------------------------------------------------------------------ sampling and timing
    def sample_variants(self, prompt: str, seed: int, num_videos: int) -> list[tuple[str, list[Video], dict]]:
        """Each variant (the video; or the baseline and the cached one) sampled, timed, recorded.

        Each variant is timed ``timing_repeats`` times and keeps its fastest run. The variants'
        runs interleave (baseline, EasyCache, baseline, EasyCache, ...), never all of one before
        the other, so load on the machine (another job) falls on runs of both rather than on the
        baseline's alone, which gave speedups above what skipping calls can give. (The demo warms
        up, untimed, as it loads.) A speedup still above that is marked, never given as a result
        (``comparison.write_comparison``)."""
        best: dict[str, tuple[list[Video], dict]] = {}
        for _ in range(self.backend.timing_repeats):
            for name in self.names.variants:
                config = dataclasses.replace(self.config, thresh=0.0) if name == "baseline" else self.config
                self.cache.config = config
                try:
                    videos, timing = self.sample_once(prompt, seed, num_videos, name)
                finally:
                    self.cache.config = self.config
                if name not in best or timing["end_to_end_seconds"] < best[name][1]["end_to_end_seconds"]:
                    best[name] = (videos, timing)
        out = []
        for name in self.names.variants:
            videos, timing = best[name]
            self.count(name, videos, timing)
            out.append((name, videos, timing))
        return out

    def timed_sample(self, prompt: str, seed: int, num_videos: int, variant: str | None = None
                     ) -> tuple[list[Video], dict]:
        """Sample at the cache's present config (the fastest of ``timing_repeats``); the timing,
        summary and records of the kept run, counted under ``variant`` (default: the last)."""
        variant = variant or self.names.variants[-1]
        best = None
        for _ in range(self.backend.timing_repeats):
            videos, timing = self.sample_once(prompt, seed, num_videos, variant)
            if best is None or timing["end_to_end_seconds"] < best[1]["end_to_end_seconds"]:
                best = (videos, timing)
        self.count(variant, *best)
        return best

    def sample_once(self, prompt: str, seed: int, num_videos: int, variant: str) -> tuple[list[Video], dict]:
        """One timed sampling at the cache's present config: the videos, and its timing, summary, records."""
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        self.in_flight = variant
        videos = self.backend.sample(self.model, self.args, prompt, seed, num_videos)
        seconds = time.perf_counter() - started
        timing = {"end_to_end_seconds": seconds, "load_seconds": self.load_seconds,
                  "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
                  "config": self.cache.config, "summary": self.cache.summary(), "records": list(self.cache.records)}
        return videos, timing

    def count(self, variant: str, videos: list[Video], timing: dict) -> None:
        """A kept run into the run's totals (its variant's), and its line in the log."""
        self.cache.records = timing["records"]  # the record is the kept run's
        summary = timing["summary"]
        totals = self.totals.setdefault(variant, {"videos": 0, "calls": 0, "computed": 0})
        totals["videos"] += len(videos)
        totals["calls"] += summary["calls"]
        totals["computed"] += summary["computed"]
        self.in_flight = None
        label = "EasyCache" if variant in ("video", "easycache") else VARIANT_NAMES.get(variant, variant)
        logger.info(f"{label}: {summary['computed']}/{summary['calls']} transformer calls computed "
                    f"({summary['speedup']:.2f}x fewer), transformer {summary['seconds']:.1f}s, "
                    f"end to end {seconds_text(timing['end_to_end_seconds'])}")

    # ------------------------------------------------------------------ writing
    def write(self, path: Path, prompt: str, identity: dict, variants: list[tuple[str, Video, dict]]) -> list[Path]:
        """Each variant's run JSON and video; with a baseline, their metrics and a side-by-side GIF.

        The order makes the last variant's video (``Names.final``: in a batch, the mark of a
        finished job) the last file written: each video after its run JSON and the files its code
        base writes beside it, the metrics and the GIF before the last video. A run stopped
        anywhere before leaves a job a rerun makes again, never one it takes as finished without
        its files. The name ``Names.free`` reserved for ``path`` is given back at the end."""
        try:
            targets = [self.names.of(path, name) for name, _, _ in variants]
            written = []
            for i, (name, video, timing) in enumerate(variants):
                target = targets[i]
                record = build_run_record(
                    backend=self.backend.name, args=vars(self.args), config=timing["config"],
                    easycache_enabled=self.options.enabled and name != "baseline", config_source=self.source,
                    summary=timing["summary"], records=timing["records"], num_steps=self.cache.num_steps,
                    measured={k: timing[k] for k in ("end_to_end_seconds", "load_seconds", "peak_gpu_memory_bytes")},
                    video=target, seed=video.seed, prompt=prompt,
                    extra={"job": identity, **self.extra_record()},
                )
                compare = i == len(variants) - 1 and len(variants) == 2

                def before_video(target: Path = target, compare: bool = compare) -> None:
                    self.backend.beside(target)
                    if compare:
                        self.write_comparison(path, variants, targets)

                written.append(write_result(target, video.frames, record, fps=self.backend.fps,
                                            before_video=before_video, announce=self.backend.announce))
                self.backend.written(target)
            return written
        finally:
            self.names.release(path)

    def write_comparison(self, path: Path, variants: list[tuple[str, Video, dict]], targets: list[Path]) -> None:
        """The baseline against the cached video: ``*_metrics.json`` and ``*_side_by_side.gif``."""
        from .comparison import write_comparison

        (_, base, base_timing), (_, cached, cached_timing) = variants
        write_comparison(base.frames, cached.frames, base_timing, cached_timing, targets,
                         self.names.metrics(path), self.names.gif(path),
                         timing_note=f"fastest of {self.backend.timing_repeats} runs each, the two variants' "
                                     "runs interleaved")

    def extra_record(self) -> dict:
        extra = self.backend.extra_record()
        if self.attention is not None:
            extra["attention"] = self.attention.record()
        for step in self.extensions:
            extra.update(step.record())
        return extra

    def log_total(self) -> None:
        """The cache's work over the whole run, also when it stops early (then with the call in
        flight); the baseline and EasyCache each on its own, never added together."""
        totals = {name: dict(counts) for name, counts in self.totals.items()}
        stopped = ""
        if self.in_flight is not None:
            partial = self.cache.summary()
            counts = totals.setdefault(self.in_flight, {"videos": 0, "calls": 0, "computed": 0})
            counts["calls"] += partial["calls"]
            counts["computed"] += partial["computed"]
            where = "" if self.in_flight == "video" else f" of the {VARIANT_NAMES.get(self.in_flight, self.in_flight)}"
            stopped = f"; stopped during a generation{where}, its {partial['calls']} calls so far included"
        parts = []
        for name, counts in totals.items():
            ratio = counts["calls"] / counts["computed"] if counts["computed"] else float("nan")
            label = "" if name == "video" else f"{VARIANT_NAMES.get(name, name)}: "
            parts.append(f"{label}{counts['videos']} videos, {counts['computed']}/{counts['calls']} "
                         f"transformer calls computed ({ratio:.2f}x fewer)")
        logger.info(f"EasyCache over this run: {'; '.join(parts)}{stopped}")


def unsaved_line(path: Path, error: OSError, written: list[Path], rescued: list) -> str:
    """The line of a single run whose videos could not all be written (``Generation.unsaved``)."""
    line = f"could not write {path} ({error.strerror or type(error).__name__})"
    folders = sorted({str(r) for r in rescued if isinstance(r, Path)})
    lost = [r for r in rescued if not isinstance(r, Path)]
    if folders:
        line += f": saved in {', '.join(folders)} instead"
    if lost:
        line += (f"; {len(lost)} of {len(rescued)} videos not saved anywhere, nor in a temporary folder "
                 f"({lost[0].strerror or type(lost[0]).__name__}): lost")
    if written:
        line += f"; the videos written before it are kept ({', '.join(p.name for p in written)})"
    return f"{line}; free space or make {path.parent} writable"


# How the log names each variant of a compared video.
VARIANT_NAMES = {"baseline": "baseline (threshold 0)", "easycache": "EasyCache", "video": "video"}


def seconds_text(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds >= 1 else f"{seconds:.3f}s"


def prompt_required(prompt: str | None, need_prompt: bool) -> None:
    """Refuse a run with nothing to generate."""
    if need_prompt and not prompt:
        raise UsageError('no prompt: pass --prompt "..." or --prompt-file FILE')
