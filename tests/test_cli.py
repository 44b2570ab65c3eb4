"""The front door: every flag an entry parses reaches its config or the run JSON; unset cache flags
leave the model's preset; the run JSON holds the whole config; the summary survives an interrupt."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
from loguru import logger

import easycache_generate
import easycache_sample_video
import hyvideo_svg_easycache
from easycache import EasyCacheConfig, cli
from easycache.runner import Backend, RunOptions, Settings, Video, run
from easycache.sparse import SVGConfig
from needs import WAN_PROMPTS, needs_diffusers

# The entries' own flags, each held by a test named beside it; every other flag is a config field's.
ENTRY_FLAGS = {
    "--help": "test_help_works_anywhere (test_entry_script.py)",
    "--no-easycache": "test_thresh_zero_writes_the_baseline_video and the demo's baseline",
    "--attention": "test_attention.py (each path on every entry, recorded in the run JSON)",
    "--backend": "test_entry_script.py and this file (diffusers, demo)",
    "--hunyuan-root": "test_tencent_integration.py",
    "--prompt-file": "test_svg_entry_honours_every_flag_and_the_prompt_file",
    "--seeds": "test_svg_entry_honours_every_flag_and_the_prompt_file",
    "--ray": "test_ray.py (a local cluster) and test_ray_flags.py",
    "--ray-max-retries": "test_the_ray_flags_reach_the_ray_options (test_ray_flags.py); test_ray.py's retries",
    "--ray-workers": "test_the_ray_flags_reach_the_ray_options; test_ray.py (2 workers)",
    "--ray-cpus-per-worker": "test_the_ray_flags_reach_the_ray_options; test_cpus_per_worker_are_the_worker_s_threads",
}


def non_default(field: dataclasses.Field, tmp_path) -> object:
    """A valid value other than the field's default, found from the field alone (so a new knob is
    tested here without a change to this file)."""
    choices, default = field.metadata.get("choices"), field.default
    if choices:
        return next(c for c in choices if c != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, float):
        return default / 2
    if isinstance(default, int):
        return max(1, default // 2) if default > 1 else default + 1
    if isinstance(default, str):
        return str(tmp_path / field.name)
    return 2  # an optional count, off by default


def flags_for(config_cls: type, naming: str, tmp_path) -> tuple[list[str], dict]:
    """Command-line tokens setting every flag of ``config_cls`` to a non-default value, and the values."""
    tokens, values = [], {}
    for field in cli.cli_fields(config_cls):
        value = values[field.name] = non_default(field, tmp_path)
        flag = cli.flag_of(field, naming)
        if isinstance(value, bool):
            tokens.append(flag if value else "--no-" + flag[2:])
        else:
            tokens += [flag, str(value)]
    return tokens, values


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


@pytest.mark.parametrize("entry", [easycache_sample_video, hyvideo_svg_easycache, easycache_generate])
def test_every_flag_an_entry_parses_is_a_config_field_or_an_entry_flag_with_its_test(entry):
    parser = entry.build_parser()
    from_configs = {cli.flag_of(f, cli.EASYCACHE_FLAG) for f in cli.cli_fields(EasyCacheConfig)}
    if entry is hyvideo_svg_easycache:
        from_configs |= {cli.flag_of(f, cli.SVG_FLAG) for f in cli.cli_fields(SVGConfig)}
        from_configs |= {alias for f in cli.cli_fields(SVGConfig) for alias in f.metadata["aliases"]}
    entry_flags = set(ENTRY_FLAGS) - ({"--backend"} if entry is easycache_generate else set())  # fixed: hunyuan15
    flags = {f for f in option_strings(parser) if not f.startswith("--no-") or f == "--no-easycache"}
    assert flags == from_configs | entry_flags


def test_unset_cache_flags_are_unset():
    ours, _ = easycache_sample_video.build_parser().parse_known_args(["--prompt", "x"])
    assert cli.given_fields(ours, EasyCacheConfig) == {}


def test_every_cache_flag_reaches_the_run_json_on_the_demo(tmp_path):
    tokens, values = flags_for(EasyCacheConfig, cli.EASYCACHE_FLAG, tmp_path)
    assert easycache_sample_video.main(["--model", "demo", "--prompt", "a red circle moving left", "--seed", "0",
                                        "--infer-steps", "12", "--save-path", str(tmp_path), *tokens]) == 0
    (run_json,) = tmp_path.glob("*_easycache.json")
    recorded = json.loads(run_json.read_text())["easycache"]
    assert set(recorded) >= {f.name for f in dataclasses.fields(EasyCacheConfig)} - {"process_group"}
    assert {name: recorded[name] for name in values} == values
    assert recorded["num_steps"] == 12 and recorded["enabled"]


@needs_diffusers("dispatch_attention_fn", "SVG on diffusers' HunyuanVideo")
def test_svg_entry_honours_every_flag_and_the_prompt_file(tiny_model_dir, tmp_path):
    """hyvideo_svg_easycache.py once listed --easycache-max-reuse, --easycache-extrapolate,
    --prompt-file and --seeds and ignored them (--prompt-file alone failed with "no prompt")."""
    cache_tokens, cache_values = flags_for(EasyCacheConfig, cli.EASYCACHE_FLAG, tmp_path)
    svg_tokens, svg_values = flags_for(SVGConfig, cli.SVG_FLAG, tmp_path)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat walks on the grass\na dog runs in the sky\n")
    save = tmp_path / "videos"
    code = hyvideo_svg_easycache.main([
        "--backend", "diffusers", "--model", str(tiny_model_dir), "--prompt-file", str(prompts), "--seeds", "3", "4",
        "--video-size", "16", "16", "--video-length", "9", "--infer-steps", "6", "--precision", "fp32",
        "--vae-precision", "fp32", "--save-path", str(save), *cache_tokens, *svg_tokens])
    assert code == 0
    runs = sorted(save.glob("0000*.json"))
    assert [r.stem for r in runs] == ["00000_seed3_a cat walks on the grass", "00001_seed4_a cat walks on the grass",
                                      "00002_seed3_a dog runs in the sky", "00003_seed4_a dog runs in the sky"]
    for path in runs:
        record = json.loads(path.read_text())
        assert {name: record["easycache"][name] for name in cache_values} == cache_values
        assert {name: record["svg"][name] for name in svg_values} == svg_values
        assert record["svg"]["attention_calls"] > 0
    assert list((tmp_path / "output_path").glob("svg_attention_*.jsonl")), "--record_attention wrote its records"


@needs_diffusers("WanPipeline", "the tiny Wan 2.1 pipeline")
@WAN_PROMPTS
def test_a_pipeline_gets_its_preset_when_no_cache_flag_is_given(tmp_path):
    """--backend diffusers on Wan 2.1 once ran at 0.025/5 instead of its preset 0.05/10."""
    from tiny_models import tiny_wan_pipeline

    folder = tmp_path / "tiny-wan"
    tiny_wan_pipeline().save_pretrained(folder)
    job = ["--backend", "diffusers", "--model", str(folder), "--prompt", "a cat walks on the grass",
           "--video-size", "16", "16", "--video-length", "5", "--infer-steps", "4", "--precision", "fp32",
           "--vae-precision", "fp32", "--seed", "0"]
    assert easycache_sample_video.main([*job, "--save-path", str(tmp_path / "preset")]) == 0
    assert easycache_sample_video.main([*job, "--easycache-thresh", "0.1", "--save-path", str(tmp_path / "mixed")]) == 0
    preset = json.loads(next((tmp_path / "preset").glob("*.json")).read_text())["easycache"]
    mixed = json.loads(next((tmp_path / "mixed").glob("*.json")).read_text())["easycache"]
    assert (preset["thresh"], preset["warmup_steps"]) == (0.05, 10) and "Wan2.1" in preset["source"]
    assert (mixed["thresh"], mixed["warmup_steps"]) == (0.1, 10), "a given flag overrides only its own field"


def test_a_bad_value_is_one_line_naming_its_flag(capsys):
    assert hyvideo_svg_easycache.main(["--easycache-warmup-steps", "-1", "--prompt", "a cat"]) == 2
    assert easycache_sample_video.main(["--easycache-max-reuse", "0", "--model", "demo", "--prompt", "a"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: --easycache-warmup-steps -1:") and lines[1].startswith("error: --easycache-max-reuse 0:")


class CountingDenoiser(torch.nn.Module):
    def forward(self, x, timestep):
        return 0.9 * x


class InterruptedBackend(Backend):
    """A backend in a dozen lines: a toy denoiser, ten steps, a Ctrl-C on step 6 of the second video."""

    name = "toy"

    def parse(self, argv, need_prompt):
        return argparse.Namespace(), Settings(save_dir=self.save_dir, prompt="a", seed=0, steps=10)

    def load(self, args):
        return CountingDenoiser()

    def sample(self, model, args, prompt, seed, num_videos):
        x = torch.ones(1, 3, 2, 2)
        for step in range(10):
            if prompt == "second" and step == 6:
                raise KeyboardInterrupt
            x = x - 0.1 * model(x, torch.tensor(1000.0 - 100 * step))
        return [Video(x.clamp(0, 1).permute(0, 2, 3, 1).numpy(), seed)]  # one frame, (T, H, W, 3)


def test_the_cache_summary_is_logged_when_a_run_is_interrupted(tmp_path):
    backend = InterruptedBackend()
    backend.save_dir = tmp_path
    messages = []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    try:
        with pytest.raises(KeyboardInterrupt):
            run(backend, [], RunOptions(prompts=["first", "second"]))
    finally:
        logger.remove(sink)
    total = [m for m in messages if "EasyCache over this run" in m]
    assert len(total) == 1 and "1 videos" in total[0] and "/16 transformer calls" in total[0]
    assert "stopped during a generation, its 6 calls so far included" in total[0]
    assert len(list(tmp_path.glob("*.mp4"))) == 1, "the finished video is kept"


@needs_diffusers("WanTransformer3DModel", "the Wan demo (demo-wan)")
def test_demo_wan_runs_its_guidance_and_its_preset_and_can_turn_guidance_off(tmp_path, capsys):
    """--model demo-wan: the demo backend (no --backend needed), Wan 2.1's preset, two calls a step
    at its trained guidance; --cfg-scale 1 turns guidance off (one call a step). A model the demo
    backend does not have is one line."""
    job = ["--model", "demo-wan", "--prompt", "a red circle moving left", "--seed", "0", "--infer-steps", "12"]
    assert easycache_sample_video.main([*job, "--save-path", str(tmp_path / "cfg")]) == 0
    assert easycache_sample_video.main([*job, "--cfg-scale", "1", "--save-path", str(tmp_path / "plain")]) == 0
    guided = json.loads(next((tmp_path / "cfg").glob("*_easycache.json")).read_text())
    plain = json.loads(next((tmp_path / "plain").glob("*_easycache.json")).read_text())
    assert (guided["easycache"]["thresh"], guided["easycache"]["warmup_steps"]) == (0.05, 10)
    assert len(guided["records"]) == 24 and {r["branch"] for r in guided["records"]} == {"cond", "uncond"}
    assert len(plain["records"]) == 12
    assert easycache_sample_video.main(["--backend", "demo", "--model", "demo-hunyuan", "--prompt", "a"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --model demo-hunyuan:") and "demo-wan" in line
