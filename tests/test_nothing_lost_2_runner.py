"""Nothing lost, round 2 (issue 27), the runner's part: two runs into one folder at once each keep
their video under its own name (item 1); a batch interrupted after its last video was sampled and
before its GIF and metrics is made again, never taken as finished (item 2); the demo never gives a
speedup above what skipping calls can give, and its run's last line counts the baseline and
EasyCache apart (item 15, the demo's half).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from loguru import logger

import easycache
import easycache.outputs as outputs
from easycache.backends.demo import DemoBackend
from easycache.runner import Backend, RunOptions, Settings, Video, run

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture()
def log():
    """The INFO lines and above logged while the test runs."""
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    yield messages
    logger.remove(sink)


# ---------------------------------------------------------------------------- item 1: one name each
class Halving(torch.nn.Module):
    def forward(self, x, timestep):
        return 0.5 * x


class OneName(Backend):
    """Ten steps of a toy denoiser; every run names its video ``same.mp4`` (as two runs started in
    the same second name theirs), its frames the run's ``tag`` so each video says whose it is."""

    name = "toy"

    def __init__(self, save_dir: Path, tag: int):
        super().__init__()
        self.save_dir, self.tag = save_dir, tag

    def parse(self, argv, need_prompt):
        return argparse.Namespace(), Settings(save_dir=self.save_dir, prompt="a", seed=0, steps=10)

    def load(self, args):
        return Halving()

    def sample(self, model, args, prompt, seed, num_videos):
        x = torch.ones(1, 3, 8, 8)
        for step in range(10):
            model(x, torch.tensor(1000.0 - 100 * step))
        return [Video(torch.full((2, 8, 8, 3), self.tag / 10), seed)]

    def video_path(self, save_dir, seed, prompt):
        return save_dir / "same.mp4"


def saved_paths(messages: list[str]) -> list[str]:
    return [m.split("Sample save to: ")[1].strip() for m in messages if "Sample save to: " in m]


def tag_of(video: Path) -> int:
    import imageio.v3 as iio

    return round(float(iio.imread(video)[0].mean()) / 255 * 10)


def test_two_runs_at_once_keep_each_video_under_its_own_name(tmp_path, monkeypatch, log):
    """Both runs choose a name before either writes (a barrier between choosing and writing): each
    video is kept, under its own name, and the logs name two paths."""
    barrier = threading.Barrier(2, timeout=30)
    write_run_json = outputs.write_run_json

    def after_both_chose(path, record):
        barrier.wait()
        return write_run_json(path, record)

    monkeypatch.setattr(outputs, "write_run_json", after_both_chose)
    errors = []

    def one_run(tag):
        try:
            run(OneName(tmp_path, tag), [], RunOptions())
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=one_run, args=(tag,)) for tag in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    saved = saved_paths(log)
    assert len(saved) == 2 and len(set(saved)) == 2, saved
    assert sorted(Path(p).name for p in saved) == ["same.mp4", "same_2.mp4"]
    assert sorted(tag_of(tmp_path / name) for name in ("same.mp4", "same_2.mp4")) == [1, 2], "each run's own video"
    for name in ("same", "same_2"):
        assert json.loads((tmp_path / f"{name}.json").read_text())["video"] == str(tmp_path / f"{name}.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.json", "same.mp4", "same_2.json", "same_2.mp4"], \
        "no reservation, lock or partial file left"


PROCESS_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path[:0] = [{root!r}, {tests!r}]
    import easycache.outputs as outputs
    from easycache.runner import RunOptions, run
    from test_nothing_lost_2_runner import OneName

    folder, tag = Path(sys.argv[1]), int(sys.argv[2])
    write_run_json = outputs.write_run_json

    def paused(path, record):  # the name is chosen: wait until the other run has chosen too
        (folder.parent / f"chosen-{{tag}}").write_text(path.name)
        deadline = time.time() + 60
        while not (folder.parent / "go").exists() and time.time() < deadline:
            time.sleep(0.05)
        return write_run_json(path, record)

    outputs.write_run_json = paused
    run(OneName(folder, tag), [], RunOptions())
""")


def test_two_processes_at_once_keep_each_video_under_its_own_name(tmp_path):
    """The issue's case: two runs (a threshold sweep on two GPUs) into one --save-path at once."""
    folder = tmp_path / "videos"
    folder.mkdir()
    script = PROCESS_RUN.format(root=str(ROOT), tests=str(ROOT / "tests"))
    runs = [subprocess.Popen([sys.executable, "-c", script, str(folder), str(tag)], stderr=subprocess.PIPE,
                             text=True, env=ONE_THREAD) for tag in (1, 2)]
    deadline = time.time() + 120
    while not all((tmp_path / f"chosen-{tag}").exists() for tag in (1, 2)):
        assert time.time() < deadline and all(r.poll() is None for r in runs), [r.communicate() for r in runs]
        time.sleep(0.05)
    (tmp_path / "go").write_text("")
    logs = [r.communicate(timeout=120)[1] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], logs
    chosen = {(tmp_path / f"chosen-{tag}").read_text() for tag in (1, 2)}
    saved = [line.split("Sample save to: ")[1] for out in logs for line in out.splitlines() if "Sample save to" in line]
    assert chosen == {"same.mp4", "same_2.mp4"} and sorted(Path(p).name for p in saved) == ["same.mp4", "same_2.mp4"]
    assert sorted(tag_of(folder / name) for name in ("same.mp4", "same_2.mp4")) == [1, 2]
    assert sorted(p.name for p in folder.iterdir()) == ["same.json", "same.mp4", "same_2.json", "same_2.mp4"]


def test_a_run_stopped_while_writing_leaves_no_reservation_and_frees_its_name(tmp_path, monkeypatch):
    def interrupted(frames, path, fps=24):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(OneName(tmp_path, 1), [], RunOptions())
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob("*partial*"))
    assert [p.name for p in tmp_path.iterdir()] == ["same.json"], "the run JSON written before the stop is kept"
    (tmp_path / "same.json").unlink()  # cleared by the user: the name is free again (no reservation left)
    monkeypatch.undo()
    run(OneName(tmp_path, 2), [], RunOptions())
    assert tag_of(tmp_path / "same.mp4") == 2 and not (tmp_path / "same_2.mp4").exists(), "the name was free again"
    run(OneName(tmp_path, 3), [], RunOptions())
    assert tag_of(tmp_path / "same.mp4") == 2 and tag_of(tmp_path / "same_2.mp4") == 3, "a finished video is kept"
    assert not list(tmp_path.glob("*.lock"))


# ---------------------------------------------------------------------------- item 2: the marker is last
DEMO = ["--model", "demo", "--infer-steps", "8"]


@pytest.fixture()
def quick_demo(monkeypatch):
    monkeypatch.setattr(DemoBackend, "timing_repeats", 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def job_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("stopped_in", ["compare_videos", "side_by_side_gif"])
def test_a_batch_stopped_before_its_gif_and_metrics_makes_the_job_again(tmp_path, monkeypatch, quick_demo, log,
                                                                          stopped_in):
    """Ctrl-C after the EasyCache video is sampled and before the metrics (or the GIF): the rerun
    makes the job again, and then every file of the job is there."""
    import easycache.comparison as comparison
    import easycache_sample_video

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving left\n")
    folder = tmp_path / "videos"
    job = [*DEMO, "--prompt-file", str(prompts), "--seeds", "1", "--save-path", str(folder)]
    with monkeypatch.context() as patch:
        patch.setattr(comparison, stopped_in, interrupted)
        assert easycache_sample_video.main(job) == 130
    assert not (folder / "00000_seed1_a red circle moving left_easycache.mp4").exists(), \
        "the job's mark of finished is written after its metrics and GIF"
    log.clear()
    assert easycache_sample_video.main(job) == 0
    assert not any("already finished" in m for m in log), "the interrupted job is not taken as finished"
    stem = "00000_seed1_a red circle moving left"
    assert job_files(folder) == sorted([f"{stem}_baseline.json", f"{stem}_baseline.mp4", f"{stem}_easycache.json",
                                        f"{stem}_easycache.mp4", f"{stem}_metrics.json", f"{stem}_side_by_side.gif",
                                        "summary.json"])
    assert json.loads((folder / f"{stem}_metrics.json").read_text())["calls_speedup"] > 1
    assert json.loads((folder / "summary.json").read_text())["finished"] == 1


def test_the_metrics_and_the_gif_are_written_whole(tmp_path, monkeypatch, quick_demo):
    """Ctrl-C halfway through the GIF: no half GIF under its name, no partial file left."""
    import imageio

    import easycache_sample_video

    real = imageio.mimsave

    def half_then_interrupted(path, frames, **kwargs):
        if not str(path).endswith(".gif"):
            return real(path, frames, **kwargs)
        real(path, frames[:1], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio, "mimsave", half_then_interrupted)
    assert easycache_sample_video.main([*DEMO, "--prompt", "a red circle moving left", "--seed", "1",
                                        "--save-path", str(tmp_path)]) == 130
    assert not list(tmp_path.glob("*.gif")) and not list(tmp_path.glob("*partial*")) and not list(tmp_path.glob("*.lock"))
    assert list(tmp_path.glob("*_metrics.json")), "the metrics, written whole before the GIF, are kept"
    assert not list(tmp_path.glob("*_easycache.mp4")), "nor is the final video there without them"


# ---------------------------------------------------------------------------- item 15: speedups within the bound
def test_variants_are_timed_interleaved(tmp_path, monkeypatch):
    """Each variant timed three times: baseline, EasyCache, baseline, EasyCache, ... (never three
    baselines in a row, which a background load can slow alone)."""
    import easycache_sample_video

    order = []
    sample = DemoBackend.sample

    def probed(self, pipe, args, prompt, seed, num_videos):
        order.append("baseline" if easycache.installed_cache(pipe).config.thresh == 0 else "easycache")
        return sample(self, pipe, args, prompt, seed, num_videos)

    monkeypatch.setattr(DemoBackend, "sample", probed)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert easycache_sample_video.main([*DEMO, "--prompt", "a red circle moving left", "--seed", "1",
                                        "--save-path", str(tmp_path)]) == 0
    assert order == ["baseline", "easycache"] * DemoBackend.timing_repeats


@pytest.fixture(scope="module")
def disturbed_demo(tmp_path_factory):
    """The demo with its baseline's computed calls slowed (as a background job or a cold start slows
    them): its log lines, metrics JSON and folder."""
    import easycache_sample_video

    folder = tmp_path_factory.mktemp("disturbed")
    load = DemoBackend.load

    def load_then_disturb(self, args):
        pipe = load(self, args)

        started = []

        def start(module, inputs):
            started[:] = [time.perf_counter()]

        def slow(module, inputs, output):  # each baseline call takes three times its own time, whatever the load
            if easycache.installed_cache(pipe).config.thresh == 0:
                time.sleep(2 * (time.perf_counter() - started[0]))

        pipe.transformer.x_embedder.proj.register_forward_pre_hook(start)
        pipe.transformer.norm_out.register_forward_hook(slow)
        return pipe

    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    repeats = DemoBackend.timing_repeats
    DemoBackend.load, DemoBackend.timing_repeats = load_then_disturb, 1
    try:
        assert easycache_sample_video.main(["--model", "demo", "--infer-steps", "20", "--prompt",
                                            "a red circle moving left", "--seed", "0", "--save-path", str(folder)]) == 0
    finally:
        DemoBackend.load, DemoBackend.timing_repeats = load, repeats
        logger.remove(sink)
    (metrics_path,) = folder.glob("*_metrics.json")
    return messages, json.loads(metrics_path.read_text()), folder


def test_no_speedup_above_calls_over_computed_is_given_as_a_result(disturbed_demo):
    messages, metrics, _ = disturbed_demo
    bound = metrics["calls_speedup"] * 1.05
    assert metrics["transformer_speedup"] > bound, "the premise: the baseline was slowed past the bound"
    assert metrics["transformer_speedup_exceeds_calls_ratio"] is True
    assert "calls / computed" in metrics["timing_artefact"]
    given = [float(x) for m in messages for x in re.findall(r"(?:transformer|end to end) (\d+\.\d+)x", m)]
    assert all(x <= bound for x in given), [m for m in messages if "EasyCache vs baseline" in m]
    assert any("not reported" in m and "timing artefact" in m for m in messages)
    for key in ("transformer_speedup", "end_to_end_speedup"):  # a figure within the bound, or marked
        assert metrics[key] <= bound or metrics[f"{key}_exceeds_calls_ratio"]


def test_the_gif_label_gives_no_speedup_above_the_bound(tmp_path, monkeypatch):
    import easycache.comparison as comparison

    labels = []

    def gif(baseline, cached, path, labels_=None, **kwargs):
        labels.append(kwargs.get("labels", labels_))
        Path(path).write_bytes(b"GIF89a")
        return path

    monkeypatch.setattr(comparison, "side_by_side_gif", gif)
    frames = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    summary = {"calls": 50, "computed": 13, "speedup": 50 / 13, "seconds": 1.0, "thresh": 0.025}
    for base_seconds, claimed in ((9.0, False), (3.0, True)):
        labels.clear()
        result = comparison.write_comparison(
            frames, frames, {"summary": {**summary, "seconds": base_seconds}, "end_to_end_seconds": 1.0},
            {"summary": summary, "end_to_end_seconds": 1.0}, [tmp_path / "a.mp4", tmp_path / "b.mp4"],
            tmp_path / "m.json", tmp_path / "g.gif", "test")
        assert result["transformer_speedup_exceeds_calls_ratio"] is not claimed
        assert ("3.0x" in labels[0][1]) is claimed and "9.0x" not in labels[0][1], labels


def test_the_runs_last_line_counts_baseline_and_easycache_apart(disturbed_demo):
    messages, metrics, _ = disturbed_demo
    (total,) = [m for m in messages if "EasyCache over this run" in m]
    computed = round(20 / metrics["calls_speedup"])
    assert "/40" not in total, total
    assert "baseline (threshold 0): 1 videos, 20/20 transformer calls computed (1.00x fewer)" in total, total
    assert f"EasyCache: 1 videos, {computed}/20 transformer calls computed" in total, total


# ---------------------------------------------------------------------------- round 3: any file of a name
class Compared(OneName):
    """``OneName`` with a baseline compared: ``same_baseline.*``, ``same_easycache.*``, the metrics
    and the GIF (both stubbed: written, not measured). ``paused``: an event its sampling waits on."""

    compare_with_baseline = True

    def __init__(self, save_dir: Path, tag: int, paused: threading.Event | None = None):
        super().__init__(save_dir, tag)
        self.paused, self.sampling = paused, threading.Event()

    def sample(self, model, args, prompt, seed, num_videos):
        self.sampling.set()
        if self.paused is not None:
            assert self.paused.wait(30), "never let go"
        return super().sample(model, args, prompt, seed, num_videos)


@pytest.fixture()
def stub_comparison(monkeypatch):
    import easycache.comparison as comparison

    def write(base, cached, base_timing, cached_timing, videos, metrics_path, gif_path, timing_note):
        metrics_path.write_text(json.dumps({"baseline": str(videos[0]), "easycache": str(videos[1])}))
        gif_path.write_bytes(b"GIF89a")
        return {}

    monkeypatch.setattr(comparison, "write_comparison", write)


@pytest.mark.parametrize("users", ["same.json"])
def test_a_users_run_json_without_a_video_is_never_written_over(tmp_path, users):
    (tmp_path / users).write_text("the user's own notes")
    run(OneName(tmp_path, 1), [], RunOptions())
    assert (tmp_path / users).read_text() == "the user's own notes"
    assert tag_of(tmp_path / "same_2.mp4") == 1 and (tmp_path / "same_2.json").is_file()


@pytest.mark.parametrize("users", ["same_metrics.json", "same_side_by_side.gif", "same_baseline.json",
                                   "same_easycache.json", "same_easycache.mp4"])
def test_any_file_a_compared_run_writes_makes_its_name_taken(tmp_path, stub_comparison, users):
    (tmp_path / users).write_bytes(b"the user's own file")
    run(Compared(tmp_path, 1), [], RunOptions())
    assert (tmp_path / users).read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != users) == [
        "same_2_baseline.json", "same_2_baseline.mp4", "same_2_easycache.json", "same_2_easycache.mp4",
        "same_2_metrics.json", "same_2_side_by_side.gif"]


class WithNotes(OneName):
    """A code base that writes ``<name>_notes.txt`` beside each video (as HunyuanVideo-1.5 its _config.json)."""

    def beside(self, path):
        path.with_name(f"{path.stem}_notes.txt").write_text(f"notes of run {self.tag}")

    def beside_paths(self, path):
        return [path.with_name(f"{path.stem}_notes.txt")]


def test_a_file_the_code_base_writes_beside_makes_its_name_taken(tmp_path):
    (tmp_path / "same_notes.txt").write_text("the user's own notes")
    run(WithNotes(tmp_path, 1), [], RunOptions())
    assert (tmp_path / "same_notes.txt").read_text() == "the user's own notes"
    assert (tmp_path / "same_2_notes.txt").read_text() == "notes of run 1" and tag_of(tmp_path / "same_2.mp4") == 1


def test_a_baseline_run_and_an_easycache_run_at_once_never_share_a_name(tmp_path, monkeypatch, stub_comparison, log):
    """--no-easycache (baseline only) and EasyCache (baseline + EasyCache) into one folder, both
    choosing a name before either writes (a barrier at each run's first file): each keeps its own
    files under its own name."""
    barrier = threading.Barrier(2, timeout=30)
    write_run_json = outputs.write_run_json
    waited = set()

    def after_both_chose(path, record):
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()
        return write_run_json(path, record)

    monkeypatch.setattr(outputs, "write_run_json", after_both_chose)
    errors = []

    def one_run(tag, enabled):
        try:
            run(Compared(tmp_path, tag), [], RunOptions(enabled=enabled))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=one_run, args=(1, False)), threading.Thread(target=one_run, args=(2, True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    saved = sorted(Path(p).name for p in saved_paths(log))
    assert len(saved) == 3 and len(set(saved)) == 3, saved
    stems = {name.rsplit("_", 1)[0] for name in saved}
    assert stems == {"same", "same_2"}, saved
    for stem in stems:
        baseline = json.loads((tmp_path / f"{stem}_baseline.json").read_text())
        enabled = baseline["job"]["easycache"]["enabled"]
        assert (tmp_path / f"{stem}_easycache.mp4").exists() is enabled, "a name holds one run's files"
        assert tag_of(tmp_path / f"{stem}_baseline.mp4") == (2 if enabled else 1)
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*partial*"))


def test_batches_of_other_variants_into_one_folder_make_one_job_at_a_time(tmp_path, stub_comparison, log):
    """An EasyCache batch making a job while a --no-easycache batch of the same job starts: they
    lock the job's name, not their last files (different per variants), so the second leaves it."""
    paused, errors = threading.Event(), []
    making = Compared(tmp_path, 2, paused)

    def easycache_batch():
        try:
            run(making, [], RunOptions(prompts=["a"], seeds=[0]))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    first = threading.Thread(target=easycache_batch)
    first.start()
    assert making.sampling.wait(30), "the EasyCache batch never started its job"
    run(Compared(tmp_path, 1), [], RunOptions(enabled=False, prompts=["a"], seeds=[0]))
    assert any("00000_seed0_a.mp4: its name is reserved by process" in m for m in log), log
    assert not (tmp_path / "00000_seed0_a_baseline.mp4").exists(), "the baseline batch left the job to the other"
    paused.set()
    first.join(60)
    assert not errors, errors
    assert tag_of(tmp_path / "00000_seed0_a_baseline.mp4") == 2 and tag_of(tmp_path / "00000_seed0_a_easycache.mp4") == 2
    assert json.loads((tmp_path / "00000_seed0_a_baseline.json").read_text())["job"]["easycache"]["enabled"] is True
    assert not list(tmp_path.glob("*.lock"))


# ---------------------------------------------------------------------------- a write that fails
def no_space_in(folder: Path, monkeypatch):
    """Writing a video into ``folder`` fails as a full disk fails; elsewhere it works."""
    write_video = outputs.write_video

    def full(frames, path, fps=24):
        if Path(path).parent == folder:
            raise OSError(28, "No space left on device", str(path))
        return write_video(frames, path, fps=fps)

    monkeypatch.setattr(outputs, "write_video", full)


def test_a_video_that_cannot_be_written_is_one_line_and_saved_elsewhere(tmp_path, monkeypatch, quick_demo, capsys):
    """The disk fills while the demo samples: one error line naming the path and the reason, exit 1,
    no traceback; the sampled set is written into a temporary folder the line names, and what was
    written in the save folder before (the run JSON) is kept."""
    import tempfile

    import easycache_sample_video

    folder, spare = tmp_path / "videos", tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    no_space_in(folder, monkeypatch)
    code = easycache_sample_video.main([*DEMO, "--prompt", "a red circle moving left", "--seed", "1",
                                        "--save-path", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("error: could not write ") and str(folder) in err[0] and "No space left on device" in err[0]
    (rescue,) = spare.glob("easycache_unsaved_*")
    assert f"saved in {rescue} instead" in err[0]
    assert sorted(p.suffix for p in rescue.iterdir()) == [".gif", ".json", ".json", ".json", ".mp4", ".mp4"]
    assert [p.suffix for p in folder.iterdir() if not p.name.startswith(".")] == [".json"], "the run JSON is kept"
    assert not list(folder.glob("*.lock")) and not list(folder.glob("*partial*"))


class TwoVideos(OneName):
    def parse(self, argv, need_prompt):
        return argparse.Namespace(), Settings(save_dir=self.save_dir, prompt="a", seed=0, steps=10, num_videos=2)

    def sample(self, model, args, prompt, seed, num_videos):
        (video,) = super().sample(model, args, prompt, seed, 1)
        return [Video(video.frames, seed), Video(video.frames, seed + 1)]


def test_videos_after_the_one_that_failed_are_saved_elsewhere_too(tmp_path, monkeypatch):
    """Two videos of one run, the disk full after the first: the first kept where it goes, the
    second in the temporary folder the line names (never dropped because the first one went)."""
    import tempfile

    from easycache.errors import RunFailed

    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    folder = tmp_path / "videos"
    write_video, calls = outputs.write_video, []

    def full_after_one(frames, path, fps=24):
        calls.append(path)
        if Path(path).parent == folder and len(calls) > 1:
            raise OSError(28, "No space left on device", str(path))
        return write_video(frames, path, fps=fps)

    monkeypatch.setattr(outputs, "write_video", full_after_one)
    with pytest.raises(RunFailed) as failed:
        run(TwoVideos(folder, 1), [], RunOptions())
    (rescue,) = spare.glob("easycache_unsaved_*")
    assert f"could not write {folder / 'same_2.mp4'} (No space left on device): saved in {rescue} instead" in str(failed.value)
    assert "the videos written before it are kept (same.mp4)" in str(failed.value)
    assert tag_of(folder / "same.mp4") == 1 and tag_of(rescue / "same_2.mp4") == 1
    assert not list(folder.glob("*.lock")) and not list(rescue.glob("*.lock"))


def test_a_batch_video_that_cannot_be_written_stops_the_run_in_one_line(tmp_path, monkeypatch):
    from easycache.errors import RunFailed

    no_space_in(tmp_path, monkeypatch)
    with pytest.raises(RunFailed, match=r"could not write .*00000_seed0_a\.mp4 \(No space left on device\): "
                                        r"stopped at this video.*the same command resumes"):
        run(OneName(tmp_path, 1), [], RunOptions(prompts=["a"], seeds=[0]))
    assert not list(tmp_path.glob("*.lock"))
