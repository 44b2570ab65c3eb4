"""easycache_generate.py against a real HunyuanVideo-1.5 checkout, on CPU.

Set HYVIDEO15_ROOT to a checkout (git clone https://github.com/Tencent-Hunyuan/HunyuanVideo-1.5).
Tiny random checkpoints are written in its own ``--model_path`` layout; only what is CUDA-only there
is shimmed (tests/hunyuan15_tiny.py says exactly what). Skipped, with its reason, without the
variable. The first test needs no checkout: ``--help`` and a bad EasyCache flag, in a subprocess
without a GPU.

Not covered on CPU: ``--group_offloading`` (diffusers' group offload onto CUDA streams), torchrun
sequence parallelism (NCCL) and the SR stage's run; a wrapper placed where they sit (on the
transformer instance, after generate.py's optimizations) stands in for them.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a cat walks on the grass"


def run_entry(*args, cwd):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "easycache_generate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_and_a_bad_flag_without_gpu_or_checkout(tmp_path):
    shown = run_entry("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "--easycache-thresh" in shown.stdout and "--no-easycache" in shown.stdout
    assert "HunyuanVideo-1.5's own flags (generate.py) are listed here when its checkout is found" in shown.stdout
    bad = run_entry("--easycache-thresh", "-1", "--prompt", "x", cwd=tmp_path)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "--easycache-thresh" in lines[0], bad.stderr
    no_checkout = run_entry("--prompt", "x", "--resolution", "480p", "--model_path", ".", cwd=tmp_path)
    lines = no_checkout.stderr.strip().splitlines()
    assert no_checkout.returncode == 2 and len(lines) == 1 and "--hunyuan-root" in lines[0], no_checkout.stderr


# ---------------------------------------------------------------------------- with the checkout
from hunyuan15_tiny import (  # noqa: E402
    enable_cpu_shims, hyvideo15_root_or_skip_reason, single_process_env, tiny_flags, write_reference_image,
    write_tiny_checkpoints,
)

ROOT, SKIP_REASON = hyvideo15_root_or_skip_reason()
needs_checkout = pytest.mark.skipif(ROOT is None, reason=f"HunyuanVideo-1.5 integration: {SKIP_REASON}")


@pytest.fixture(scope="module")
def hy15(tmp_path_factory):
    """The checkout importable on CPU, tiny weights, a reference image: (modules, flags, folder).
    Skipped, with its reason, without a checkout."""
    if ROOT is None:
        pytest.skip(f"HunyuanVideo-1.5 integration: {SKIP_REASON}")
    folder = tmp_path_factory.mktemp("hunyuan15")
    env = single_process_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with enable_cpu_shims(ROOT) as modules:
            model_path = write_tiny_checkpoints(folder / "ckpts")
            modules.image = write_reference_image(folder / "ref.png")
            yield modules, ["--hunyuan-root", str(ROOT), *tiny_flags(model_path)], folder
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def inside(hy15, monkeypatch):
    """Count the calls that reach a wrapper placed on the transformer instance after generate.py's
    optimizations, where group offloading's hooks and FP8/compiled blocks sit (sequence parallelism
    is inside its forward): a reused step must not reach it."""
    modules, _, _ = hy15
    pipeline_class = modules.pipeline.HunyuanVideo_1_5_Pipeline
    original = pipeline_class.apply_infer_optimization
    seen = []

    def apply_and_wrap(self, *args, **kwargs):
        original(self, *args, **kwargs)
        inner = self.transformer.forward

        def wrapped(hidden_states, *a, **kw):
            out = inner(hidden_states, *a, **kw)
            seen.append((tuple(hidden_states.shape), tuple(out[0].shape)))
            return out

        self.transformer.forward = wrapped

    monkeypatch.setattr(pipeline_class, "apply_infer_optimization", apply_and_wrap)
    return seen


def generate(hy15, out, *extra, steps=12):
    import easycache_generate

    _, flags, folder = hy15
    code = easycache_generate.main([*flags, "--prompt", PROMPT, "--seed", "1", "--num_inference_steps", str(steps),
                                    "--output_path", str(folder / out), *extra])
    assert code == 0
    video = folder / out
    return video, json.loads(video.with_suffix(".json").read_text())


def one_decision_per_step(run, steps):
    assert run["summary"]["calls"] == steps == len(run["records"])
    assert [r["step"] for r in run["records"]] == list(range(steps))


@needs_checkout
def test_threshold_zero_is_the_uncached_video_with_generate_py_outputs(hy15):
    base, base_run = generate(hy15, "base.mp4", "--cfg_distilled", "--no-easycache")
    zero, zero_run = generate(hy15, "zero.mp4", "--cfg_distilled", "--easycache-thresh", "0")
    assert np.array_equal(iio.imread(base), iio.imread(zero))
    for run in (base_run, zero_run):
        one_decision_per_step(run, 12)  # cfg-distilled: one call (batch 1) per step
        assert run["summary"]["computed"] == 12 and run["backend"] == "hunyuan15"
    assert "not tuned" in zero_run["easycache"]["source"]
    assert zero_run["hunyuan15"] == {"transformer_version": "480p_t2v_distilled", "task": "t2v", "sr": False,
                                     "sr_cached": False}
    config = json.loads(base.with_name("base_config.json").read_text())  # generate.py's own
    assert config["transformer_version"] == "480p_t2v_distilled" and config["arguments"]["prompt"] == PROMPT


@needs_checkout
def test_cfg_one_decision_per_step_and_reused_steps_skip_what_is_inside(hy15, inside):
    video, run = generate(hy15, "cfg.mp4", "--easycache-thresh", "1.5", "--easycache-warmup-steps", "3")
    summary = run["summary"]
    print(f"\nHunyuanVideo-1.5 tiny T2V with CFG, thresh 1.5: {summary['computed']}/{summary['calls']} computed")
    one_decision_per_step(run, 12)  # CFG: one call per step, the batch doubled
    assert summary["reused"] > 0 and len(inside) == summary["computed"]
    assert all(shape[0] == 2 for shape, _ in inside)
    records = run["records"]
    assert all(r["computed"] for r in records[:3]) and records[-1]["computed"]
    assert iio.imread(video).shape[0] == 1


@needs_checkout
def test_i2v_rule_uses_the_predicted_channels(hy15, inside):
    modules, _, _ = hy15
    video, run = generate(hy15, "i2v.mp4", "--cfg_distilled", "--image_path", str(modules.image),
                          "--easycache-thresh", "1.5", "--easycache-warmup-steps", "3")
    summary = run["summary"]
    print(f"\nHunyuanVideo-1.5 tiny I2V, thresh 1.5: {summary['computed']}/{summary['calls']} computed")
    one_decision_per_step(run, 12)
    assert run["hunyuan15"]["task"] == "i2v" and summary["reused"] > 0 and len(inside) == summary["computed"]
    (in_shape, out_shape), = set(inside)
    assert in_shape[1] == 2 * out_shape[1] + 1 and in_shape[2:] == out_shape[2:]  # [latents, cond, mask] -> latents


@needs_checkout
def test_step_distilled_is_refused_with_easycache(hy15, capsys):
    import easycache
    import easycache_generate
    from easycache.backends import hunyuan15

    modules, flags, folder = hy15
    distilled = [*flags, "--prompt", PROMPT, "--enable_step_distill", "--image_path", str(modules.image),
                 "--num_inference_steps", "8", "--output_path", str(folder / "step.mp4")]
    assert easycache_generate.main(distilled) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--enable_step_distill" in err[0] and "--no-easycache" in err[0]
    assert easycache_generate.main([*distilled, "--no-easycache"]) == 0
    assert json.loads((folder / "step.json").read_text())["summary"]["computed"] == 8

    # The premise, measured: the rule at its defaults would reuse none of the 8 steps.
    backend = hunyuan15.Hunyuan15Backend(hunyuan_root=str(ROOT))
    backend.easycache_enabled = False  # as under --no-easycache: parse lets the step-distilled model through
    args, _ = backend.parse(distilled[2:], need_prompt=True)
    model = backend.load(args)
    cache = easycache.apply_easycache(model)
    try:
        backend.sample(model, args, PROMPT, 1, 1)
        assert cache.config.thresh == 0.025 and cache.summary()["calls"] == 8 and cache.summary()["reused"] == 0
    finally:
        easycache.remove_easycache(model)


@needs_checkout
def test_one_line_errors(hy15, capsys):
    import easycache_generate

    _, flags, folder = hy15
    for extra, expected in ((["--enable_cache"], "--enable_cache"), (["--model_path", str(folder / "none")],
                                                                      "weights were not found"),
                            (["--resolution", "1080p"], "invalid choice")):
        assert easycache_generate.main([*flags, "--prompt", PROMPT, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


@needs_checkout
def test_prompt_file_and_seeds(hy15):
    import easycache_generate

    _, flags, folder = hy15
    prompts = folder / "prompts.txt"
    prompts.write_text("a cat walks on the grass\na dog runs in the park\n")
    many = folder / "many"
    code = easycache_generate.main([*flags, "--cfg_distilled", "--num_inference_steps", "4", "--output_path",
                                    str(many / "ignored.mp4"), "--prompt-file", str(prompts), "--seeds", "7"])
    assert code == 0
    videos = sorted(p.name for p in many.glob("*.mp4"))
    assert videos == ["00000_seed7_a cat walks on the grass.mp4", "00001_seed7_a dog runs in the park.mp4"]
    for name in videos:
        stem = name[:-4]
        assert json.loads((many / f"{stem}.json").read_text())["summary"]["calls"] == 4
        assert json.loads((many / f"{stem}_config.json").read_text())["arguments"]["seed"] == 7


@needs_checkout
def test_default_output_name_is_generate_py_s(hy15, monkeypatch):
    import easycache_generate

    _, flags, folder = hy15
    monkeypatch.chdir(folder)
    assert easycache_generate.main([*flags, "--prompt", PROMPT, "--cfg_distilled", "--num_inference_steps", "2"]) == 0
    video, = (folder / "outputs").glob("output_480p_t2v_distilled_*.mp4")
    assert video.with_suffix(".json").is_file() and video.with_name(f"{video.stem}_config.json").is_file()


# ---------------------------------------------------------------------------- what generate.py writes, kept
QUICK = ["--prompt", PROMPT, "--seed", "1", "--cfg_distilled", "--num_inference_steps", "2"]


def run_generate_py(hy15, *extra) -> None:
    """Tencent's own generate_video() (generate.py's, read from the checkout) on the tiny weights."""
    from easycache.backends.hunyuan15 import GenerateScript

    _, flags, _ = hy15
    script = GenerateScript(ROOT)
    args = script.parser().parse_args([*flags[2:], *QUICK, *extra])  # flags[:2]: --hunyuan-root, ours
    script.normalize(args)
    script.run_import_time_setup()
    script.module()["generate_video"](args)


def saved_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("Saved ")]


def without_time(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "timestamp"}


@needs_checkout
def test_a_named_output_path_is_written_and_recorded_as_generate_py_does(hy15, tmp_path, monkeypatch, capsys):
    """--output_path ./outputs/cat.mp4 over an existing file: generate.py writes that path (the
    user named it); so does the drop-in, recording output_path as given and printing generate.py's
    own lines; its _config.json is generate.py's but for the time it was written."""
    import easycache_generate

    _, flags, _ = hy15
    for side in ("tencent", "easycache"):
        (tmp_path / side / "outputs").mkdir(parents=True)
        (tmp_path / side / "outputs" / "cat.mp4").write_bytes(b"an earlier video at the path named again")
    monkeypatch.chdir(tmp_path / "tencent")
    run_generate_py(hy15, "--output_path", "./outputs/cat.mp4")
    tencent_out = capsys.readouterr().out
    monkeypatch.chdir(tmp_path / "easycache")
    assert easycache_generate.main([*flags, *QUICK, "--no-easycache", "--output_path", "./outputs/cat.mp4"]) == 0
    ours_out = capsys.readouterr().out
    outputs = {side: tmp_path / side / "outputs" for side in ("tencent", "easycache")}
    assert sorted(p.name for p in outputs["tencent"].iterdir()) == ["cat.mp4", "cat_config.json"]
    assert sorted(p.name for p in outputs["easycache"].iterdir()) == ["cat.json", "cat.mp4", "cat_config.json"], \
        "the named path replaced, no cat_2.mp4"
    assert (outputs["easycache"] / "cat.mp4").read_bytes() == (outputs["tencent"] / "cat.mp4").read_bytes()
    assert saved_lines(ours_out) == saved_lines(tencent_out) == [
        "Saved video to: ./outputs/cat.mp4", "Saved generation config to: ./outputs/cat_config.json"]
    configs = {side: json.loads((outputs[side] / "cat_config.json").read_text()) for side in outputs}
    assert without_time(configs["easycache"]) == without_time(configs["tencent"])
    assert configs["easycache"]["output_path"] == configs["easycache"]["arguments"]["output_path"] == "./outputs/cat.mp4"


@needs_checkout
def test_without_output_path_the_config_and_lines_are_generate_py_s(hy15, tmp_path, monkeypatch, capsys):
    """No --output_path: generate.py records output_path as it names it (./outputs/output_..._TIME.mp4)
    and arguments.output_path null; a name taken in the same second gets _2 (no one named it)."""
    import easycache_generate

    _, flags, _ = hy15
    (tmp_path / "tencent").mkdir()
    monkeypatch.chdir(tmp_path / "tencent")
    run_generate_py(hy15)
    tencent_out = capsys.readouterr().out
    (tencent_config,) = (tmp_path / "tencent" / "outputs").glob("*_config.json")
    tencent = json.loads(tencent_config.read_text())
    (tmp_path / "easycache").mkdir()
    monkeypatch.chdir(tmp_path / "easycache")
    assert easycache_generate.main([*flags, *QUICK, "--no-easycache"]) == 0
    ours_out = capsys.readouterr().out
    (config_path,) = (tmp_path / "easycache" / "outputs").glob("*_config.json")
    ours = json.loads(config_path.read_text())
    assert ours["arguments"]["output_path"] is None and tencent["arguments"]["output_path"] is None
    assert ours["arguments"] == tencent["arguments"]
    pattern = r"\./outputs/output_480p_t2v_distilled_\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.mp4"
    assert re.fullmatch(pattern, ours["output_path"]) and re.fullmatch(pattern, tencent["output_path"])
    video = ours["output_path"]
    assert saved_lines(ours_out) == [f"Saved video to: {video}",
                                     f"Saved generation config to: {video[:-4]}_config.json"]
    assert [line.split(": ")[0] for line in saved_lines(tencent_out)] == ["Saved video to", "Saved generation config to"]

    # The same second again (the clock held): the earlier video is kept, the new one numbered.
    from easycache.backends import hunyuan15

    monkeypatch.setattr(hunyuan15.GenerateScript, "default_output_path", lambda self, version: video)
    assert easycache_generate.main([*flags, *QUICK, "--no-easycache"]) == 0
    numbered = f"{video[:-4]}_2.mp4"
    assert saved_lines(capsys.readouterr().out)[0] == f"Saved video to: {numbered}"
    second = json.loads((tmp_path / "easycache" / f"{numbered[:-4]}_config.json").read_text())
    assert second["output_path"] == numbered and second["arguments"]["output_path"] is None
    assert (tmp_path / "easycache" / video).is_file() and not list((tmp_path / "easycache" / "outputs").glob("*.lock"))


@needs_checkout
def test_a_batch_stopped_while_writing_its_config_makes_the_job_again(hy15, tmp_path, monkeypatch):
    """In a batch the video marks its job finished, so generate.py's _config.json is written before
    it: a Ctrl-C while the config is written makes the rerun redo the job, never skip it without one."""
    import easycache_generate

    _, flags, _ = hy15
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\n")
    job = [*flags, "--cfg_distilled", "--num_inference_steps", "2", "--output_path", str(tmp_path / "v" / "x.mp4"),
           "--prompt-file", str(prompts), "--seeds", "3"]
    dump = json.dump

    def interrupted(*args, **kwargs):  # save_config's json.dump, the first time
        monkeypatch.setattr(json, "dump", dump)
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", interrupted)
    assert easycache_generate.main(job) == 130
    stem = f"00000_seed3_{PROMPT}"
    assert not (tmp_path / "v" / f"{stem}.mp4").exists()
    assert easycache_generate.main(job) == 0
    assert json.loads((tmp_path / "v" / f"{stem}_config.json").read_text())["arguments"]["seed"] == 3
    assert (tmp_path / "v" / f"{stem}.mp4").is_file() and (tmp_path / "v" / f"{stem}.json").is_file()


# ---------------------------------------------------------------------------- what --output_path may replace
@pytest.fixture()
def loads(monkeypatch):
    """The times the drop-in loaded the model (a refusal must come before any)."""
    from easycache.backends import hunyuan15

    seen, load = [], hunyuan15.Hunyuan15Backend.load

    def counted(self, args):
        seen.append(args.output_path)
        return load(self, args)

    monkeypatch.setattr(hunyuan15.Hunyuan15Backend, "load", counted)
    return seen


@needs_checkout
@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_output_path_that_cannot_be_a_video_is_refused_before_loading(hy15, tmp_path, capsys, loads, where):
    """--output_path naming a folder (generate.py samples for minutes, then fails on it, leaving its
    _config.json without a video), or a path under a file: one line naming --output_path, no load,
    nothing written."""
    import easycache_generate

    _, flags, _ = hy15
    if where == "a folder":
        target, expected = tmp_path / "cat.mp4", "is a folder"
        target.mkdir()
    else:
        (tmp_path / "notes").write_text("the user's notes")
        target, expected = tmp_path / "notes" / "sub" / "cat.mp4", f"{tmp_path / 'notes'} is a file, not a folder"
    before = sorted(tmp_path.rglob("*"))
    code = easycache_generate.main([*flags, *QUICK, "--output_path", str(target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: --output_path {target}") and expected in err[0], err
    assert not loads and sorted(tmp_path.rglob("*")) == before


@needs_checkout
def test_the_run_json_beside_a_named_path_replaces_only_a_run_json_of_ours(hy15, tmp_path, monkeypatch, capsys, loads):
    """--output_path ./outputs/cat.mp4 with the user's outputs/cat.json beside it (generate.py writes
    no cat.json): refused before loading, in one line naming --output_path and the file; the file
    kept. A run JSON an earlier run wrote there is replaced, as the video is."""
    import easycache_generate
    from easycache.backends import hunyuan15

    _, flags, _ = hy15
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    users = tmp_path / "outputs" / "cat.json"
    users.write_text('{"label": "a cat, by hand"}')
    command = [*flags, *QUICK, "--no-easycache", "--output_path", "./outputs/cat.mp4"]
    assert easycache_generate.main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --output_path ./outputs/cat.mp4: outputs/cat.json is there"), err
    assert "move it, or name another --output_path" in err[0]
    assert not loads and users.read_text() == '{"label": "a cat, by hand"}'
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["cat.json"]

    backend = hunyuan15.Hunyuan15Backend(hunyuan_root=str(ROOT))  # a batch names its files by job: no refusal
    backend.batch = True
    backend.parse([a for a in command[2:] if a != "--no-easycache"], need_prompt=True)

    users.unlink()
    assert easycache_generate.main(command) == 0
    first = json.loads(users.read_text())
    assert easycache_generate.main(command) == 0, capsys.readouterr().err
    second = json.loads(users.read_text())
    assert first["video"] == second["video"] == "outputs/cat.mp4" and second["end_to_end_seconds"] != first["end_to_end_seconds"]
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["cat.json", "cat.mp4", "cat_config.json"]


@needs_checkout
def test_without_output_path_a_config_of_the_default_name_is_kept(hy15, tmp_path, monkeypatch, capsys):
    """No --output_path, and a _config.json of the default name there without its video (one
    second's name): the name is taken, the video numbered, the earlier config kept."""
    import easycache_generate
    from easycache.backends import hunyuan15

    _, flags, _ = hy15
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hunyuan15.GenerateScript, "default_output_path", lambda self, version: "./outputs/out.mp4")
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "out_config.json").write_text('{"an earlier": "config"}')
    assert easycache_generate.main([*flags, *QUICK, "--no-easycache"]) == 0
    assert saved_lines(capsys.readouterr().out)[0] == "Saved video to: ./outputs/out_2.mp4"
    assert (tmp_path / "outputs" / "out_config.json").read_text() == '{"an earlier": "config"}'
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [
        "out_2.json", "out_2.mp4", "out_2_config.json", "out_config.json"]
