"""Many prompts and seeds, spread over torchrun ranks, resumable, never trusting the wrong video.

Every (prompt, seed) pair is one job with a fixed index. Rank ``r`` of ``w`` takes jobs ``r, r+w,
r+2w, ...``. A job's video has a name that depends only on the job (no clock); its run JSON is
written first and the video last, each under a name unique to the process and renamed when whole.

Resume rules: a finished video counts only if its run JSON records the same job (model, size,
length, steps, cache settings, seed, prompt: ``expected(job)``). A finished video of another job is
refused in one line (rerun with the same flags, or pass another folder); a video whose JSON is
unreadable is reported by name, moved aside (``*.unverified-<time>.*``, nothing deleted) and made
again. A video being made by another live process (its ``.lock`` names the pid) is left to it;
a lock whose process is gone is taken over. Each rank marks itself done; the rank that finishes
last writes ``summary.json`` (no collective, so ranks of very different speed never time out).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from loguru import logger
from tqdm import tqdm

from .errors import UsageError
from .outputs import fit_file_stem, jsonable, written_whole

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Job:
    index: int
    prompt: str
    seed: int

    def video_name(self) -> str:
        """``{index}_seed{seed}_{prompt}.mp4``: stable across reruns, sorted in job order."""
        prompt = "".join(c if c.isalnum() or c in " -_.," else "_" for c in self.prompt[:80]).strip()
        return f"{fit_file_stem(f'{self.index:05d}_seed{self.seed}_{prompt}')}.mp4"


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` (comments) are skipped, the
    comments counted in one log line, so a prompt that begins with ``#`` is never dropped unsaid."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"--prompt-file {path}: cannot read it ({error.strerror}); check the path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UsageError(f"--prompt-file {path}: line {line} is not UTF-8 text; save the file as UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    prompts = [line for line in lines if not line.startswith("#")]
    comments = len(lines) - len(prompts)
    if not prompts:
        raise UsageError(f"--prompt-file {path} has no prompts" + (f" (its {comments} lines all start with #, "
                         "which marks a comment)" if comments else "") + "; write one prompt per line")
    if comments:
        logger.info(f"--prompt-file {path}: {len(prompts)} prompts; skipped {comments} comment "
                    f"line{'s' if comments > 1 else ''} starting with #")
    return prompts


def check_seeds(seeds: Iterable[int | None], flag: str) -> None:
    """Seeds a generator takes: 0 to 2**63 - 1."""
    for seed in seeds:
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise UsageError(f"{flag} {seed}: a seed is an integer from 0 to 2**63 - 1")


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


def _same(path: Path) -> Path:
    return path


def pending_jobs(jobs: list[Job], save_dir: Path, final: Callable[[Path], Path] = _same,
                 expected: Callable[[Job], dict] | None = None) -> list[Job]:
    """The jobs without a finished video (see the resume rules above). ``expected(job)`` is the
    job as its run JSON must record it; without it, a video's presence is enough."""
    todo = []
    for job in jobs:
        video = final(save_dir / job.video_name())
        if not video.exists():
            todo.append(job)
            continue
        if expected is None:
            continue
        record = video.with_suffix(".json")
        try:
            made = json.loads(record.read_text()).get("job")
        except (OSError, ValueError, AttributeError) as error:
            moved = _move_aside(video, record)
            logger.warning(f"{record}: unreadable run record ({type(error).__name__}); its video cannot be trusted, "
                           f"moved aside ({', '.join(p.name for p in moved)}) and made again")
            todo.append(job)
            continue
        wanted = jsonable(expected(job))
        if made != wanted:
            raise UsageError(f"--save-path {save_dir} already holds {video.name}, made by another job "
                             f"({_difference(made, wanted)}); rerun with the same flags to resume, or pass "
                             "another --save-path")
    return todo


def _difference(made: dict | None, wanted: dict) -> str:
    if not isinstance(made, dict):
        return "its run JSON records no job: made by another version"
    keys = [k for k in sorted(set(made) | set(wanted)) if made.get(k) != wanted.get(k)]
    return "; ".join(f"{k}: {made.get(k)!r} there, {wanted.get(k)!r} now" for k in keys[:3])


def _move_aside(*paths: Path) -> list[Path]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for path in paths:
        if path.exists():
            target = path.with_name(f"{path.stem}.unverified-{stamp}{path.suffix}")
            path.replace(target)
            moved.append(target)
    return moved


class JobLock:
    """``<video>.lock`` holding the owner's ``pid@host``: one process makes a video at a time. A lock
    whose process is gone from this host (a crash) is taken over; one from another host (a shared
    filesystem) is left alone, as its process cannot be checked from here."""

    def __init__(self, video: Path):
        self.path = video.with_name(video.name + ".lock")
        self.held = False

    def acquire(self) -> bool:
        for _ in range(2):  # a second try after clearing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self.owner_alive():
                    return False
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as stream:
                stream.write(f"{os.getpid()}@{socket.gethostname()}")
            self.held = True
            return True
        return False

    def owner(self) -> tuple[int, str] | None:
        """(pid, host) of the lock's owner, or None where the lock is empty or unreadable."""
        try:
            pid, _, host = self.path.read_text().strip().partition("@")
            return (int(pid), host) if pid else None
        except (OSError, ValueError):
            return None

    def owner_alive(self) -> bool:
        owner = self.owner()
        if owner is None:  # just created, not written yet; or left empty by a crash long ago
            try:
                return time.time() - self.path.stat().st_mtime < 10
            except OSError:
                return False
        pid, host = owner
        if host and host != socket.gethostname():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def run_jobs(
    jobs: list[Job],
    save_dir: Path,
    generate: Callable[[Job, Path], object],
    rank: int = 0,
    world_size: int = 1,
    final: Callable[[Path], Path] = _same,
    expected: Callable[[Job], dict] | None = None,
) -> list[Path]:
    """Generate this rank's jobs that have no finished video yet (``pending_jobs``), each under its
    lock. ``generate(job, path)`` writes the run JSON beside ``final(path)``, then that video, last
    (``final`` maps a job's name to the file written last, when a job writes several). Returns the
    jobs' videos written by this call."""
    save_dir.mkdir(parents=True, exist_ok=True)
    mine = shard(jobs, rank, world_size)
    todo = pending_jobs(mine, save_dir, final, expected)
    if len(todo) < len(mine):
        logger.info(f"rank {rank}: {len(mine) - len(todo)} of {len(mine)} videos already finished, skipped")
    written = []
    for job in tqdm(todo, desc=f"rank {rank}", position=rank, disable=not todo):
        path = save_dir / job.video_name()
        lock = JobLock(final(path))
        if not lock.acquire():
            pid, host = lock.owner() or ("?", "?")
            logger.info(f"{path.name}: being made by process {pid} on {host}, left to it")
            continue
        try:
            if final(path).exists():  # finished by another process since we looked
                continue
            generate(job, path)
            written.append(path)
        finally:
            lock.release()
    (save_dir / f".rank{rank}-of-{world_size}.done").write_text(str(len(mine)))
    if all((save_dir / f".rank{r}-of-{world_size}.done").exists() for r in range(world_size)):
        write_summary(save_dir, jobs, final)
    return written


def estimated_seconds_saved(summary: dict) -> float:
    """The transformer time a video's cache saved: its reused calls at its measured seconds per
    computed call, less the time the reuses took."""
    if not summary.get("computed") or summary.get("compute_seconds") is None:
        return 0.0
    per_call = summary["compute_seconds"] / summary["computed"]
    return summary["reused"] * per_call - summary.get("reuse_seconds", 0.0)


def write_summary(save_dir: Path, jobs: list[Job], final: Callable[[Path], Path] = _same,
                  failed: dict[int, dict] | None = None) -> Path:
    """``summary.json``: one entry per job (its run JSON's summary, or why not; ``failed`` gives the
    error of each job that failed every try), and the totals, with ``estimated_seconds_saved``."""
    failed = failed or {}
    entries, calls, computed, seconds, saved = [], 0, 0, 0.0, 0.0
    for job in jobs:
        video = final(save_dir / job.video_name())
        entry = {"index": job.index, "prompt": job.prompt, "seed": job.seed, "video": video.name,
                 "finished": video.exists()}
        if job.index in failed and not video.exists():
            entry["failed"] = failed[job.index]
        if video.exists():
            try:
                run = json.loads(video.with_suffix(".json").read_text())
                summary = run["summary"]
                entry.update(summary=summary, end_to_end_seconds=run.get("end_to_end_seconds"))
                calls += summary["calls"]
                computed += summary["computed"]
                seconds += summary.get("seconds") or 0.0
                saved += estimated_seconds_saved(summary)
            except (OSError, ValueError, KeyError, TypeError) as error:
                entry["record"] = f"unreadable: {type(error).__name__}"
                logger.warning(f"{video.with_suffix('.json')}: unreadable run record, left out of summary.json")
        entries.append(entry)
    summary = {
        "videos": len(jobs),
        "finished": sum(e["finished"] for e in entries),
        "failed": sum("failed" in e for e in entries),
        "transformer_calls": calls,
        "computed": computed,
        "speedup": calls / computed if computed else None,
        "transformer_seconds": seconds,
        "estimated_seconds_saved": saved,
        "jobs": entries,
    }
    path = save_dir / "summary.json"
    with written_whole(path) as tmp:  # unique to this process: ranks may finish at once
        tmp.write_text(json.dumps(summary, indent=2))
    return path
