"""easycache_sample_video.py's main flow against a real Tencent HunyuanVideo checkout, on CPU.

Set HYVIDEO_ROOT to a checkout (git clone https://github.com/Tencent/HunyuanVideo). Tiny random
checkpoints are written in HunyuanVideo's own layout; only CUDA-only pieces are shimmed (see
easycache/testing/tencent_tiny.py). Skipped, with its reason, when HYVIDEO_ROOT is unset.

Not covered on CPU: ``--use-cpu-offload`` (diffusers' sequential offload needs an accelerator) and
``--ulysses-degree`` (xDiT needs NCCL); the seed command line with it is parsed, not run.
"""

import json
import shlex
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import easycache_sample_video
from easycache import EasyCacheConfig, cli
from easycache.backends import tencent as hyvideo_backend
from easycache.testing.tencent_tiny import hyvideo_root_or_skip_reason

ROOT, SKIP_REASON = hyvideo_root_or_skip_reason()
pytestmark = pytest.mark.skipif(ROOT is None, reason=f"Tencent integration: {SKIP_REASON}")

SEED_COMMAND = (
    '--video-size 544 960 --video-length 129 --infer-steps 50 --prompt "A cat walks on the grass, '
    'realistic style." --flow-reverse --use-cpu-offload --save-path ./results --seed 42'
)


def small_job(flags, save_path, *extra):
    return ["--hunyuan-root", str(ROOT), "--video-size", "32", "32", "--video-length", "5",
            "--infer-steps", "12", "--prompt", "a cat walks on the grass", "--flow-reverse",
            "--save-path", str(save_path), "--seed", "42", *flags, *extra]


def only(folder, pattern):
    found = sorted(Path(folder).glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_seed_command_line_is_accepted_unchanged(tencent):
    modules, flags, _ = tencent
    ours, rest = easycache_sample_video.build_parser().parse_known_args(shlex.split(SEED_COMMAND))
    assert cli.given_fields(ours, EasyCacheConfig) == {} and not ours.no_easycache  # the preset applies
    hy = hyvideo_backend.import_hyvideo(ROOT)
    args = hyvideo_backend.parse_hyvideo_args(hy, rest, ROOT)
    assert args.video_size == [544, 960] and args.video_length == 129 and args.infer_steps == 50
    assert args.flow_reverse and args.use_cpu_offload and args.seed == 42
    assert args.prompt == "A cat walks on the grass, realistic style."
    assert Path(args.dit_weight).is_file()  # found under ./ckpts, HunyuanVideo's default place


def test_main_flow_baseline_and_easycache(tencent, monkeypatch):
    modules, flags, tmp = tencent
    calls_inside = []
    original = modules.inference.HunyuanVideoSampler.from_pretrained.__func__

    def from_pretrained_with_instance_wrapper(cls, *args, **kwargs):
        """Wrap the transformer instance's forward as xDiT's parallelize_transformer and accelerate's
        hooks do, so the test sees whether a reused step still runs what is inside the cache."""
        sampler = original(cls, *args, **kwargs)
        transformer = sampler.pipeline.transformer
        inner = transformer.forward

        def wrapped_forward(*a, **kw):
            calls_inside.append(1)
            return inner(*a, **kw)

        transformer.forward = wrapped_forward
        return sampler

    monkeypatch.setattr(modules.inference.HunyuanVideoSampler, "from_pretrained",
                        classmethod(from_pretrained_with_instance_wrapper))

    assert easycache_sample_video.main(small_job(flags, tmp / "base", "--no-easycache")) == 0
    base_video = only(tmp / "base", "*_seed42_a cat walks on the grass.mp4")
    base_run = json.loads(base_video.with_suffix(".json").read_text())
    assert base_run["backend"] == "tencent"
    assert base_run["summary"]["calls"] == base_run["summary"]["computed"] == 12 == len(calls_inside)

    calls_inside.clear()
    assert easycache_sample_video.main(small_job(flags, tmp / "fast", "--easycache-thresh", "1.5",
                                                 "--easycache-warmup-steps", "3")) == 0
    fast_video = only(tmp / "fast", "*.mp4")
    fast_run = json.loads(fast_video.with_suffix(".json").read_text())
    summary = fast_run["summary"]
    print(f"\nTencent tiny model, thresh 1.5: {summary['computed']}/{summary['calls']} computed")
    assert summary["calls"] == 12 and 0 < summary["reused"]
    assert len(calls_inside) == summary["computed"], "a reused step must not run the wrapped forward"
    records = fast_run["records"]
    assert [r["computed"] for r in records[:3]] == [True] * 3 and records[-1]["computed"]
    assert fast_run["args"]["infer_steps"] == 12 and fast_run["easycache"]["thresh"] == 1.5

    base_frames, fast_frames = iio.imread(base_video), iio.imread(fast_video)
    assert base_frames.shape == fast_frames.shape and base_frames.shape[0] == 5
    assert not np.array_equal(base_frames, fast_frames)


def test_thresh_zero_is_the_baseline_video(tencent):
    _, flags, tmp = tencent
    assert easycache_sample_video.main(small_job(flags, tmp / "a", "--no-easycache")) == 0
    assert easycache_sample_video.main(small_job(flags, tmp / "b", "--easycache-thresh", "0")) == 0
    assert np.array_equal(iio.imread(only(tmp / "a", "*.mp4")), iio.imread(only(tmp / "b", "*.mp4")))


def test_default_threshold_on_the_tiny_model(tencent):
    _, flags, tmp = tencent
    assert easycache_sample_video.main(small_job(flags, tmp / "d")) == 0
    summary = json.loads(only(tmp / "d", "*.json").read_text())["summary"]
    print(f"\nTencent tiny model, default thresh: {summary['computed']}/{summary['calls']} computed")
    assert summary["calls"] == 12 and summary["computed"] >= 6  # 5 warmup steps and the last


def test_missing_weights_is_one_clear_line(tencent, capsys):
    _, _, tmp = tencent
    code = easycache_sample_video.main(["--hunyuan-root", str(ROOT), "--prompt", "a cat",
                                        "--model-base", str(tmp / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "weights were not found" in err[0]


def test_prompt_file_and_seeds_over_two_ranks_resumable(tencent, monkeypatch):
    modules, flags, tmp = tencent
    prompts = tmp / "prompts.txt"
    prompts.write_text("a cat walks on the grass\na dog runs in the park\n")
    predicted = []
    original_predict = modules.inference.HunyuanVideoSampler.predict

    def counting_predict(self, *args, **kwargs):
        predicted.append(kwargs["prompt"])
        return original_predict(self, *args, **kwargs)

    monkeypatch.setattr(modules.inference.HunyuanVideoSampler, "predict", counting_predict)
    job = ["--hunyuan-root", str(ROOT), "--video-size", "32", "32", "--video-length", "5", "--infer-steps", "6",
           "--flow-reverse", "--save-path", str(tmp / "many"), *flags,
           "--prompt-file", str(prompts), "--seeds", "1", "2"]
    for rank in (0, 1):  # what torchrun --nproc_per_node=2 gives each process
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert easycache_sample_video.main(job) == 0
    assert len(predicted) == 4
    videos = sorted(p.name for p in (tmp / "many").glob("*.mp4"))
    assert videos == ["00000_seed1_a cat walks on the grass.mp4", "00001_seed2_a cat walks on the grass.mp4",
                      "00002_seed1_a dog runs in the park.mp4", "00003_seed2_a dog runs in the park.mp4"]
    summary = json.loads((tmp / "many" / "summary.json").read_text())
    assert summary["finished"] == 4 and summary["transformer_calls"] == 24

    (tmp / "many" / videos[2]).unlink()  # as if rank 0 had died before finishing it
    monkeypatch.setenv("RANK", "0")
    assert easycache_sample_video.main(job) == 0
    assert len(predicted) == 5 and predicted[-1] == "a dog runs in the park"
    assert len(list((tmp / "many").glob("*.mp4"))) == 4
