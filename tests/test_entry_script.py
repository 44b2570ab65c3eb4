"""easycache_sample_video.py: the diffusers backend end to end, and its one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import easycache_sample_video
from needs import needs_diffusers

ROOT = Path(__file__).resolve().parents[1]
SMALL_JOB = ["--prompt", "a cat walks on the grass", "--video-size", "16", "16", "--video-length", "9",
             "--infer-steps", "10", "--precision", "fp32", "--vae-precision", "fp32", "--seed", "42",
             "--flow-reverse"]


def run_main(args, save_path):
    code = easycache_sample_video.main(["--backend", "diffusers", *args, "--save-path", str(save_path)])
    videos = sorted(Path(save_path).glob("*.mp4"))
    return code, videos


def test_diffusers_backend_baseline_and_cached(tiny_model_dir, tmp_path):
    code, base = run_main(["--model", str(tiny_model_dir), "--no-easycache", *SMALL_JOB], tmp_path / "base")
    assert code == 0 and len(base) == 1
    code, fast = run_main(["--model", str(tiny_model_dir), "--easycache-thresh", "0.4",
                           "--easycache-warmup-steps", "3", *SMALL_JOB], tmp_path / "fast")
    assert code == 0 and len(fast) == 1
    assert "_seed42_a cat walks on the grass" in fast[0].name

    base_run = json.loads(base[0].with_suffix(".json").read_text())
    fast_run = json.loads(fast[0].with_suffix(".json").read_text())
    assert base_run["summary"]["computed"] == base_run["summary"]["calls"] == 10
    assert not base_run["easycache"]["enabled"] and fast_run["easycache"]["enabled"]
    assert 0 < fast_run["summary"]["reused"] and fast_run["summary"]["calls"] == 10
    assert len(fast_run["records"]) == 10 and fast_run["args"]["infer_steps"] == 10
    for key in ("transformer_seconds", "end_to_end_seconds", "peak_gpu_memory_bytes", "device"):
        assert key in fast_run

    frames = iio.imread(fast[0])
    assert frames.shape[0] == 9 and frames.shape[-1] == 3
    assert np.abs(frames.astype(float) - iio.imread(base[0]).astype(float)).mean() < 40


def test_thresh_zero_writes_the_baseline_video(tiny_model_dir, tmp_path):
    _, base = run_main(["--model", str(tiny_model_dir), "--no-easycache", *SMALL_JOB], tmp_path / "a")
    _, zero = run_main(["--model", str(tiny_model_dir), "--easycache-thresh", "0", *SMALL_JOB], tmp_path / "b")
    assert np.array_equal(iio.imread(base[0]), iio.imread(zero[0]))


def cli(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "easycache_sample_video.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_works_anywhere(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--easycache-thresh" in result.stdout and "--hunyuan-root" in result.stdout


def test_outside_a_checkout_says_what_is_missing_in_one_line(tmp_path):
    result = cli("--prompt", "a cat", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "hyvideo/" in lines[0] and "--hunyuan-root" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,expected", [
    (["--backend", "diffusers", "--model", "/nonexistent/model", "--prompt", "x"], "--model /nonexistent/model: no such folder"),
    (["--backend", "diffusers", "--model", "no-such-org/no-such-model", "--prompt", "x"], "cannot load the diffusers pipeline"),
    (["--backend", "diffusers", "--prompt", "x", "--no-such-flag"], "--no-such-flag"),
    (["--backend", "diffusers", "--model", "m"], "no prompt"),
    (["--easycache-thresh", "-1", "--prompt", "x"], "thresh"),
    (["--hunyuan-root", "/nonexistent/HunyuanVideo", "--prompt", "x"], "hyvideo/"),
])
def test_bad_input_is_one_clear_line(args, expected, tmp_path):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and expected in lines[-1]
    assert "Traceback" not in result.stderr


def test_unwritable_save_path_fails_before_generating(tiny_model_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("already here")
    result = cli("--backend", "diffusers", "--model", str(tiny_model_dir), *SMALL_JOB,
                 "--save-path", str(blocker / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "writable --save-path" in result.stderr
    assert blocker.read_text() == "already here"


def test_diffusers_prompt_file_seeds_and_ranks(tiny_model_dir, tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat walks on the grass\na dog runs in the sky\n")
    job = ["--model", str(tiny_model_dir), "--prompt-file", str(prompts), "--seeds", "3", "4",
           *SMALL_JOB[2:]]  # SMALL_JOB without its --prompt
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        code, videos = run_main(job, tmp_path / "many")
        assert code == 0
    names = [v.name for v in videos]
    assert names == ["00000_seed3_a cat walks on the grass.mp4", "00001_seed4_a cat walks on the grass.mp4",
                     "00002_seed3_a dog runs in the sky.mp4", "00003_seed4_a dog runs in the sky.mp4"]
    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    assert summary["finished"] == 4 and summary["transformer_calls"] == 40
    before = {v.name: v.stat().st_mtime_ns for v in videos}
    code, videos = run_main(job, tmp_path / "many")  # rank 0 again: everything of its share is done
    assert code == 0 and {v.name: v.stat().st_mtime_ns for v in videos} == before


@needs_diffusers("ContextParallelConfig", "diffusers' context parallelism")
def test_context_parallelism_for_a_model_diffusers_cannot_split_is_one_line(tiny_model_dir, tmp_path):
    env = {**__import__("os").environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531"}
    result = subprocess.run([sys.executable, str(ROOT / "easycache_sample_video.py"), "--backend", "diffusers",
                             "--model", str(tiny_model_dir), *SMALL_JOB, "--ulysses-degree", "2",
                             "--save-path", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "no context parallelism for HunyuanVideoTransformer3DModel" in result.stderr.strip().splitlines()[-1]
