"""Many prompts over torchrun ranks: every job exactly once, and a killed run resumes."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from easycache.batch import make_jobs, read_prompts, run_jobs, shard, write_summary
from easycache.errors import UsageError
from easycache.outputs import write_run_json, write_video

PROMPTS = [f"a red circle moving {d}" for d in ("left", "right", "up", "down", "left fast")]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 8])
def test_ranks_cover_every_job_exactly_once(world_size):
    jobs = make_jobs(PROMPTS, seeds=[1, 2, 3])
    assert len({j.video_name() for j in jobs}) == len(jobs) == 15
    taken = [job for rank in range(world_size) for job in shard(jobs, rank, world_size)]
    assert sorted(j.index for j in taken) == list(range(15))


def fake_generate(job, path):
    """Writes what a real run writes: the run JSON, then the video."""
    write_run_json(path, {"summary": {"calls": 10, "computed": 4}, "end_to_end_seconds": 0.1})
    frames = np.full((3, 16, 16, 3), job.index / 20, dtype=np.float32)
    write_video(frames, path)


def test_two_ranks_share_the_work_and_the_last_writes_the_summary(tmp_path):
    jobs = make_jobs(PROMPTS, seeds=[7])
    first = run_jobs(jobs, tmp_path, fake_generate, rank=0, world_size=2)
    assert not (tmp_path / "summary.json").exists(), "rank 1 has not finished yet"
    second = run_jobs(jobs, tmp_path, fake_generate, rank=1, world_size=2)
    assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["finished"] == summary["videos"] == 5 and summary["speedup"] == 2.5


BATCH_SCRIPT = """
import sys, time
sys.path[:0] = {paths!r}
from pathlib import Path
from test_batch import PROMPTS, fake_generate
from easycache.batch import make_jobs, run_jobs

def slow(job, path):
    fake_generate(job, path)
    with open({log!r}, "a") as log:
        log.write(path.name + "\\n")
    time.sleep({pause})

run_jobs(make_jobs(PROMPTS, [1, 2]), Path({out!r}), slow)
"""


def test_a_killed_run_resumes_without_redoing_finished_videos(tmp_path):
    out, log = tmp_path / "videos", tmp_path / "generated.log"
    here = Path(__file__).parent
    paths = [str(here), str(here.parent)]
    script = tmp_path / "batch.py"
    script.write_text(BATCH_SCRIPT.format(paths=paths, log=str(log), out=str(out), pause=30))
    process = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 1):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # killed while sleeping after its first video
    process.wait(timeout=30)
    finished = sorted(p.name for p in out.glob("*.mp4"))
    assert len(finished) == 1

    script.write_text(BATCH_SCRIPT.format(paths=paths, log=str(log), out=str(out), pause=0))
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    generated = log.read_text().splitlines()
    assert len(generated) == 10 and len(set(generated)) == 10, "no video generated twice"
    assert len(list(out.glob("*.mp4"))) == 10
    assert not list(out.glob("*.partial*"))
    assert json.loads((out / "summary.json").read_text())["finished"] == 10


def test_prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# VBench subset\na cat walks\n\n  a dog runs  \n")
    assert read_prompts(path) == ["a cat walks", "a dog runs"]
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(UsageError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt")
    with pytest.raises(UsageError, match="cannot read"):
        read_prompts(tmp_path / "missing.txt")


def test_comment_lines_are_said_in_the_log_and_in_help(tmp_path):
    """A line starting with # is a comment: skipped, but never silently (one log line counts them,
    --prompt-file's help says so); a file of comments only says why it has no prompts."""
    from loguru import logger

    path = tmp_path / "prompts.txt"
    path.write_text("# VBench subset\na cat walks\n  #hashtag dance\na dog runs\n\n")
    messages = []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    try:
        assert read_prompts(path) == ["a cat walks", "a dog runs"]
        (tmp_path / "plain.txt").write_text("a cat walks\n")
        assert read_prompts(tmp_path / "plain.txt") == ["a cat walks"]
    finally:
        logger.remove(sink)
    said = [m for m in messages if "comment" in m]
    assert len(said) == 1 and "skipped 2 comment lines starting with #" in said[0] and str(path) in said[0]
    (tmp_path / "comments.txt").write_text("# a cat walks\n# a dog runs\n")
    with pytest.raises(UsageError, match="no prompts .*2 lines all start with #"):
        read_prompts(tmp_path / "comments.txt")
    from easycache.cli import entry_parser

    help_text = " ".join(entry_parser("x", "y").format_help().split())
    assert "lines starting with # (comments) are skipped" in help_text

def test_summary_marks_unfinished_jobs(tmp_path):
    jobs = make_jobs(["a", "b"], [0])
    fake_generate(jobs[0], tmp_path / jobs[0].video_name())
    summary = json.loads(write_summary(tmp_path, jobs).read_text())
    assert [j["finished"] for j in summary["jobs"]] == [True, False]
