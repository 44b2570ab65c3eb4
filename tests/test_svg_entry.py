"""Sparse attention + EasyCache end to end: the tiny diffusers pipeline (always) and Tencent's code
through hyvideo_svg_easycache.py (when HYVIDEO_ROOT names a checkout)."""

import json
import shlex
from pathlib import Path

import pytest
import torch

import easycache
import hyvideo_svg_easycache
from easycache import EasyCacheConfig, cli
from easycache.sparse import SVGConfig, apply_svg, remove_svg
from easycache.testing.tiny_hunyuan import generate
from needs import needs_diffusers

SVG_ON_DIFFUSERS = needs_diffusers("dispatch_attention_fn", "SVG on diffusers' HunyuanVideo")

STEPS = 8
BLOCKS = 2  # tiny_transformer: one double-stream and one single-stream block


@pytest.fixture(scope="module")
def baseline(tiny_pipe):
    return generate(tiny_pipe, steps=STEPS)


def run(tiny_pipe, svg_config, cache_config=None):
    svg = apply_svg(tiny_pipe, svg_config)
    cache = easycache.apply_easycache(tiny_pipe, cache_config) if cache_config else None
    try:
        return generate(tiny_pipe, steps=STEPS), svg, cache
    finally:
        if cache is not None:
            easycache.remove_easycache(tiny_pipe)
        remove_svg(tiny_pipe)


@SVG_ON_DIFFUSERS
def test_dense_pattern_is_the_model_itself(tiny_pipe, baseline):
    video, svg, _ = run(tiny_pipe, SVGConfig(pattern="dense"))
    assert torch.equal(video, baseline)
    assert svg.attention_calls == STEPS * BLOCKS and svg.sparse_calls == 0


@SVG_ON_DIFFUSERS
def test_svg_with_easycache_runs_no_attention_on_skipped_steps(tiny_pipe, baseline, tmp_path):
    records = tmp_path / "attention.jsonl"
    config = SVGConfig(sparsity=0.3, num_sampled_rows=4, first_times_fp=0.0, first_layers_fp=0.0,
                       record_attention=True, output_path=str(records))
    video, svg, cache = run(tiny_pipe, config, EasyCacheConfig(thresh=0.5, warmup_steps=2))
    summary = cache.summary()
    assert summary["calls"] == STEPS and 0 < summary["reused"]
    assert svg.attention_calls == summary["computed"] * BLOCKS == svg.sparse_calls
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == svg.sparse_calls
    computed_steps = {r.step for r in cache.records if r.computed}
    assert {line["step"] for line in lines} == computed_steps
    assert all(len(line["heads"][0]) == 2 and set(line["heads"][0]) <= {"spatial", "temporal"} for line in lines)
    assert video.shape == baseline.shape and torch.isfinite(video).all()
    assert not torch.equal(video, baseline)


@SVG_ON_DIFFUSERS
def test_svg_gating_keeps_the_first_steps_and_blocks_dense(tiny_pipe):
    # flow shift 7, 8 steps: timesteps 1000, 992, 981, ... ; 0.05 keeps t > 950 dense
    _, svg, _ = run(tiny_pipe, SVGConfig(first_times_fp=0.05, first_layers_fp=1 / 42 + 1e-6, num_sampled_rows=4))
    modes = {(r["step"], r["block"], r["layer"]): r["mode"] for r in svg.records}
    assert len(modes) == STEPS * BLOCKS
    assert all(mode == "dense" for mode in modes.values())  # tiny: every block has index 0 < 42 * fp
    _, svg, _ = run(tiny_pipe, SVGConfig(first_times_fp=0.05, first_layers_fp=0.0, num_sampled_rows=4))
    dense_steps = sorted({r["step"] for r in svg.records if r["mode"] == "dense"})
    assert dense_steps and dense_steps == list(range(len(dense_steps))) and len(dense_steps) < STEPS
    assert all(r["timestep"] > 950 for r in svg.records if r["mode"] == "dense")


SEED_COMMAND = (
    '--video-size 720 1280 --video-length 129 --infer-steps 50 --prompt "A cat walks on the grass, realistic '
    'style." --embedded-cfg-scale 6.0 --flow-shift 7.0 --flow-reverse --use-cpu-offload --save-path ./results '
    '--output_path ./results --pattern "SVG" --num_sampled_rows 64 --sparsity 0.2 --first_times_fp 0.055 '
    '--first_layers_fp 0.025 --record_attention --seed 42'
)


def test_seed_command_line_parses():
    ours, rest = hyvideo_svg_easycache.build_parser().parse_known_args(shlex.split(SEED_COMMAND))
    (step,) = hyvideo_svg_easycache.sparse_attention(ours)
    config = step.config
    assert (config.pattern, config.num_sampled_rows, config.sparsity) == ("SVG", 64, 0.2)
    assert (config.first_times_fp, config.first_layers_fp) == (0.055, 0.025)
    assert config.record_file().parent == Path("./results")
    assert cli.given_fields(ours, EasyCacheConfig) == {} and "--output_path" not in rest and "--video-size" in rest


def test_bad_svg_flag_is_one_clear_line(capsys):
    assert hyvideo_svg_easycache.main(["--sparsity", "0", "--prompt", "a cat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sparsity" in err[0]


# ----------------------------------------------------------------------------- Tencent's code
TENCENT_BLOCKS = 4  # tencent_tiny: 2 double + 2 single blocks


def tencent_job(root, flags, steps, *extra):
    return ["--hunyuan-root", str(root), "--video-size", "32", "32", "--video-length", "5", "--infer-steps",
            str(steps), "--prompt", "a cat walks on the grass", "--flow-reverse", "--seed", "42", *flags, *extra]


def test_tencent_svg_and_easycache_through_the_entry(tencent):
    modules, flags, tmp_path = tencent
    argv = tencent_job(modules.root, flags, 10, "--flow-shift", "7.0", "--embedded-cfg-scale", "6.0",
                       "--save-path", str(tmp_path / "out"), "--output_path", str(tmp_path / "records"),
                       "--pattern", "SVG", "--num_sampled_rows", "4", "--sparsity", "0.5", "--first_times_fp",
                       "0.055", "--first_layers_fp", "0", "--record_attention", "--easycache-thresh", "1.5",
                       "--easycache-warmup-steps", "3", "--attention-backend", "sdpa")
    assert hyvideo_svg_easycache.main(argv) == 0
    video = next((tmp_path / "out").glob("*.mp4"))
    run = json.loads(video.with_suffix(".json").read_text())
    svg, summary = run["svg"], run["summary"]
    assert 0 < summary["reused"] and svg["attention_calls"] == summary["computed"] * TENCENT_BLOCKS
    assert 0 < svg["sparse_calls"] < svg["attention_calls"]  # the noisiest steps (t > 945) stay dense
    lines = [json.loads(x) for x in next((tmp_path / "records").glob("*.jsonl")).read_text().splitlines()]
    assert len(lines) == svg["attention_calls"]
    assert all((line["mode"] == "dense") == (line["timestep"] > 945) for line in lines)
    assert {line["block"] for line in lines if line["mode"] == "sparse"} == {"double", "single"}
    assert {line["step"] for line in lines} == {r["step"] for r in run["records"] if r["computed"]}


def test_tencent_dense_pattern_is_hunyuanvideo_itself(tencent):
    import imageio.v3 as iio
    import numpy as np

    import easycache_sample_video

    modules, flags, tmp_path = tencent
    job = tencent_job(modules.root, flags, 4, "--no-easycache")
    assert easycache_sample_video.main([*job, "--save-path", str(tmp_path / "plain")]) == 0
    assert hyvideo_svg_easycache.main([*job, "--save-path", str(tmp_path / "dense"), "--pattern", "dense"]) == 0
    plain, dense = (next((tmp_path / d).glob("*.mp4")) for d in ("plain", "dense"))
    assert np.array_equal(iio.imread(plain), iio.imread(dense))
    assert json.loads(dense.with_suffix(".json").read_text())["svg"]["attention_calls"] == 4 * TENCENT_BLOCKS
