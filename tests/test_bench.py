"""The benchmark command on a tiny pipeline: every method gets a row (a result or its reason)."""

import json



import run_bench  # bench/ is on pytest's pythonpath (pytest.ini)


def test_benchmark_writes_table_json_and_plot(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat walks on the grass\n")
    out = tmp_path / "results"
    code = run_bench.main([
        "--model", str(tiny_model_dir), "--dtype", "float32", "--prompt-file", str(prompts), "--steps", "8",
        "--height", "16", "--width", "16", "--frames", "9", "--thresholds", "0", "1.0",
        "--methods", "EasyCache", "FirstBlock", "MagCache", "FasterCache", "--out", str(out),
    ])
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    by_label = {(r["method"], r["setting"]): r for r in rows}
    base = by_label[("no cache", "")]
    assert base["computed"] == base["calls"] == 8 and base["speedup"] == 1.0

    zero = by_label[("EasyCache", "thresh 0.0")]
    assert zero["computed"] == zero["calls"] == 8 and zero["psnr"] == 100.0 and zero["ssim"] == 1.0
    skipping = by_label[("EasyCache", "thresh 1.0")]
    assert skipping["calls"] == 8 and skipping["computed"] < 8 and skipping["psnr"] < 100.0

    magcache = [r for r in rows if r["method"] == "MagCache"]
    assert len(magcache) == 3 and all("calls" in r for r in magcache), "calibrated, then run"
    assert "guidance-distilled" in by_label[("FasterCache", "")]["unavailable"]
    assert {r["method"] for r in rows} >= {"no cache", "EasyCache", "FirstBlockCache", "MagCache", "FasterCache"}

    table = (out / "results.md").read_text()
    assert "| EasyCache | thresh 1.0 |" in table and "not run:" in table
    assert (out / "speed_psnr.png").read_bytes()[:4] == b"\x89PNG"
