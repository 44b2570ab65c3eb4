"""bench/gpu_check.py end to end on a CPU with toy shapes (``--tiny``): every part's code path, its
files, its statuses; a budget of zero; a failing check among others; a missing package."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check
from easycache.versions import at_least
from needs import needs

# Every check but the refusals runs diffusers' HunyuanVideo transformer.
HUNYUAN = needs("diffusers", gpu_check.DIFFUSERS_NEEDED, "the GPU check (diffusers' HunyuanVideo transformer)")

ROOT = Path(__file__).resolve().parents[1]
HYVIDEO_SET = bool(os.environ.get("HYVIDEO_ROOT"))


def read(out: Path) -> tuple[dict, str]:
    (json_path,) = out.glob("*.json")
    (md_path,) = out.glob("*.md")
    return json.loads(json_path.read_text()), md_path.read_text()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    code = gpu_check.main(["--tiny", "--out", str(out)])
    return (code, *read(out))


def checks(data: dict) -> dict:
    return {f"{p}.{name}": c for p, part in data["parts"].items() for name, c in part["checks"].items()}


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@HUNYUAN
def test_tiny_run_holds_every_part(tiny_run):
    code, data, md = tiny_run
    assert code == 0
    meta = data["meta"]
    assert meta["tiny"] and meta["finished"] and meta["torch"] and "cuda" in meta and meta["gpu"]
    assert set(data["parts"]) == {"a", "b", "c", "d", "e"}
    assert set(checks(data)) == {"a.544p", "a.720p", "b.attention", "b.transformer", "c.threshold0",
                                 "c.cfg_decisions", "c.flex_vs_sdpa", "c.demo", "d.tencent_544p", "e.diffusers_544p"}
    for letter in "abce":
        assert data["parts"][letter]["status"] == "ok"
    for name, check in checks(data).items():
        assert positive(check["wall_seconds"]) or check["status"].startswith("skipped"), name
        if not name.startswith("d."):
            assert check["status"] == "ok", (name, check["status"], check.get("traceback"))
    d = data["parts"]["d"]["checks"]["tencent_544p"]["status"]
    if HYVIDEO_SET:
        assert d == "ok"
    else:
        assert d.startswith("skipped: ") and "HYVIDEO_ROOT" in d
    for text in ("reused / computed transformer call", "cache memory / model memory", "SVG 0.2 / dense",
                 "SVG 0.25 / dense", "one transformer call", "bit-identical", "HYVIDEO_ROOT" if not HYVIDEO_SET else "d"):
        assert text in md


@HUNYUAN
def test_numbers_are_finite_and_positive(tiny_run):
    _, data, _ = tiny_run
    c = checks(data)
    for name in ("a.544p", "a.720p"):
        a = c[name]
        for key in ("computed_seconds", "reused_seconds", "reused_over_computed", "cache_bytes", "model_bytes",
                    "cache_over_model_bytes", "cached_computed_seconds", "cached_computed_first_seconds"):
            assert positive(a[key]), (name, key, a[key])
        assert all(positive(s) for s in a["computed_samples"] + a["reused_samples"])
        assert a["reused_over_computed"] < 1 and a["output_finite"] is not False
    attention = c["b.attention"]
    assert positive(attention["dense"]["median_seconds"])
    for sparsity in ("0.2", "0.25"):
        s = attention[f"sparsity_{sparsity}"]
        for value in (s["sparse"]["median_seconds"], s["sparse"]["first_seconds"], s["profile"]["median_seconds"],
                      s["sparse_over_dense"], s["with_profile_over_dense"], s["band"]):
            assert positive(value)
        t = c["b.transformer"][f"sparsity_{sparsity}"]
        assert positive(t["sparse"]["median_seconds"]) and positive(t["sparse_over_dense"])
        assert t["svg_summary"]["sparse_calls"] == t["svg_summary"]["attention_calls"] > 0
        for dense in ("sdpa", "flash", "masked"):
            assert positive(s["with_profile_over_each_dense"][dense]), (sparsity, dense)
        assert positive(t["sparse_over_dense_sdpa"])
    assert set(attention["dense_paths"]) == {"sdpa", "flash", "masked"}
    assert attention["fastest_dense"] in attention["dense_paths"]
    assert positive(c["b.transformer"]["dense"]["median_seconds"])
    assert positive(c["b.transformer"]["dense_sdpa"]["median_seconds"])
    assert c["b.transformer"]["dense_sdpa"]["relative_difference"] < 1e-4  # float32: the same output to rounding
    e = c["e.diffusers_544p"]
    assert e["real_text_tokens"] < e["text_tokens"]  # a padded prompt: the sdpa path cuts something
    assert e["model"]["path"].startswith("model") and e["sdpa"]["path"].startswith("sdpa")
    assert positive(e["sdpa"]["median_seconds"]) and positive(e["sdpa"]["over_baseline"])
    assert e["sdpa"]["relative_difference"] < 1e-4
    assert c["c.flex_vs_sdpa"]["max_abs_difference"] <= c["c.flex_vs_sdpa"]["tolerance"]
    assert c["c.demo"]["decisions"] == c["c.demo"]["decisions_cpu"] and c["c.demo"]["differing_steps"] == []


@HUNYUAN
def test_the_timed_reused_calls_were_reused(tiny_run):
    _, data, _ = tiny_run
    for name in ("a.544p", "a.720p"):
        a = checks(data)[name]
        reused = len(a["reused_samples"])
        assert a["reused_calls_verified"] and reused >= 3
        assert a["records_computed"] == [True, True] + [False] * reused
        assert a["cache_summary"]["reused"] == reused and a["cache_summary"]["computed"] == 2


@HUNYUAN
def test_a_spent_budget_skips_every_check_and_the_command_runs_as_documented(tmp_path):
    """As the README says to run it: a subprocess, ``python bench/gpu_check.py``, no PYTHONPATH, from
    another folder than the repository's (the script finds its checkout itself). A budget of 1 ms is
    spent by the imports (0 itself is refused: it would run nothing)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--tiny", "--budget-seconds", "0.001",
                          "--out", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stderr
    data, md = read(tmp_path)
    statuses = {name: c["status"] for name, c in checks(data).items()}
    assert len(statuses) == 10
    tencent = statuses.pop("d.tencent_544p")  # a missing checkout is said before the budget
    assert tencent.startswith("skipped: budget" if HYVIDEO_SET else "skipped: set HYVIDEO_ROOT")
    assert all(s.startswith("skipped: budget") for s in statuses.values()), statuses
    assert all(data["parts"][p]["status"].startswith("skipped: budget") for p in "abce")
    assert "skipped: budget" in md


@HUNYUAN
def test_a_failing_check_is_recorded_and_the_later_ones_still_run(tmp_path, monkeypatch):
    """The files are rewritten after each check: the failing check sees the earlier one on disk."""
    plan = {f"{s.part}.{s.name}": s for s in gpu_check._plan()}
    seen = {}

    def broken(ctx, entry, write):
        write(entry, partial_number=1.5)
        seen["on_disk"], _ = read(tmp_path)
        raise RuntimeError("planted failure")

    steps = (plan["b.attention"], gpu_check.Step("c", "broken", "a check made to fail", broken), plan["a.544p"])
    monkeypatch.setattr(gpu_check, "PLAN", steps)
    assert gpu_check.main(["--tiny", "--out", str(tmp_path)]) == 1
    on_disk = checks(seen["on_disk"])
    assert on_disk["b.attention"]["status"] == "ok" and "sparsity_0.25" in on_disk["b.attention"]
    assert on_disk["c.broken"]["status"] == "running" and on_disk["c.broken"]["partial_number"] == 1.5
    data, md = read(tmp_path)
    final = checks(data)
    assert final["c.broken"]["status"] == "failed: RuntimeError: planted failure"
    assert "planted failure" in final["c.broken"]["traceback"]
    assert data["parts"]["c"]["status"].startswith("failed: broken: RuntimeError")
    assert final["a.544p"]["status"] == "ok" and final["a.544p"]["reused_calls_verified"]
    assert "failed: RuntimeError: planted failure" in md


def test_a_missing_package_is_one_clear_line(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    assert gpu_check.main(["--tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diffusers" in err[0] and "carry the wheels, see bench/gpu/README.md" in err[0]
    assert not list(tmp_path.iterdir())


def test_an_old_diffusers_is_one_clear_line(monkeypatch, capsys, tmp_path):
    from easycache import versions

    monkeypatch.setattr(versions, "installed", lambda name: versions.Version("0.31.0"))
    assert gpu_check.main(["--tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs diffusers >= 0.36" in err[0] and "diffusers 0.31.0" in err[0], err
    assert not list(tmp_path.iterdir())


def test_importing_the_command_imports_neither_diffusers_nor_loguru():
    code = "import sys, bench.gpu_check; print('diffusers' in sys.modules, 'loguru' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert run.stdout.split() == ["False", "False"], run.stderr


@HUNYUAN
def test_bf16_as_on_a_gpu(tmp_path):
    """The GPU runs bf16: the same code paths in bf16 on the CPU (Tencent's under autocast, as its pipeline)."""
    assert gpu_check.main(["--tiny", "--dtype", "bfloat16", "--only", "a,b,d", "--out", str(tmp_path)]) == 0
    data, _ = read(tmp_path)
    statuses = {name: c["status"] for name, c in checks(data).items()}
    assert data["meta"]["dtype"] == "bfloat16"
    tencent = statuses.pop("d.tencent_544p")
    assert tencent == "ok" if HYVIDEO_SET else tencent.startswith("skipped: set HYVIDEO_ROOT")
    assert set(statuses.values()) == {"ok"} and len(statuses) == 4, statuses


# ---------------------------------------------------------------------------- refused before anything runs
def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def nothing_runs(monkeypatch):
    monkeypatch.setattr(gpu_check, "_run", lambda *a: pytest.fail("a check ran"))


def refused(capsys, argv: list[str]) -> str:
    code = gpu_check.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("flags, says", [
    (["--budget-seconds", "-5"], "--budget-seconds -5: pass the seconds the whole run may take, a number above 0"),
    (["--budget-seconds", "nan"], "--budget-seconds nan: pass the seconds"),
    (["--budget-seconds", "inf"], "--budget-seconds inf: pass the seconds"),
    (["--budget-seconds", "0"], "--budget-seconds 0: pass the seconds"),
    (["--budget-seconds", "ten"], "--budget-seconds: invalid float value: 'ten'"),
    (["--out", "{tmp}/afile"], "--out {tmp}/afile is a file; pass a folder"),
    (["--out", "{tmp}/afile/deeper"], "--out {tmp}/afile/deeper: {tmp}/afile is a file; pass a folder"),
    (["--only", "a,,c"], "--only 'a,,c': an empty name"),
])
def test_a_bad_flag_is_one_line_before_anything(tmp_path, capsys, nothing_runs, flags, says):
    """Refused before the package checks, torch or anything written."""
    (tmp_path / "afile").write_bytes(b"a report someone keeps\n")
    before = snapshot(tmp_path)
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    err = refused(capsys, ["--tiny", "--out", str(tmp_path / "out"), *flags])
    assert says.replace("{tmp}", str(tmp_path)) in err
    assert snapshot(tmp_path) == before


@HUNYUAN
@pytest.mark.parametrize("flags, says", [
    (["--only", "b.transfomer"], "--only b.transfomer: no such part or check; pass part letters or part.check names, "
                                 "comma-separated: a, b, c, d, e, a.544p, b.attention,"),
    (["--only", "a,f"], "--only f: no such part or check"),
    (["--device", "banana"], "--device banana: pass cuda, cuda:N or cpu (cpu runs --tiny only)"),
    (["--device", "mps"], "--device mps: pass cuda, cuda:N or cpu"),
    (["--device", "cuda:7"], "--device cuda:7: this "),
])
def test_a_bad_check_name_or_device_is_one_line_before_anything(tmp_path, capsys, nothing_runs, flags, says):
    """A typo in --only would run nothing, exit 0 and replace the report in --out."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.json").write_bytes(b"{}\n")
    before = snapshot(tmp_path)
    assert says in refused(capsys, ["--tiny", "--out", str(out), *flags])
    assert snapshot(tmp_path) == before


def test_the_real_size_check_on_a_cpu_is_refused(tmp_path, capsys, nothing_runs, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if gpu_check.missing_packages():
        pytest.skip("the package check comes first")
    if not at_least("diffusers", gpu_check.DIFFUSERS_NEEDED):
        pytest.skip(f"the diffusers check comes first (diffusers < {gpu_check.DIFFUSERS_NEEDED})")
    err = refused(capsys, ["--device", "cpu", "--out", str(tmp_path)])
    assert "--device cpu: the real-size check needs a GPU (--tiny runs toy shapes on a CPU)" in err


@HUNYUAN
def test_an_earlier_report_is_never_replaced(tmp_path, monkeypatch, capsys):
    """The default --out holds committed results: a second run writes <gpu>-2.*, a third <gpu>-3.*."""
    import platform

    from bench.gpu.results import slug

    def quick(ctx, entry, write):
        write(entry, number=1.0)

    monkeypatch.setattr(gpu_check, "PLAN", (gpu_check.Step("c", "quick", "a quick check", quick),))
    name = slug(f"CPU ({platform.machine()})") + "-tiny"
    (tmp_path / f"{name}.json").write_bytes(b'{"the": "first run"}\n')
    (tmp_path / f"{name}.md").write_bytes(b"# the first run\n")
    (tmp_path / f"{name}-3.md").write_bytes(b"# a renamed report\n")
    before = snapshot(tmp_path)
    assert gpu_check.main(["--tiny", "--out", str(tmp_path)]) == 0
    assert gpu_check.main(["--tiny", "--out", str(tmp_path), "--only", "c"]) == 0
    said = capsys.readouterr().out
    assert f"{name}-2.json" in said and f"({name}.json is there already, kept)" in said
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "every earlier file byte-identical"
    assert sorted(set(after) - set(before)) == [f"{name}-2.json", f"{name}-2.md", f"{name}-4.json", f"{name}-4.md"]
    for stem in (f"{name}-2", f"{name}-4"):
        data = json.loads((tmp_path / f"{stem}.json").read_text())
        assert data["parts"]["c"]["checks"]["quick"]["status"] == "ok" and data["meta"]["finished"]
        assert f"`{stem}.json`" in (tmp_path / f"{stem}.md").read_text()
    assert not list(tmp_path.glob("*.tmp"))
