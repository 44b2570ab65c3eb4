"""What a run writes: the video, named as HunyuanVideo names it, and the run's JSON beside it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import UsageError

# File names are at most 255 bytes on common filesystems. A video's stem keeps room for what is
# written beside it: "_easycache.json", "_side_by_side.gif", ".partial-<pid>.mp4", ".lock".
MAX_STEM_BYTES = 200


def fit_file_stem(stem: str) -> str:
    """``stem`` unchanged where it fits; else cut by bytes on a character boundary and given a short
    hash of the whole stem, so two long prompts never share a name (and the cut is logged)."""
    data = stem.encode("utf-8")
    if len(data) <= MAX_STEM_BYTES:
        return stem
    digest = hashlib.sha1(data).hexdigest()[:10]
    cut = data[: MAX_STEM_BYTES - len(digest) - 1].decode("utf-8", errors="ignore")
    from loguru import logger

    logger.info(f"file name shortened to {MAX_STEM_BYTES} bytes (a hash of the whole name appended): {cut}~{digest}")
    return f"{cut}~{digest}"


def hunyuan_video_path(save_path: str | os.PathLike, seed: int, prompt: str) -> Path:
    """``{save_path}/{time}_seed{seed}_{prompt[:100]}.mp4``, HunyuanVideo's ``sample_video.py`` naming
    (shortened where it would not fit a file name)."""
    time_flag = datetime.fromtimestamp(time.time()).strftime("%Y-%m-%d-%H:%M:%S")
    return Path(save_path) / f"{fit_file_stem(f'{time_flag}_seed{seed}_' + prompt[:100].replace('/', ''))}.mp4"


def prepare_save_dir(save_path: str | os.PathLike, flag: str = "--save-path", given: str | None = None) -> Path:
    """Create the output folder and prove it writable up front, so a bad path fails before minutes
    of generation. ``flag`` names it in the refusal (``given``: its value, where the folder is the
    parent of a file it names, as HunyuanVideo-1.5's ``--output_path``)."""
    path = Path(save_path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = f"{given}: cannot write in {path}" if given is not None else f"{path}: cannot write there"
        raise UsageError(f"{flag} {where} ({reason}); pass a writable {flag}")
    return path


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is complete: unique to this process."""
    return path.with_name(f"{path.stem}.partial-{os.getpid()}{path.suffix}")


@contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A path to write ``path``'s content to: it becomes ``path`` only once the block ends without an
    error, so ``path`` is never half-written (and a partial file never stays behind)."""
    tmp = partial_path(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_video(frames: Any, path: Path, fps: int = 24) -> Path:
    """Write frames (T, H, W, C) or (C, T, H, W) in [0, 1] as an mp4, as HunyuanVideo converts them."""
    import imageio

    array = frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if array.ndim == 4 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 3, 0)  # (C, T, H, W) -> (T, H, W, C)
    array = (np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    with written_whole(path) as tmp:  # never a half-written video under the final name
        imageio.mimsave(tmp, list(array), fps=fps)
    return path


def write_run_json(video_path: Path, run: dict) -> Path:
    """The run's record beside its video: same name, ``.json`` (written whole or not at all)."""
    path = video_path.with_suffix(".json")
    with written_whole(path) as tmp:
        tmp.write_text(json.dumps(jsonable(run), indent=2, allow_nan=False))
    return path


# The keys every run JSON of this project has (``build_run_record``): how a file at a run JSON's path
# is known as one written earlier by this project (replaced by a run at a path the user named) and
# not a file of the user's (never replaced).
RUN_RECORD_KEYS = frozenset({"backend", "video", "prompt", "seed", "easycache", "summary", "args", "records",
                             "versions"})


def is_run_record(path: Path) -> bool:
    """``path`` is a run JSON this project wrote (a plain file, not a link: its keys, and its
    ``versions`` naming easycache)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and RUN_RECORD_KEYS <= record.keys()
            and isinstance(record["versions"], dict) and "easycache" in record["versions"])


def jsonable(value: Any) -> Any:
    """Arguments and records as plain JSON (paths as strings, non-finite floats as null)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return jsonable(value.item())
    return str(value)


def build_run_record(*, backend: str, args: dict, config: Any, easycache_enabled: bool, config_source: str,
                     summary: dict, records: list, num_steps: int, measured: dict, video: Path, seed: int,
                     prompt: str, extra: dict | None = None) -> dict:
    """The JSON of one run: the whole cache config and where it came from, per-call records,
    transformer seconds, and what the runner ``measured`` (end-to-end and load seconds, peak GPU
    memory of this video's sampling), the arguments."""
    import torch

    from .version import __version__

    return {
        "backend": backend,
        "video": str(video),
        "prompt": prompt,
        "seed": seed,
        "easycache": {"enabled": easycache_enabled, **config.as_record(), "num_steps": num_steps,
                      "source": config_source},
        "summary": summary,
        "transformer_seconds": summary["seconds"],
        **measured,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": {"easycache": __version__, "torch": torch.__version__},
        "args": args,
        **(extra or {}),
        "records": [r.as_dict() for r in records],
    }


def announce_saved(path: Path) -> None:
    """The line a written video gets by default (a backend may print its code base's own instead)."""
    from loguru import logger

    logger.info(f"Sample save to: {path}")


def write_result(path: Path, frames: Any, run: dict, fps: int = 24, before_video: Callable[[], None] | None = None,
                 announce: Callable[[Path], None] = announce_saved) -> Path:
    """One generated video and its run JSON: the JSON first, then ``before_video()`` (the files written
    beside the video), the video last (atomically), so a finished video always has its record and
    those files beside it and a rerun can trust the video's presence."""
    write_run_json(path, run)
    if before_video is not None:
        before_video()
    write_video(frames, path, fps=fps)
    announce(path)
    return path
