"""Tests for easycache.metrics and its command line, tools/video_metrics.py, with small videos
written here (no network, CPU only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import imageio
import imageio.v3 as iio
import numpy as np
import pytest
import torch

import easycache.metrics as metrics
import tools.video_metrics as vm

SCRIPT = Path(vm.__file__)
REAL_LOAD_LPIPS = metrics.load_lpips
H, W, T = 48, 64, 10
LEVELS = np.array([40, 80, 120, 160, 200], dtype=np.uint8)


def gray_video(seed: int = 0, frames: int = T, height: int = H, width: int = W) -> np.ndarray:
    """Random gray frames from a few levels: few colors, so GIF stores them exactly too."""
    rng = np.random.default_rng(seed)
    gray = rng.choice(LEVELS, (frames, height, width))
    return np.repeat(gray[..., None], 3, axis=3)


def write_video(path: Path, frames: np.ndarray) -> Path:
    """Write losslessly: mp4 as lossless RGB H.264, gif with <= 256 colors per frame."""
    if path.suffix == ".gif":
        iio.imwrite(path, frames, duration=100, loop=0)
    else:
        writer = imageio.get_writer(
            path, fps=8, codec="libx264rgb", pixelformat="rgb24", output_params=["-qp", "0"],
            macro_block_size=1, quality=None,
        )
        for frame in frames:
            writer.append_data(frame)
        writer.close()
    assert np.array_equal(np.stack([f[..., :3] for f in iio.imiter(path)]), frames), "writer not lossless"
    return path


def add_noise(frames: np.ndarray, levels: list[int], seed: int = 1) -> np.ndarray:
    """Add +-d to every pixel of frame i (d = levels[i]); squared error is exactly d**2."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1, 1], frames.shape[:3])[..., None]
    noise = sign * np.asarray(levels)[:, None, None, None]
    return (frames.astype(np.int16) + noise).astype(np.uint8)


def fake_lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Stand-in LPIPS: mean absolute difference per frame (inputs in [-1, 1])."""
    assert x.min() >= -1 and x.max() <= 1 and y.min() >= -1 and y.max() <= 1
    return (x - y).abs().flatten(1).mean(1)


@pytest.fixture(autouse=True)
def no_real_lpips(monkeypatch):
    """The command line never loads real LPIPS (it may download weights); it gets the stand-in."""
    monkeypatch.setattr(vm, "load_lpips", lambda net, device: fake_lpips)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = vm.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, tmp_path: Path, original: Path, generated: Path, *extra: str) -> tuple[str, dict]:
    out_json = tmp_path / "out" / "metrics.json"
    out_json.unlink(missing_ok=True)  # each call's own report (an existing --json is refused)
    code, out, err = run_cli(
        capsys, "--original_video", original, "--generated_video", generated, "--json", out_json, *extra
    )
    assert code == 0, err
    return out, json.loads(out_json.read_text())


# ---------------------------------------------------------------- metric values


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_identical_videos_give_inf_psnr_and_ssim_one(tmp_path, capsys, suffix):
    frames = gray_video()
    a = write_video(tmp_path / f"a{suffix}", frames)
    b = write_video(tmp_path / f"b{suffix}", frames)
    out, report = run_json(capsys, tmp_path, a, b)
    assert "PSNR: inf dB" in out
    assert "SSIM: 1.0000" in out
    assert "LPIPS: 0.0000" in out
    assert report["psnr"] == "inf"
    assert report["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert report["lpips"] == 0.0
    assert (report["frames"], report["height"], report["width"]) == (T, H, W)
    assert report["per_frame"]["psnr"] == ["inf"] * T
    assert len(report["per_frame"]["ssim"]) == len(report["per_frame"]["lpips"]) == T


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_known_noise_gives_formula_psnr(tmp_path, capsys, suffix):
    d = 8
    frames = gray_video()
    a = write_video(tmp_path / f"a{suffix}", frames)
    b = write_video(tmp_path / f"b{suffix}", add_noise(frames, [d] * T))
    out, report = run_json(capsys, tmp_path, a, b)
    expected = 20 * math.log10(255 / d)  # = 10 log10(1 / MSE), MSE = (d / 255)^2
    assert report["psnr"] == pytest.approx(expected, abs=1e-3)
    assert f"PSNR: {expected:.2f} dB" in out
    assert report["per_frame"]["psnr"] == pytest.approx([expected] * T, abs=1e-3)
    assert report["ssim"] < 1.0


def test_psnr_uses_one_mse_over_the_whole_video(tmp_path, capsys):
    levels = [0, 2, 4, 8, 16, 0, 2, 4, 8, 16]  # includes noise-free frames (per-frame PSNR inf)
    frames = gray_video()
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", add_noise(frames, levels))
    _, report = run_json(capsys, tmp_path, a, b, "--chunk_size", "3")
    mse = np.mean([(d / 255) ** 2 for d in levels])
    assert report["psnr"] == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    per_frame = [math.inf if d == 0 else 20 * math.log10(255 / d) for d in levels]
    assert [math.inf if v == "inf" else v for v in report["per_frame"]["psnr"]] == pytest.approx(per_frame, abs=1e-3)


def test_chunk_size_does_not_change_results(tmp_path, capsys):
    frames = gray_video()
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", add_noise(frames, [4] * T))
    _, r1 = run_json(capsys, tmp_path, a, b, "--chunk_size", "1")
    _, r8 = run_json(capsys, tmp_path, a, b, "--chunk_size", "8")
    _, r99 = run_json(capsys, tmp_path, a, b, "--chunk_size", "99")
    for r in (r8, r99):
        for key in ("psnr", "ssim", "lpips"):
            assert r[key] == pytest.approx(r1[key], rel=1e-5)
        assert r["per_frame"]["ssim"] == pytest.approx(r1["per_frame"]["ssim"], rel=1e-5)


def test_shifted_frame_lowers_ssim(tmp_path, capsys):
    frames = gray_video()
    shifted = frames.copy()
    shifted[3] = np.roll(frames[3], 5, axis=1)
    a = write_video(tmp_path / "a.gif", frames)
    b = write_video(tmp_path / "b.gif", shifted)
    _, report = run_json(capsys, tmp_path, a, b)
    ssim = report["per_frame"]["ssim"]
    assert ssim[3] < 0.5
    assert all(v == pytest.approx(1.0, abs=1e-6) for i, v in enumerate(ssim) if i != 3)
    assert report["ssim"] == pytest.approx(sum(ssim) / T)
    assert report["ssim"] < 0.96
    assert report["per_frame"]["psnr"][3] != "inf" and report["per_frame"]["psnr"][0] == "inf"


def test_lpips_is_mean_over_frames_of_inputs_in_minus1_1(tmp_path, capsys):
    frames = gray_video()
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", add_noise(frames, [8] * T))
    out, report = run_json(capsys, tmp_path, a, b)
    expected = 2 * 8 / 255  # fake LPIPS = mean |x - y| with x, y scaled to [-1, 1]
    assert report["lpips"] == pytest.approx(expected, rel=1e-4)
    assert report["per_frame"]["lpips"] == pytest.approx([expected] * T, rel=1e-4)
    assert f"LPIPS: {expected:.4f}" in out
    assert report["lpips_status"] == "ok" and report["lpips_net"] == "alex"


def test_resize_compares_different_sizes(tmp_path, capsys):
    frames = gray_video()
    big = np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)  # nearest 2x upscale
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", big)
    out, report = run_json(capsys, tmp_path, a, b, "--resize")
    assert report["resized_from"] == [2 * H, 2 * W]
    assert (report["height"], report["width"]) == (H, W)
    assert report["psnr"] == "inf"  # 2x2 block average of equal pixels is exact
    assert "resized from 128x96" in out


# ---------------------------------------------------------------- the two PSNR forms (library)


def per_frame_psnr(d: int) -> float:
    return math.inf if d == 0 else 20 * math.log10(255 / d)


def test_both_psnr_forms_on_two_frames_with_known_noise():
    frames = gray_video(frames=2)
    m = metrics.compare_videos(frames, add_noise(frames, [2, 16]), torch.device("cpu"))
    whole = 10 * math.log10(1 / np.mean([(2 / 255) ** 2, (16 / 255) ** 2]))
    frame_mean = (per_frame_psnr(2) + per_frame_psnr(16)) / 2
    assert m.psnr == pytest.approx(whole, abs=1e-3)
    assert m.psnr_frame_mean == pytest.approx(frame_mean, abs=1e-3)
    assert m.psnr_per_frame == pytest.approx([per_frame_psnr(2), per_frame_psnr(16)], abs=1e-3)
    assert m.psnr_frame_mean > m.psnr + 5  # 33.1 vs 27.0 dB: the forms differ a lot on uneven frames
    report = metrics.metrics_to_json(m)
    assert report["psnr"] == pytest.approx(whole, abs=1e-3)
    assert report["psnr_frame_mean"] == pytest.approx(frame_mean, abs=1e-3)


def test_frame_mean_psnr_is_never_below_whole_video_psnr():
    rng = np.random.default_rng(3)
    frames = gray_video()
    for _ in range(5):
        levels = rng.integers(1, 30, T).tolist()
        m = metrics.compare_videos(frames, add_noise(frames, levels), torch.device("cpu"), chunk_size=3)
        assert m.psnr_frame_mean >= m.psnr - 1e-9
    even = metrics.compare_videos(frames, add_noise(frames, [8] * T), torch.device("cpu"))
    assert even.psnr_frame_mean == pytest.approx(even.psnr, abs=1e-9)  # equal only when frames err equally


def test_identical_videos_give_inf_for_both_psnr_forms():
    frames = gray_video()
    m = metrics.compare_videos(frames, frames.copy(), torch.device("cpu"))
    assert m.psnr == math.inf and m.psnr_frame_mean == math.inf
    report = metrics.metrics_to_json(m)
    assert report["psnr"] == report["psnr_frame_mean"] == "inf"
    json.dumps(report, allow_nan=False)  # valid strict JSON


def test_one_identical_frame_makes_the_frame_mean_inf_not_the_mean_of_the_rest():
    frames = gray_video(frames=3)
    m = metrics.compare_videos(frames, add_noise(frames, [0, 8, 8]), torch.device("cpu"))
    assert m.psnr_frame_mean == math.inf  # the documented choice: plain mean, inf counts
    assert m.psnr == pytest.approx(10 * math.log10(3 / 2 * (255 / 8) ** 2), abs=1e-3)
    assert metrics.metrics_to_json(m)["psnr_frame_mean"] == "inf"


def test_arrays_and_files_give_the_same_metrics(tmp_path):
    frames = gray_video()
    noisy = add_noise(frames, [0, 2, 4, 8, 16, 0, 2, 4, 8, 16])
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", noisy)
    from_files = metrics.compare_videos(a, b, torch.device("cpu"), lpips_fn=fake_lpips)
    from_arrays = metrics.compare_videos(frames, noisy, torch.device("cpu"), lpips_fn=fake_lpips)
    assert metrics.metrics_to_json(from_arrays) == metrics.metrics_to_json(from_files)


def test_mean_over_pairs_carries_both_psnr_forms():
    frames = gray_video(frames=2)
    uneven = metrics.compare_videos(frames, add_noise(frames, [2, 16]), torch.device("cpu"))
    even = metrics.compare_videos(frames, add_noise(frames, [8, 8]), torch.device("cpu"))
    mean = metrics.mean_metrics_to_json([uneven, even])
    assert mean["psnr"] == pytest.approx((uneven.psnr + even.psnr) / 2)
    assert mean["psnr_frame_mean"] == pytest.approx((uneven.psnr_frame_mean + even.psnr_frame_mean) / 2)
    assert mean["lpips"] is None
    identical = metrics.compare_videos(frames, frames, torch.device("cpu"))
    assert metrics.mean_metrics_to_json([identical, even])["psnr_frame_mean"] == "inf"


def test_library_imports_no_lpips_or_torchvision():
    """LPIPS stays lazy: importing the metrics pulls neither lpips nor torchvision (which breaks diffusers
    beside a CPU torch). Where torchvision is installed and works (HunyuanVideo-1.5's pins), transformers
    imports it by itself, so only lpips is held there."""
    import importlib.util

    code = "import sys, easycache.metrics; print('lpips' in sys.modules, 'torchvision' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lpips_imported, torchvision_imported = done.stdout.split()
    assert lpips_imported == "False"
    if importlib.util.find_spec("torchvision") is None:
        assert torchvision_imported == "False"


# ---------------------------------------------------------------- LPIPS availability


def test_unavailable_lpips_prints_reason_and_other_metrics(tmp_path, capsys, monkeypatch):
    def broken(net, device):
        raise metrics.LpipsUnavailable("torchvision is not installed")

    monkeypatch.setattr(vm, "load_lpips", broken)
    frames = gray_video()
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", add_noise(frames, [8] * T))
    # the exact command users run, unchanged
    code, out, err = run_cli(capsys, "--original_video", a, "--generated_video", b)
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("PSNR: 30.07 dB") for line in lines)
    assert any(line.startswith("SSIM: 0.") for line in lines)
    lpips_lines = [line for line in lines if line.startswith("LPIPS")]
    assert lpips_lines == [
        "LPIPS: unavailable (install `lpips` with torchvision: pip install lpips) - torchvision is not installed"
    ]


def test_no_lpips_skips_loading(tmp_path, capsys, monkeypatch):
    def must_not_load(net, device):
        raise AssertionError("LPIPS loaded despite --no_lpips")

    monkeypatch.setattr(vm, "load_lpips", must_not_load)
    frames = gray_video()
    a = write_video(tmp_path / "a.mp4", frames)
    out, report = run_json(capsys, tmp_path, a, a, "--no_lpips")
    assert "LPIPS: skipped (--no_lpips)" in out
    assert report["lpips"] is None and report["per_frame"]["lpips"] is None


def test_lpips_net_choice_is_passed(tmp_path, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(vm, "load_lpips", lambda net, device: seen.append((net, device.type)) or fake_lpips)
    a = write_video(tmp_path / "a.mp4", gray_video())
    run_json(capsys, tmp_path, a, a, "--lpips_net", "vgg", "--device", "cpu")
    assert seen == [("vgg", "cpu")]


def test_real_lpips_loader_reports_a_reason_without_torchvision(monkeypatch):
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(metrics.LpipsUnavailable, match="torchvision is not installed"):
        REAL_LOAD_LPIPS("alex", torch.device("cpu"))


# ---------------------------------------------------------------- directories


def test_directories_are_paired_by_file_name(tmp_path, capsys):
    orig, gen = tmp_path / "orig", tmp_path / "gen"
    orig.mkdir(), gen.mkdir()
    frames = gray_video()
    write_video(orig / "one.mp4", frames)
    write_video(gen / "one.mp4", frames)
    write_video(orig / "two.gif", frames)
    write_video(gen / "two.gif", add_noise(frames, [8] * T))
    write_video(orig / "only_here.mp4", frames)  # no partner: skipped
    (gen / "notes.txt").write_text("not a video")
    out, report = run_json(capsys, tmp_path, orig, gen)
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| video | frames | PSNR (dB) | SSIM | LPIPS |")
    assert rows[1].startswith("| one.mp4 | 10 | inf | 1.0000 |")
    assert rows[2].startswith("| two.gif | 10 | 30.07 |")
    assert rows[3].startswith("| mean (2 pairs) | | inf |")
    assert [p["name"] for p in report["pairs"]] == ["one.mp4", "two.gif"]
    assert report["mean"]["ssim"] == pytest.approx((report["pairs"][0]["ssim"] + report["pairs"][1]["ssim"]) / 2)
    assert report["mean"]["psnr"] == "inf"


# ---------------------------------------------------------------- bad input


def assert_user_error(capsys, args, *fragments: str) -> str:
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_missing_file(tmp_path, capsys):
    a = write_video(tmp_path / "a.mp4", gray_video())
    assert_user_error(
        capsys, ["--original_video", a, "--generated_video", tmp_path / "nope.mp4"],
        "generated video not found", "nope.mp4",
    )


def test_unreadable_file(tmp_path, capsys):
    a = write_video(tmp_path / "a.mp4", gray_video())
    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video")
    assert_user_error(capsys, ["--original_video", a, "--generated_video", bad], "cannot read video", "bad.mp4")


def test_different_frame_counts(tmp_path, capsys):
    frames = gray_video()
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", frames[:7])
    assert_user_error(
        capsys, ["--original_video", a, "--generated_video", b, "--chunk_size", "3"],
        "frame counts differ", "original has 10 frames", "generated has 7",
    )


def test_different_frame_sizes_suggest_resize(tmp_path, capsys):
    a = write_video(tmp_path / "a.mp4", gray_video())
    b = write_video(tmp_path / "b.mp4", gray_video(height=32, width=40))
    assert_user_error(
        capsys, ["--original_video", a, "--generated_video", b], "frame sizes differ", "64x48", "40x32", "--resize"
    )


def test_empty_file(tmp_path, capsys):
    a = write_video(tmp_path / "a.mp4", gray_video())
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert_user_error(capsys, ["--original_video", empty, "--generated_video", a], "empty", "empty.mp4")


def test_video_without_frames(tmp_path, capsys, monkeypatch):
    a = write_video(tmp_path / "a.mp4", gray_video())
    b = write_video(tmp_path / "b.mp4", gray_video())
    real_read = metrics._read_frames

    def read(path):
        return iter(()) if path.name == "b.mp4" else real_read(path)

    monkeypatch.setattr(metrics, "_read_frames", read)
    assert_user_error(capsys, ["--original_video", a, "--generated_video", b], "video has no frames", "b.mp4")


def test_directories_without_matching_pairs(tmp_path, capsys):
    orig, gen = tmp_path / "orig", tmp_path / "gen"
    orig.mkdir(), gen.mkdir()
    write_video(orig / "x.mp4", gray_video())
    write_video(gen / "y.mp4", gray_video())
    assert_user_error(capsys, ["--original_video", orig, "--generated_video", gen], "no matching video pairs", "orig", "gen")


def test_bad_pair_in_directory_names_the_pair(tmp_path, capsys):
    orig, gen = tmp_path / "orig", tmp_path / "gen"
    orig.mkdir(), gen.mkdir()
    write_video(orig / "x.mp4", gray_video())
    write_video(gen / "x.mp4", gray_video(frames=4))
    assert_user_error(capsys, ["--original_video", orig, "--generated_video", gen], "x.mp4: frame counts differ")


def test_file_and_directory_mixed(tmp_path, capsys):
    a = write_video(tmp_path / "a.mp4", gray_video())
    assert_user_error(capsys, ["--original_video", a, "--generated_video", tmp_path], "two video files or two directories")


def test_unusable_device(tmp_path, capsys):
    a = write_video(tmp_path / "a.mp4", gray_video())
    assert_user_error(capsys, ["--original_video", a, "--generated_video", a, "--device", "nosuchdevice"], "--device")


# ---------------------------------------------------------------- the command line itself


def test_command_line_runs_as_a_script(tmp_path):
    frames = gray_video()
    a = write_video(tmp_path / "video1.mp4", frames)
    b = write_video(tmp_path / "video2.mp4", add_noise(frames, [8] * T))
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), "--original_video", str(a), "--generated_video", str(b), "--no_lpips"],
        capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "PSNR: 30.07 dB" in ok.stdout and "SSIM: " in ok.stdout and "LPIPS: " in ok.stdout
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--original_video", str(a), "--generated_video", str(tmp_path / "missing.mp4")],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: ") and "Traceback" not in bad.stderr


def test_help_states_metric_definitions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        vm.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("10 * log10(1 / MSE)", "data range 1", "[-1, 1]", "AlexNet", "--lpips_net", "--json", "--resize"):
        assert fragment in text


def test_command_line_prints_both_labelled_psnr_lines(tmp_path, capsys):
    levels = [2, 16] * (T // 2)
    frames = gray_video()
    a = write_video(tmp_path / "a.mp4", frames)
    b = write_video(tmp_path / "b.mp4", add_noise(frames, levels))
    out, report = run_json(capsys, tmp_path, a, b, "--no_lpips")
    whole = 10 * math.log10(1 / np.mean([(d / 255) ** 2 for d in levels]))
    frame_mean = np.mean([20 * math.log10(255 / d) for d in levels])
    lines = out.splitlines()
    assert lines[1] == f"PSNR: {whole:.2f} dB (whole-video MSE, EasyCache's protocol)"
    assert lines[2] == f"PSNR (mean of per-frame): {frame_mean:.2f} dB (cache-dit / Sparse-VideoGen protocol)"
    assert lines[3].startswith("SSIM: ")
    assert report["psnr"] == pytest.approx(whole, abs=1e-3)
    assert report["psnr_frame_mean"] == pytest.approx(frame_mean, abs=1e-3)


def test_directory_table_and_json_carry_the_frame_mean_psnr(tmp_path, capsys):
    orig, gen = tmp_path / "orig", tmp_path / "gen"
    orig.mkdir(), gen.mkdir()
    frames = gray_video()
    write_video(orig / "even.mp4", frames)
    write_video(gen / "even.mp4", add_noise(frames, [8] * T))
    write_video(orig / "uneven.mp4", frames)
    write_video(gen / "uneven.mp4", add_noise(frames, [2, 16] * (T // 2)))
    out, report = run_json(capsys, tmp_path, orig, gen)
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| video | frames | PSNR (dB) | SSIM | LPIPS | PSNR frame-mean (dB) |"
    uneven = report["pairs"][1]
    assert rows[2].startswith("| uneven.mp4 |") and rows[2].endswith(f"| {uneven['psnr_frame_mean']:.2f} |")
    assert rows[3].endswith(f"| {report['mean']['psnr_frame_mean']:.2f} |")
    assert any(line.startswith("PSNR: whole-video MSE") for line in out.splitlines())
    assert report["mean"]["psnr_frame_mean"] == pytest.approx(
        (report["pairs"][0]["psnr_frame_mean"] + uneven["psnr_frame_mean"]) / 2
    )
    assert report["mean"]["psnr"] == pytest.approx((report["pairs"][0]["psnr"] + uneven["psnr"]) / 2)


def test_help_states_both_psnr_definitions(capsys):
    with pytest.raises(SystemExit):
        vm.main(["--help"])
    text = capsys.readouterr().out
    for fragment in ("one MSE over the whole video", "EasyCache's protocol", "averaged over frames",
                     "cache-dit / Sparse-VideoGen"):
        assert fragment in text


# ---------------------------------------------------------------- --json never destroys a file


def test_json_never_overwrites_an_input_video(tmp_path, capsys):
    """``--json`` naming one of the videos compared: refused before anything is computed, with or
    without --overwrite; the video is byte-identical afterwards."""
    a = write_video(tmp_path / "a.mp4", gray_video())
    b = write_video(tmp_path / "b.mp4", add_noise(gray_video(), [8] * T))
    before = b.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert_user_error(capsys, ["--original_video", a, "--generated_video", b, "--json", b, *extra],
                          "--json", "one of the input videos", "another --json path")
        assert_user_error(capsys, ["--original_video", a, "--generated_video", b, "--json",
                                   tmp_path / "." / "a.mp4", *extra], "one of the input videos")
    assert b.read_bytes() == before


def test_json_never_overwrites_a_video_of_the_directories_compared(tmp_path, capsys):
    orig, gen = tmp_path / "orig", tmp_path / "gen"
    orig.mkdir(), gen.mkdir()
    write_video(orig / "x.mp4", gray_video())
    write_video(gen / "x.mp4", gray_video())
    before = (gen / "x.mp4").read_bytes()
    assert_user_error(capsys, ["--original_video", orig, "--generated_video", gen, "--json", gen / "x.mp4",
                               "--overwrite"], "one of the input videos")
    assert (gen / "x.mp4").read_bytes() == before


def test_json_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    a = write_video(tmp_path / "a.mp4", gray_video())
    report = tmp_path / "report.json"
    report.write_text("my earlier report\n")
    assert_user_error(capsys, ["--original_video", a, "--generated_video", a, "--json", report],
                      "--json", "already exists", "--overwrite")
    assert report.read_text() == "my earlier report\n"
    assert_user_error(capsys, ["--original_video", a, "--generated_video", a, "--json", tmp_path], "folder")
    code, _, err = run_cli(capsys, "--original_video", a, "--generated_video", a, "--json", report, "--overwrite")
    assert code == 0, err
    assert json.loads(report.read_text())["psnr"] == "inf"
    assert not list(tmp_path.glob("*partial*")), "written whole: no partial file left"


def test_json_is_written_whole_or_not_at_all(tmp_path, capsys, monkeypatch):
    a = write_video(tmp_path / "a.mp4", gray_video())
    report = tmp_path / "report.json"
    report.write_text("my earlier report\n")

    def interrupted(self, data, *args, **kwargs):  # Ctrl-C halfway through writing the report
        with open(self, "w") as stream:
            stream.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    code, _, err = run_cli(capsys, "--original_video", a, "--generated_video", a, "--json", report, "--overwrite")
    assert code == 130 and err.strip() == "error: interrupted"
    assert report.read_text() == "my earlier report\n" and not list(tmp_path.glob("*partial*"))
