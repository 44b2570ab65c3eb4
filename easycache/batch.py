"""Many prompts and seeds, spread over torchrun ranks, resumable.

Every (prompt, seed) pair is one job with a fixed index. Rank ``r`` of ``w`` takes jobs ``r, r+w,
r+2w, ...``. A job's video has a name that depends only on the job (no clock), and it is written
under a temporary name first, so a rerun after a crash skips exactly the videos already finished
and never overwrites one. Each rank marks itself done; the rank that finishes last writes
``summary.json`` from every run JSON in the folder (no collective, so ranks of very different
speed never time out waiting for each other).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from loguru import logger
from tqdm import tqdm

from .errors import UsageError


@dataclass(frozen=True)
class Job:
    index: int
    prompt: str
    seed: int

    def video_name(self) -> str:
        """``{index}_seed{seed}_{prompt}.mp4``: stable across reruns, sorted in job order."""
        prompt = "".join(c if c.isalnum() or c in " -_.," else "_" for c in self.prompt[:80]).strip()
        return f"{self.index:05d}_seed{self.seed}_{prompt}.mp4"


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UsageError(f"cannot read --prompt-file {path}: {error.strerror}; check the path")
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UsageError(f"--prompt-file {path} has no prompts; write one prompt per line")
    return prompts


def make_jobs(prompts: Iterable[str], seeds: Iterable[int]) -> list[Job]:
    """Every prompt with every seed, prompt-major."""
    seeds = list(seeds)
    return [Job(i * len(seeds) + j, prompt, seed) for i, prompt in enumerate(prompts) for j, seed in enumerate(seeds)]


def jobs_for(prompts: list[str] | None, seeds: list[int] | None, prompt: str, seed: int | None) -> list[Job]:
    """The jobs of a run: the prompt file's prompts (else ``--prompt``) x ``--seeds`` (else ``--seed``,
    else 42, so that a rerun names its videos the same)."""
    return make_jobs(prompts or [prompt], seeds or [seed if seed is not None else 42])


def shard(jobs: list[Job], rank: int, world_size: int) -> list[Job]:
    """This rank's share: every ``world_size``-th job from ``rank``."""
    return jobs[rank::world_size]


def run_jobs(
    jobs: list[Job],
    save_dir: Path,
    generate: Callable[[Job, Path], object],
    rank: int = 0,
    world_size: int = 1,
    final: Callable[[Path], Path] = lambda path: path,
) -> list[Path]:
    """Generate this rank's jobs that have no finished video yet. ``generate(job, path)`` writes the
    run JSON beside ``final(path)``, then that video (atomically, last: its presence is what marks
    the job finished; ``final`` maps a job's name to the file written last, when a job writes
    several). Returns the jobs' videos written by this call."""
    save_dir.mkdir(parents=True, exist_ok=True)
    mine = shard(jobs, rank, world_size)
    todo = [job for job in mine if not final(save_dir / job.video_name()).exists()]
    if len(todo) < len(mine):
        logger.info(f"rank {rank}: {len(mine) - len(todo)} of {len(mine)} videos already finished, skipped")
    written = []
    for job in tqdm(todo, desc=f"rank {rank}", position=rank, disable=not todo):
        path = save_dir / job.video_name()
        generate(job, path)
        written.append(path)
    (save_dir / f".rank{rank}-of-{world_size}.done").write_text(str(len(mine)))
    if all((save_dir / f".rank{r}-of-{world_size}.done").exists() for r in range(world_size)):
        write_summary(save_dir, jobs, final)
    return written


def write_summary(save_dir: Path, jobs: list[Job], final: Callable[[Path], Path] = lambda path: path) -> Path:
    """``summary.json``: one entry per job (its run JSON's summary, or missing), and the totals."""
    entries, calls, computed = [], 0, 0
    for job in jobs:
        video = final(save_dir / job.video_name())
        run_json = video.with_suffix(".json")
        run = json.loads(run_json.read_text()) if video.exists() and run_json.exists() else None
        entry = {"index": job.index, "prompt": job.prompt, "seed": job.seed, "video": video.name,
                 "finished": video.exists()}
        if run is not None:
            entry.update(summary=run.get("summary"), end_to_end_seconds=run.get("end_to_end_seconds"))
            calls += run["summary"]["calls"]
            computed += run["summary"]["computed"]
        entries.append(entry)
    summary = {
        "videos": len(jobs),
        "finished": sum(e["finished"] for e in entries),
        "transformer_calls": calls,
        "computed": computed,
        "speedup": calls / computed if computed else None,
        "jobs": entries,
    }
    path = save_dir / "summary.json"
    tmp = path.with_suffix(f".json.{os.getpid()}.partial")  # ranks may finish at once
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(path)
    return path
