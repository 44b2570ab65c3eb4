"""Nothing lost, nothing silently wrong: the real entry script in a subprocess, on tiny models.

Each mistake that can be known before the model loads is refused before it loads: exit code 2,
one line on stderr naming the flag, no traceback, no "loading the model" line, and the files
already in --save-path byte-identical afterwards. Reruns resume only the same job.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOADING = "loading the model"
DEMO = ["--model", "demo", "--infer-steps", "8"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: one thread each is faster on 2 shared cores


def entry(*args, cwd: Path, script: str = "easycache_sample_video.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=ONE_THREAD)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(result: subprocess.CompletedProcess, *words: str, loaded: bool = False) -> str:
    """Exit 2, no traceback, the last stderr line an error naming ``words``; before loading, the
    only line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("error:") and all(w in lines[-1] for w in words), lines[-1]
    if not loaded:
        assert len(lines) == 1 and LOADING not in result.stderr, result.stderr
    return lines[-1]


@pytest.fixture()
def save(tmp_path) -> Path:
    """A --save-path that already holds a file of the user's."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine, keep it\n")
    return folder


@pytest.mark.parametrize("flags,named", [
    (["--infer-steps", "0"], "--infer-steps 0"),
    (["--video-length", "0"], "--video-length 0"),
    (["--video-length", "-3"], "--video-length -3"),
    (["--device", "cuda:7" if os.environ.get("CUDA_VISIBLE_DEVICES") is None else "cuda:99"], "--device cuda:"),
    (["--device", "banana"], "--device banana"),
    (["--seed", str(2**63)], f"--seed {2**63}"),
    (["--seeds", "1", "-2"], "--seeds -2"),
    (["--flow-shift", "nan"], "--flow-shift nan"),
    (["--cfg-scale", "inf"], "--cfg-scale inf"),
    (["--num-videos", "0"], "--num-videos 0"),
    (["--easycache-thresh", "-1"], "--easycache-thresh -1"),
    (["--easycache-thresh", "nan"], "--easycache-thresh nan"),
    (["--easycache-warmup-steps", "-1"], "--easycache-warmup-steps -1"),
    (["--model", "./no/such/folder"], "--model ./no/such/folder"),
])
def test_bad_values_are_refused_before_loading(tiny_model_dir, save, flags, named):
    before = snapshot(save)
    args = ["--backend", "diffusers", "--model", tiny_model_dir, "--prompt", "a cat", "--save-path", save, *flags]
    assert_refused(entry(*args, cwd=save.parent), named)
    assert snapshot(save) == before


def test_a_size_the_pipeline_would_round_is_refused_before_sampling(tiny_model_dir, save):
    """diffusers makes 1 frame of --video-length 4: refused once the pipeline says its VAE's
    compression (it cannot be known before: a hub id names no VAE), before any sampling."""
    before = snapshot(save)
    line = assert_refused(entry("--backend", "diffusers", "--model", tiny_model_dir, "--prompt", "a cat",
                                "--video-size", "16", "16", "--video-length", "4", "--save-path", save,
                                cwd=save.parent), "--video-length 4", "pass 1 or 5", loaded=True)
    assert "HunyuanVideoPipeline makes 4k+1 frames" in line
    assert snapshot(save) == before


def test_an_unwritable_save_path_is_refused_before_loading(tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits: /proc is a folder no one writes into
        folder = Path("/proc")
    else:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    assert_refused(entry(*DEMO, "--prompt", "a red circle moving left", "--save-path", folder, cwd=tmp_path),
                   f"--save-path {folder}", "writable")


def test_a_prompt_file_with_bad_bytes_names_the_file_and_line(save):
    prompts = save.parent / "prompts.txt"
    prompts.write_bytes("a red circle moving left\n".encode() + b"a blue \xff square\n")
    before = snapshot(save)
    assert_refused(entry(*DEMO, "--prompt-file", prompts, "--save-path", save, cwd=save.parent),
                   f"--prompt-file {prompts}", "line 2", "UTF-8")
    assert snapshot(save) == before


def test_the_demo_honours_its_sizes_and_refuses_others(save):
    assert_refused(entry(*DEMO, "--prompt", "a red circle", "--video-size", "32", "32", "--save-path", save,
                         cwd=save.parent), "--video-size 32 32", "16x16")
    result = entry(*DEMO, "--prompt", "a red circle moving left", "--num-videos", "2", "--seed", "3",
                   "--save-path", save, cwd=save.parent)
    assert result.returncode == 0, result.stderr
    runs = sorted(save.glob("*_easycache.json"))
    assert len(runs) == 2, "--num-videos 2 gives two videos"
    record = json.loads(runs[0].read_text())
    assert record["args"]["video_size"] == [16, 16] and record["args"]["video_length"] == 9


def test_a_long_non_ascii_prompt_gets_a_short_safe_name(save):
    prompt = "一只红色的圆形在黑色背景上从右向左缓慢移动，画面干净，光线柔和，镜头保持静止，风格写实，细节丰富" * 2
    assert len(prompt.encode()) > 255
    result = entry(*DEMO, "--prompt", prompt, "--seed", "1", "--save-path", save, cwd=save.parent)
    assert result.returncode == 0, result.stderr
    assert "file name shortened" in result.stderr
    written = [p for p in save.iterdir() if p.name != "notes.txt"]
    assert len(written) == 6 and all(len(p.name.encode()) <= 255 for p in written)
    assert len({p.name.split("~")[1].split("_")[0] for p in written}) == 1, "one hash for the video's files"


@pytest.fixture(scope="module")
def finished_batch(tmp_path_factory):
    """A finished batch: 2 prompts x 1 seed on the demo, and its command line."""
    folder = tmp_path_factory.mktemp("batch")
    prompts = folder / "prompts.txt"
    prompts.write_text("a red circle moving left\na blue square moving up\n")
    job = [*DEMO, "--prompt-file", prompts, "--seeds", "5", "--save-path", folder / "videos"]
    result = entry(*job, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, job


@pytest.mark.parametrize("change,named", [
    (["--infer-steps", "10"], "infer_steps"),
    (["--no-easycache"], "enabled"),
    (["--easycache-thresh", "0.05"], "thresh"),
])
def test_a_rerun_of_another_job_is_refused_before_loading(finished_batch, change, named):
    folder, job = finished_batch
    before = snapshot(folder / "videos")
    line = assert_refused(entry(*job, *change, cwd=folder), "--save-path", "another job", named)
    assert "00000_seed5_a red circle moving left" in line
    assert snapshot(folder / "videos") == before


def test_a_rerun_of_a_finished_job_loads_nothing(finished_batch):
    folder, job = finished_batch
    before = snapshot(folder / "videos")
    result = entry(*job, cwd=folder)
    assert result.returncode == 0 and LOADING not in result.stderr and "nothing to do" in result.stderr
    after = snapshot(folder / "videos")
    assert {k: v for k, v in after.items() if k.name != "summary.json"} == \
        {k: v for k, v in before.items() if k.name != "summary.json"}


def test_a_corrupt_record_is_named_moved_aside_and_its_video_made_again(finished_batch, tmp_path):
    folder, job = finished_batch
    videos = tmp_path / "videos"
    subprocess.run(["cp", "-a", str(folder / "videos"), str(videos)], check=True)
    record = videos / "00001_seed5_a blue square moving up_easycache.json"
    record.write_text('{"job": {"backend": "de')  # cut off mid-write by a crash of another tool
    video = record.with_suffix(".mp4")
    old_video = video.read_bytes()
    job = [*job[:-1], videos]
    result = entry(*job, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{record}: unreadable run record" in result.stderr and LOADING in result.stderr
    (moved_video,) = videos.glob("00001_*_easycache.unverified-*.mp4")
    (moved_record,) = videos.glob("00001_*_easycache.unverified-*.json")
    assert moved_video.read_bytes() == old_video and moved_record.read_text() == '{"job": {"backend": "de'
    assert json.loads(record.read_text())["job"]["prompt"] == "a blue square moving up"
    summary = json.loads((videos / "summary.json").read_text())
    assert summary["finished"] == 2


def test_two_runs_into_one_folder_make_each_video_once(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a {c} circle moving left\n" for c in ("red", "blue", "green", "yellow")))
    job = [sys.executable, str(ROOT / "easycache_sample_video.py"), *DEMO, "--prompt-file", str(prompts),
           "--seeds", "1", "--save-path", str(tmp_path / "videos")]
    runs = [subprocess.Popen(job, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=ONE_THREAD) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    made = [line for out in outputs for line in out.splitlines() if "Sample save to" in line and "_easycache" in line]
    assert len(made) == 4 and len({line.split("Sample save to: ")[1] for line in made}) == 4, made
    assert not list((tmp_path / "videos").glob("*partial*")) and not list((tmp_path / "videos").glob("*.lock"))


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    from easycache.batch import JobLock

    video = tmp_path / "00000_seed1_x.mp4"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / (video.name + ".lock")).write_text(f"{dead.stdout.strip()}@{socket.gethostname()}")
    time.sleep(0.1)
    lock = JobLock(video)
    assert lock.acquire() and lock.owner() == (os.getpid(), socket.gethostname())
    assert not JobLock(video).acquire(), "a live owner keeps its lock"
    lock.release()
    assert not lock.path.exists()
    (tmp_path / (video.name + ".lock")).write_text(f"{dead.stdout.strip()}@another-machine")
    assert not JobLock(video).acquire(), "a lock from another host (shared filesystem) is left alone"
