"""The benchmark command, run as a real subprocess on a tiny pipeline: every method gets a row (a
result or its reason); every mistake known before the model loads is refused first, in one line,
exit 2, touching nothing; results never overwrite earlier ones unless --overwrite; a speedup above
calls / computed is flagged.

The subprocesses run concurrently (one intra-op thread each: a tiny model is several times faster
so), each refusal in a folder of its own, so the whole file stays within about 30 s on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import run_bench  # bench/ is on pytest's pythonpath (pytest.ini); importing it loads no torch
from report import write_table
from easycache.versions import DIFFUSERS_FLOORS, at_least

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "run_bench.py"
TINY = ["--dtype", "float32", "--prompt-file", "prompts.txt", "--height", "16", "--width", "16", "--frames", "9"]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # permissions do not stop root


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and a hash of its bytes; folders as 'dir'."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_all(commands: dict[str, tuple[list[str], Path]], parallel: int = 4, timeout: float = 300) -> dict[str, dict]:
    """Run ``{name: (argv, cwd)}`` of bench/run_bench.py concurrently; their rc, stdout, stderr
    (through files: a full pipe never stalls a process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    waiting, running, done = list(commands.items()), {}, {}
    deadline = time.monotonic() + timeout
    with contextlib.ExitStack() as files:
        while waiting or running:
            while waiting and len(running) < parallel:
                name, (argv, cwd) = waiting.pop(0)
                out, err = (files.enter_context(tempfile.TemporaryFile("w+")) for _ in range(2))
                proc = subprocess.Popen([sys.executable, str(SCRIPT), *argv], cwd=cwd, env=env, text=True,
                                        stdout=out, stderr=err)
                running[name] = (proc, out, err)
            for name, (proc, out, err) in list(running.items()):
                if proc.poll() is None and time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                if proc.poll() is not None:
                    out.seek(0)
                    err.seek(0)
                    done[name] = {"rc": proc.returncode, "stdout": out.read(), "stderr": err.read()}
                    del running[name]
            time.sleep(0.02)
    return done


# ---------------------------------------------------------------------------------------------
# Refused before loading: (extra flags, the flag the line must name, more text it must hold).
# Each case runs in its own folder holding a valid prompts.txt, out/keep.txt (the --out of every
# case that is not about --out), a file `afile`, and what its own flags name; the tiny model is a
# valid --model, so only the flag under test is wrong.

REFUSALS = {
    "steps-0": (["--steps", "0"], "--steps", []),
    "repeats-0": (["--repeats", "0"], "--repeats", []),
    "baseline-every-0": (["--baseline-every", "0"], "--baseline-every", []),
    "warmup-steps-negative": (["--warmup-steps", "-1"], "--warmup-steps", []),
    "seed-negative": (["--seeds", "0", "-1"], "--seeds", ["-1"]),
    "seed-above-2**63-1": (["--seeds", str(2**63)], "--seeds", [str(2**63)]),
    "threshold-nan": (["--thresholds", "0.05", "nan"], "--thresholds", ["nan"]),
    "threshold-inf": (["--thresholds", "inf"], "--thresholds", ["inf"]),
    "threshold-negative": (["--thresholds", "-0.1"], "--thresholds", ["-0.1"]),
    "height-0": (["--height", "0"], "--height", []),
    "width-0": (["--width", "0"], "--width", []),
    "frames-0": (["--frames", "0"], "--frames", []),
    "steps-not-an-int": (["--steps", "abc"], "--steps", ["abc"]),
    "unknown-flag": (["--stepz", "3"], "--stepz", []),
    "model-missing-relative": (["--model", "./no-such-model"], "--model", ["no-such-model"]),
    "model-missing-absolute": (["--model", "{case}/no-such-model"], "--model", ["no-such-model"]),
    "model-missing-nested": (["--model", "models/tiny/hunyuan"], "--model", ["models/tiny/hunyuan"]),
    "model-not-a-pipeline": (["--model", "out"], "--model", ["model_index.json"]),
    "prompt-file-missing": (["--prompt-file", "missing.txt"], "--prompt-file", ["missing.txt"]),
    "prompt-file-a-folder": (["--prompt-file", "out"], "--prompt-file", []),
    "prompt-file-empty": (["--prompt-file", "empty.txt"], "--prompt-file", ["empty.txt"]),
    "prompt-file-not-utf8": (["--prompt-file", "latin1.txt"], "--prompt-file", ["latin1.txt", "line 2"]),
    "out-is-a-file": (["--out", "afile"], "--out", ["afile"]),
    "out-under-a-file": (["--out", "afile/results"], "--out", ["afile"]),
    "out-holds-results": (["--out", "old"], "--out", ["results.json", "results.md", "--overwrite"]),
    "out-read-only": (["--out", "read-only"], "--out", ["read-only"]),
    "model-named-twice": (["--model", "demo", "demo"], "--model", ["twice"]),
    "out-holds-a-models-results": (["--model", "demo", "demo-wan", "--out", "old-models"], "--out",
                                   ["demo-wan/results.md", "--overwrite"]),
    "out-model-folder-is-a-file": (["--model", "demo", "demo-wan", "--out", "file-models"], "--out",
                                   ["demo-wan there is a file"]),
    "prompt-file-unreadable": (["--prompt-file", "secret.txt"], "--prompt-file", ["secret.txt"]),
}
NEED_PERMISSIONS = {"out-read-only", "prompt-file-unreadable"}  # root reads and writes anyway
RUN_REFUSALS = [name for name in REFUSALS if not (ROOT and name in NEED_PERMISSIONS)]


def make_case(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "prompts.txt").write_text("a cat walks on the grass\n")
    (folder / "empty.txt").write_text("# only a comment\n\n")
    (folder / "latin1.txt").write_bytes("a cat\na caf\u00e9 on the grass\n".encode("latin-1"))
    (folder / "afile").write_bytes(b"not a folder\n")
    (folder / "out").mkdir()
    (folder / "out" / "keep.txt").write_bytes(b"someone's notes\n")
    (folder / "old").mkdir()
    for name, data in (("results.json", b'{"old": true}\n'), ("results.md", b"| old |\n"), ("notes.txt", b"n\n")):
        (folder / "old" / name).write_bytes(data)
    (folder / "old-models" / "demo-wan").mkdir(parents=True)
    (folder / "old-models" / "demo-wan" / "results.md").write_bytes(b"| old |\n")
    (folder / "file-models").mkdir()
    (folder / "file-models" / "demo-wan").write_bytes(b"not a folder\n")
    (folder / "read-only").mkdir()
    (folder / "read-only" / "keep.txt").write_bytes(b"k\n")
    (folder / "secret.txt").write_text("a cat\n")


def lock(folder: Path, locked: bool) -> None:
    """read-only/ not writable, secret.txt not readable (for the processes run meanwhile)."""
    (folder / "read-only").chmod(0o555 if locked else 0o755)
    (folder / "secret.txt").chmod(0 if locked else 0o644)


def refusal_commands(root: Path, model: Path) -> dict[str, tuple[list[str], Path]]:
    commands = {}
    for name in RUN_REFUSALS:
        extra, case = REFUSALS[name][0], root / name
        make_case(case)
        argv = ["--model", str(model), *TINY, "--steps", "2", "--out", "out",
                *[arg.replace("{case}", str(case)) for arg in extra]]
        commands[name] = (argv, case)
    return commands


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Every subprocess of this file, run side by side: the one real tiny run (default --out, from a
    scratch working directory), then each refusal in its own folder."""
    root = tmp_path_factory.mktemp("bench")
    default_cwd = root / "default"
    default_cwd.mkdir()
    (default_cwd / "prompts.txt").write_text("a cat walks on the grass\n")
    commands = {"default": (["--model", str(tiny_model_dir), *TINY, "--steps", "8", "--thresholds", "0", "1.0",
                             "--repeats", "2", "--methods", "EasyCache", "FirstBlock", "MagCache", "FasterCache"],
                            default_cwd)}
    two_cwd = root / "two-models"
    two_cwd.mkdir()
    (two_cwd / "prompts.txt").write_text("a red circle moving left\n")
    commands["two-models"] = (["--model", "demo-wan", str(tiny_model_dir), *TINY, "--steps", "8", "--thresholds",
                               "1.0", "--methods", "EasyCache", "FasterCache", "SeaCache", "TeaCache", "NaviCache", "--out", "out"],
                               two_cwd)
    refusals = refusal_commands(root / "refusals", tiny_model_dir)
    before = {name: snapshot(cwd) for name, (_, cwd) in refusals.items()}
    for _, cwd in refusals.values():
        lock(cwd, True)
    committed = snapshot(REPO / "bench" / "results")
    results = run_all({**commands, **refusals})
    for name, (_, cwd) in refusals.items():
        lock(cwd, False)
        results[name]["unchanged"] = snapshot(cwd) == before[name]
    results["committed_unchanged"] = snapshot(REPO / "bench" / "results") == committed
    results["default_cwd"] = default_cwd
    results["two_out"] = two_cwd / "out"
    return results


@pytest.mark.parametrize("case", [
    pytest.param(name, marks=pytest.mark.skipif(ROOT and name in NEED_PERMISSIONS, reason="root ignores permissions "
                                                "(test_an_unwritable_out_is_refused_and_left_as_it_was simulates it)"))
    for name in REFUSALS])
def test_refused_before_loading_in_one_line(case, runs):
    result, (_, flag, mentions) = runs[case], REFUSALS[case]
    lines = result["stderr"].strip().splitlines()
    assert result["rc"] == 2, result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert flag in lines[0]
    for text in mentions:
        assert text in lines[0]
    assert "loading model" not in result["stderr"] + result["stdout"], "refused before the model loads"
    assert result["unchanged"], "every file there byte-identical, nothing created (no default folder either)"


# ---------------------------------------------------------------------------------------------
# The one real tiny run (default --out) and what it wrote.


def has_diffusers_cache(config_class: str) -> bool:
    return at_least("diffusers", DIFFUSERS_FLOORS[config_class])


def assert_listed_as_needing_a_newer_diffusers(rows: list[dict], config_class: str) -> None:
    """An older diffusers's bench lists the method, unrun, with the release it needs."""
    needed = f"needs diffusers >= {DIFFUSERS_FLOORS[config_class]}"
    assert rows and all(needed in r["unavailable"] and "calls" not in r for r in rows), rows


@pytest.fixture(scope="module")
def default_run(runs):
    result = runs["default"]
    assert result["rc"] == 0, result["stderr"][-3000:]
    folders = list((runs["default_cwd"] / "bench-results").iterdir())
    assert len(folders) == 1
    return result, folders[0]


def test_benchmark_writes_table_json_and_plot(default_run):
    _, out = default_run
    rows = json.loads((out / "results.json").read_text())["rows"]
    by_label = {(r["method"], r["setting"]): r for r in rows}
    base = by_label[("no cache", "")]
    assert base["computed"] == base["calls"] == 8 and base["speedup"] == 1.0

    zero = by_label[("EasyCache", "thresh 0.0")]
    assert zero["computed"] == zero["calls"] == 8 and zero["psnr"] == 100.0 and zero["ssim"] == 1.0
    skipping = by_label[("EasyCache", "thresh 1.0")]
    assert skipping["calls"] == 8 and skipping["computed"] < 8 and skipping["psnr"] < 100.0

    magcache = [r for r in rows if r["method"] == "MagCache"]
    if has_diffusers_cache("MagCacheConfig"):
        assert len(magcache) == 3 and all("calls" in r for r in magcache), "calibrated, then run"
    else:
        assert_listed_as_needing_a_newer_diffusers(magcache, "MagCacheConfig")
    faster = [r for r in rows if r["method"] == "FasterCache"]
    assert faster and all("needs classifier-free guidance" in r["unavailable"] for r in faster), faster
    assert {r["method"] for r in rows} >= {"no cache", "EasyCache", "FirstBlockCache", "MagCache", "FasterCache"}

    table = (out / "results.md").read_text()
    assert "| EasyCache | thresh 1.0 |" in table and "not run:" in table
    assert (out / "speed_psnr.png").read_bytes()[:4] == b"\x89PNG"


def test_default_out_is_a_new_folder_under_the_working_directory(default_run, runs):
    result, out = default_run
    assert re.fullmatch(r"run-\d{8}-\d{6}(-\d+)?", out.name) and out.parent.name == run_bench.DEFAULT_OUT_ROOT
    assert sorted(p.name for p in out.iterdir()) == sorted(run_bench.RESULT_FILES), "no probe or partial file left"
    assert runs["committed_unchanged"], "the repository's bench/results is never written"
    assert "loading model" in result["stderr"], "the line whose absence shows a refusal loaded nothing"


def test_default_out_never_takes_an_existing_folder(tmp_path):
    first = run_bench.default_out(tmp_path)
    first.mkdir()
    second = run_bench.default_out(tmp_path)
    assert second != first and not second.exists() and second.parent == tmp_path


def result_rows():
    return [{"method": "no cache", "setting": "", "calls": 8, "computed": 8, "calls_ratio": 1.0, "speedup": 1.0,
             "speedup_exceeds_calls_ratio": False, "psnr": 100.0, "psnr_frame_mean": 100.0, "ssim": 1.0,
             "lpips": None, "peak_memory_bytes": None}]


META = {"model": "demo", "prompts": ["p"], "seeds": [0], "steps": 8, "device": "CPU", "torch": "x", "lpips": "-",
        "repeats": 1}


def old_results(folder: Path) -> dict[str, str]:
    folder.mkdir()
    for name, data in (("results.json", b'{"old": true}\n'), ("results.md", b"| old |\n"), ("keep.txt", b"notes\n")):
        (folder / name).write_bytes(data)
    (folder / "inner").mkdir()
    (folder / "inner" / "keep.txt").write_bytes(b"inner notes\n")
    return snapshot(folder)


def test_overwrite_replaces_only_the_results(tmp_path):
    from loguru import logger

    old = tmp_path / "old"
    before = old_results(old)
    args = run_bench.parse_args(["--model", "demo", "--out", str(old), "--overwrite"])
    assert run_bench.check_out(args) == ["results.json", "results.md"]
    out, created = run_bench.prepare_out(args)
    assert out == old and created == [] and snapshot(old) == before, "the write probe leaves nothing"
    messages = []
    sink = logger.add(messages.append, format="{message}")
    try:
        assert run_bench.write_results(out, result_rows(), META, overwrite=True)[0] == old
    finally:
        logger.remove(sink)
    assert any("--overwrite: replacing results.json, results.md in" in m for m in messages), messages
    after = snapshot(old)
    assert sorted(after) == sorted([*before, "speed_psnr.png"]), "no partial file left"
    assert {k: after[k] for k in ("keep.txt", "inner", "inner/keep.txt")} == \
        {k: before[k] for k in ("keep.txt", "inner", "inner/keep.txt")}
    assert json.loads((old / "results.json").read_text())["rows"] and "| old |" not in (old / "results.md").read_text()


def test_results_that_appear_during_a_run_are_kept(tmp_path):
    """Without --overwrite, results written into --out while the run went on (another run) stay;
    this run's go to a new folder inside it."""
    old = tmp_path / "old"
    before = old_results(old)
    out, _ = run_bench.write_results(old, result_rows(), META, overwrite=False)
    assert out.parent == old and sorted(p.name for p in out.iterdir()) == sorted(run_bench.RESULT_FILES)
    assert {k: v for k, v in snapshot(old).items() if not k.startswith(out.name)} == before


def test_refused_in_process_too(tiny_model_dir, tmp_path, capfd):
    """Flags whose checks import torch or diffusers (cheap here, where they are loaded already)."""
    (tmp_path / "prompts.txt").write_text("a cat\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_bytes(b"notes\n")
    before = snapshot(tmp_path)
    base = ["--model", str(tiny_model_dir), "--prompt-file", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "out")]
    for extra, flag, text in ((["--dtype", "float33"], "--dtype", "float33"),
                              (["--methods", "EasyCache", "NoSuchCache"], "--methods", "NoSuchCache"),
                              (["--model", "no-such-owner/no-such-model"], "--model", "HF_HUB_OFFLINE")):
        assert run_bench.main([*base, *extra]) == 2
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {flag} ") and text in lines[0], lines
    assert snapshot(tmp_path) == before


def test_an_unwritable_out_is_refused_and_left_as_it_was(tmp_path, monkeypatch):
    """The write probe failing (a read-only folder; root ignores permissions, so it is simulated):
    one refusal naming --out, and the folders this run created are removed again."""
    import errno

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(run_bench.tempfile, "NamedTemporaryFile", read_only)
    args = run_bench.parse_args(["--out", str(tmp_path / "new" / "deeper")])
    with pytest.raises(run_bench.Refusal, match=r"^--out .*deeper: cannot write there \(Permission denied\)"):
        run_bench.prepare_out(args)
    assert list(tmp_path.iterdir()) == []


def test_json_records_the_interleaved_timings_and_the_speedup_flag(default_run):
    _, out = default_run
    report = json.loads((out / "results.json").read_text())
    timing, rows = report["meta"]["timing"], report["rows"]
    ran = [r for r in rows if "unavailable" not in r]
    assert timing["repeats"] == 2 and timing["baseline_every"] == 1 and "minimum" in timing["seconds"]
    # baseline, m1, baseline, m2, ..., baseline: per round len(methods) + 1 baseline runs per video and repeat
    # (a second round, for methods that leave the transformer patched, when cache-dit is installed)
    runs = 2 * (len(ran) - 1 + timing["rounds"])
    assert timing["baseline_runs_per_video"] == runs
    base = ran[0]
    assert len(base["run_seconds"][0]) == runs and base["seconds"] == min(base["run_seconds"][0])
    for row in ran[1:]:
        assert isinstance(row["speedup_exceeds_calls_ratio"], bool)
        assert row["calls_ratio"] == row["calls"] / row["computed"]
        assert len(row["run_seconds"][0]) == 2 and row["seconds"] == min(row["run_seconds"][0])
        assert row["speedup"] == pytest.approx(base["seconds"] / row["seconds"])
        assert row["baseline_seconds"] == pytest.approx(base["seconds"]), "one round: the baseline's runs are all its own"
        assert row["speedup_exceeds_calls_ratio"] == run_bench.speedup_exceeds_calls_ratio(
            row["speedup"], row["calls"], row["computed"], row["calls_ratio_bounds_speedup"])
        assert row["calls_ratio_bounds_speedup"], row["method"]  # EasyCache, FirstBlockCache, MagCache


def test_two_models_in_one_run_each_in_its_folder_with_calls_per_branch(runs, tiny_model_dir):
    """demo-wan (true CFG, two calls a step) and a guidance-distilled tiny HunyuanVideo in one
    command: a folder each with its own table; on the CFG model FasterCache runs (one batched call
    a step) and EasyCache takes one decision per step for both branches."""
    result, out = runs["two-models"], runs["two_out"]
    assert result["rc"] == 0, result["stderr"][-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(["demo-wan", tiny_model_dir.name])
    wan, tiny = (json.loads((out / name / "results.json").read_text()) for name in ("demo-wan", tiny_model_dir.name))
    assert wan["meta"]["model"] == "demo-wan" and wan["meta"]["calls_per_step"] == 2
    assert tiny["meta"]["calls_per_step"] == 1
    rows = {(r["method"], r["setting"]): r for r in wan["rows"]}
    assert rows[("no cache", "")]["branches"] == {"cond": {"calls": 8, "computed": 8},
                                                  "uncond": {"calls": 8, "computed": 8}}
    easy = rows[("EasyCache", "thresh 1.0")]["branches"]
    assert easy["cond"] == easy["uncond"] and easy["cond"]["computed"] < 8, "one decision a step, for both branches"
    for setting in ("uncond every 2", "uncond every 5"):
        faster = rows[("FasterCache", setting)]
        assert "unavailable" not in faster and set(faster["branches"]) == {"cond_uncond"}
        assert faster["calls"] == 8 and faster["psnr"] < 100
    if has_diffusers_cache("SeaCacheConfig"):
        assert "unavailable" not in rows[("SeaCache", "threshold 0.5")]
    else:
        assert_listed_as_needing_a_newer_diffusers([r for r in wan["rows"] if r["method"] == "SeaCache"], "SeaCacheConfig")
    table = (out / "demo-wan" / "results.md").read_text()
    assert "per branch" in table and "cond 8 / 8, uncond 8 / 8" in table
    tiny_faster = [r for r in tiny["rows"] if r["method"] == "FasterCache"]
    assert tiny_faster and all("needs classifier-free guidance" in r["unavailable"] for r in tiny_faster)
    assert "per branch" not in (out / tiny_model_dir.name / "results.md").read_text()


def test_teacache_and_navicache_rows_on_both_kinds_of_model(runs, tiny_model_dir):
    """TeaCache runs on demo-wan with the committed fit and on a diffusers HunyuanVideo with the
    released coefficients, at its architecture's thresholds, the table saying which; NaviCache at the
    bench's thresholds and its release's presets."""
    import teacache

    out = runs["two_out"]
    wan, tiny = (json.loads((out / name / "results.json").read_text()) for name in ("demo-wan", tiny_model_dir.name))
    for result, arch, calls, source in ((wan, "wan", 16, "fitted on this model (bench/results/demo-wan/"),
                                        (tiny, "hunyuan", 8, "released for HunyuanVideo")):
        tea = [r for r in result["rows"] if r["method"] == "TeaCache"]
        assert [r["setting"] for r in tea] == [f"threshold {t}" for t in teacache.THRESHOLDS[arch]], tea
        assert not [r for r in tea if "unavailable" in r], tea
        assert all(r["calls"] == calls and 0 < r["computed"] <= calls and r["calls_ratio_bounds_speedup"] for r in tea)
        assert tea[-1]["computed"] < calls, "the largest threshold skips calls"
        details = result["meta"]["details"]["TeaCache"]
        assert details["source"].startswith(source) and len(details["coefficients"]) == 5
        navi = [r for r in result["rows"] if r["method"] == "NaviCache (as released)"]
        assert [r["setting"] for r in navi] == ["thresh 0.025", "thresh 0.035", "thresh 0.04", "thresh 1.0"]
        assert all("calls" in r for r in navi)
    assert "fit" in wan["meta"]["details"]["TeaCache"] and "fit" not in tiny["meta"]["details"]["TeaCache"]
    table = (out / "demo-wan" / "results.md").read_text()
    assert "TeaCache: coefficients: [" in table and "NaviCache (as released): rule: as released" in table


def test_model_folders():
    out = Path("o")
    assert run_bench.model_folders(out, ["demo"]) == [out]
    assert run_bench.model_folders(out, ["demo", "demo-wan", "owner/name"]) == [out / "demo", out / "demo-wan",
                                                                              out / "owner--name"]


# ---------------------------------------------------------------------------------------------
# The speedup bound, on constructed numbers.


def test_speedup_above_the_calls_ratio_is_flagged():
    flag = run_bench.speedup_exceeds_calls_ratio
    assert flag(11.8, 400, 65, bounded=True), "the artefact seen: 11.8x with 65 of 400 calls computed"
    assert not flag(5.48, 400, 65, bounded=True)
    assert not flag(1.03, 8, 8, bounded=True), "timing noise within the tolerance"
    assert flag(1.2, 8, 8, bounded=True)
    assert not flag(1.49, 400, 400, bounded=False), "TaylorSeer skips inside blocks: no bound"
    assert not flag(3.0, 8, 0, bounded=True), "nothing computed: no finite bound"
    assert run_bench.calls_ratio(400, 65) == pytest.approx(6.1538, abs=1e-4) and run_bench.calls_ratio(8, 0) is None


def test_interleaved_order_times_the_baseline_between_methods():
    assert run_bench.interleaved_order(3) == [None, 0, None, 1, None, 2, None]
    assert run_bench.interleaved_order(3, baseline_every=2) == [None, 0, 1, None, 2, None]
    assert run_bench.interleaved_order(0) == [None]


def test_which_methods_the_calls_ratio_bounds():
    from methods import all_methods

    bounded = {m.name: m.calls_bound_speedup for m in all_methods(8)}  # available here or not
    for name in ("no cache", "EasyCache", "EasyCache + cap 2 reuses", "EasyCache + extrapolated delta",
                 "FirstBlockCache", "MagCache", "TeaCache", "NaviCache (as released)"):
        assert bounded[name], name
    for name in ("TaylorSeer", "PyramidAttentionBroadcast"):
        assert not bounded[name], name


def test_table_marks_a_flagged_speedup(tmp_path):
    row = {"method": "EasyCache", "setting": "thresh 0.1", "calls": 400, "computed": 65, "calls_ratio": 400 / 65,
           "speedup": 11.8, "speedup_exceeds_calls_ratio": True, "psnr": 20.0, "psnr_frame_mean": 21.0, "ssim": 0.2,
           "lpips": None, "peak_memory_bytes": None}
    honest = {**row, "setting": "thresh 0.05", "speedup": 4.4, "speedup_exceeds_calls_ratio": False}
    table = write_table([row, honest], META, tmp_path / "results.md")
    assert "| 11.80x (!) |" in table and "| 4.40x |" in table
    assert "EasyCache thresh 0.1: 11.80x against 400 / 65 = 6.15x" in table


# ---------------------------------------------------------------------------------------------
# --model decided without the network: a typo is one line whether or not HF_HUB_OFFLINE is set.


def test_a_model_typo_online_is_one_line_decided_locally(tmp_path):
    """``--model dmeo`` without HF_HUB_OFFLINE used to ask the hub and end in three chained
    tracebacks. The hub here is 127.0.0.1:1 (nothing answers; asking it would take its ~25 s of
    retries), so a quick one-line answer was decided locally."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(SCRIPT), "--model", "dmeo"], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=120, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip() == ("error: --model dmeo: not a demo (demo / demo-wan), no folder of that name here, "
                                  "and not a hub id (owner/name); did you mean demo?")
    assert time.monotonic() - started < 20, "decided without the hub's retries"
    assert list(tmp_path.iterdir()) == [], "nothing made (no default results folder)"


@pytest.mark.parametrize("model, says", [("demo-wna", "; did you mean demo-wan?"), ("xyz", "")])
def test_a_bare_name_is_never_asked_of_the_hub(tmp_path, capfd, monkeypatch, model, says):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("the hub was asked"))
    assert run_bench.main(["--model", model, "--out", str(tmp_path / "out")]) == 2
    assert capfd.readouterr().err.strip() == (f"error: --model {model}: not a demo (demo / demo-wan), no folder of that "
                                              f"name here, and not a hub id (owner/name){says}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error, says", [
    ("LocalEntryNotFoundError", "cannot reach the hub to fetch it, and it is not in the hub cache"),
    ("ConnectionError", "cannot fetch it from the hub (ConnectionError: no route)"),
])
def test_a_hub_id_that_cannot_be_fetched_online_is_one_line(tmp_path, capfd, monkeypatch, error, says):
    """Online (HF_HUB_OFFLINE unset), a hub id is fetched (its model_index.json) before anything is
    made; the hub client's download is replaced by one that fails as it does offline, so the test
    never reaches the network."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    asked = []

    def fails(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        raise (LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")
               if error == "LocalEntryNotFoundError" else ConnectionError("no route"))

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fails)
    before = snapshot(tmp_path)
    assert run_bench.main(["--model", "some-owner/some-video-model", "--out", str(tmp_path / "out")]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines == [f"error: --model some-owner/some-video-model: {says}" + lines[0].split(says, 1)[1]], lines
    assert asked == [("some-owner/some-video-model", "model_index.json")]
    assert snapshot(tmp_path) == before


def test_peers_against_easycaches_curve(tmp_path):
    """Each peer point is beaten (an EasyCache point at least as fast with at least its PSNR, or under
    the line between two), above the curve (by how much), outside its speeds, or slower than no cache;
    results.md says which, for all EasyCache variants together and for the rule alone."""
    import report

    def row(method, speedup, psnr, setting=""):
        return {"method": method, "setting": setting, "speedup": speedup, "psnr": psnr, "psnr_frame_mean": psnr,
                "ssim": 0.9, "lpips": None, "calls": 10, "computed": 5, "peak_memory_bytes": None}

    rows = [row("no cache", 1.0, 100.0), row("EasyCache", 2.0, 40.0, "thresh 0.01"), row("EasyCache", 3.0, 30.0, "thresh 0.05"),
            row("EasyCache + extrapolated delta", 3.0, 33.0, "thresh 0.05"),
            row("Peer", 2.5, 36.0, "a"), row("Peer", 2.5, 34.0, "b"), row("Peer", 1.5, 45.0, "c"), row("Peer", 1.5, 39.0, "d"),
            row("Peer", 0.9, 60.0, "e"), row("Peer", 3.5, 20.0, "f")]
    # every variant: the front is (2.0x, 40) and (3.0x, 33) (the rule's 30 dB at 3.0x is beaten by the
    # extrapolated delta): 36.5 dB at 2.5x, over a (36) and b (34); d is beaten by (2.0x, 40 dB)
    every = report.envelope(rows)
    assert (every["beaten"], every["slower_than_no_cache"], every["peer_points"], every["above"]) == (3, 1, 6, [])
    assert [a["setting"] for a in every["outside"]] == ["c", "f"]
    rule = report.envelope(rows, report.rule_alone)  # front (2.0x, 40), (3.0x, 30): 35 dB at 2.5x
    assert [(a["setting"], round(a["margin"], 6)) for a in rule["above"]] == [("a", 1.0)]
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows, "meta": {
        "model": "m", "prompts": ["p"], "seeds": [0], "steps": 8, "device": "CPU", "torch": "t", "lpips": "-"}}))
    report.rewrite(tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert "Against the rule alone" in table and "Peer a (2.50x, 36.00 dB: +1.00 dB over the curve's 35.00 dB)" in table
    assert (tmp_path / "speed_psnr.png").read_bytes()[:4] == b"\x89PNG"


def test_a_method_is_timed_against_the_baseline_runs_of_its_own_round(monkeypatch):
    """cache-dit runs in a second round after the others; load that comes with the second round
    (here: every run from the fourth on takes twice as long, no clock read) slows its baseline runs
    too, so its speedup stays the ratio of its own round, not one against the first round's runs."""
    import argparse

    import numpy as np
    from methods import Method

    runs = {"n": 0}

    def fake_generate(pipe, counter, prompt, seed, args):
        runs["n"] += 1
        return np.zeros((1, 2, 2, 3), np.uint8), (1.0 if runs["n"] <= 3 else 2.0), 4, 2, None, {}

    monkeypatch.setattr(run_bench, "_generate", fake_generate)
    first = Method("First", "", lambda pipe: None, lambda pipe, handle: None)
    leaky = Method("Leaky", "", lambda pipe: None, lambda pipe, handle: None, leaves_state=True)
    args = argparse.Namespace(repeats=1, baseline_every=1)
    base, round_base, timings, failed = run_bench.time_methods([first, leaky], None, None, [("p", 0)], args)
    assert not failed and runs["n"] == 6, "baseline, First, baseline; then baseline, Leaky, baseline"
    assert (round_base[0].seconds, round_base[1].seconds, base.seconds) == (1.0, 2.0, 1.0)
    assert timings[1].seconds / round_base[1].seconds == 1.0, "Leaky against its own round's baseline"
