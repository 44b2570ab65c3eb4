"""Many videos over Ray workers (``--ray``), on a local Ray cluster started here (127.0.0.1, no
dashboard, no usage stats): the plain batch's videos to the byte, each made once; a killed worker's
job made elsewhere; a finished set starts nothing; a mismatched job refused; a failing job recorded.

The backends below are the demo's with a probe: each ``sample`` call appends ``prompt|seed|worker``
to a log, so a test can count how often each job was sampled and by which worker."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from easycache.ray_jobs import RAY_FLOOR
from easycache.versions import shortfall

_missing = shortfall("the Ray tests (--ray)", "ray", RAY_FLOOR)
if _missing:
    pytest.skip(_missing, allow_module_level=True)

import ray  # noqa: E402
import torch  # noqa: E402

import easycache_sample_video  # noqa: E402
from easycache.backends.demo import DemoBackend  # noqa: E402
from easycache.errors import RunFailed, UsageError  # noqa: E402
from easycache.ray_jobs import JobQueue, RayOptions, run_on_ray  # noqa: E402
from easycache.runner import RunOptions, run  # noqa: E402

PROMPTS = ["a red circle moving left", "a blue square moving right", "a green circle moving up",
           "a yellow square moving down"]
SEEDS = [1, 2]
STEPS = ["--infer-steps", "20"]  # fewer than the demo's 50: the same code path, a quicker test
SAMPLES_PER_JOB = DemoBackend.timing_repeats * 2  # the baseline and EasyCache, each timed three times
KILL_PROMPT = PROMPTS[2]
FAIL_PROMPT = "a prompt the probe always fails"

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers get these backends by value


class ProbedDemo(DemoBackend):
    """The demo, logging each ``sample`` call to ``$EASYCACHE_TEST_PROBE``."""

    def sample(self, pipe, args, prompt, seed, num_videos):
        log = os.environ["EASYCACHE_TEST_PROBE"]
        worker = ray.get_runtime_context().get_actor_name() if ray.is_initialized() else "driver"
        with open(log, "a") as stream:
            stream.write(f"{prompt}|{seed}|{worker}|{torch.get_num_threads()}\n")
        self.probe(prompt, Path(log))
        return super().sample(pipe, args, prompt, seed, num_videos)

    def probe(self, prompt: str, log: Path) -> None:
        pass


class HangsOnce(ProbedDemo):
    """The first worker to sample KILL_PROMPT says so (``hung`` beside the log) and hangs there."""

    def probe(self, prompt, log):
        marker = log.with_name("hung")
        if prompt == KILL_PROMPT and not marker.exists():
            marker.write_text(ray.get_runtime_context().get_actor_name())
            time.sleep(600)


class FailsOne(ProbedDemo):
    def probe(self, prompt, log):
        if prompt == FAIL_PROMPT:
            raise RuntimeError("CUDA out of memory (the probe's)")


class MissingWeights(DemoBackend):
    def load(self, args):
        from easycache.errors import UsageError

        raise UsageError("--model-base /nowhere: no weights there; pass the folder the weights are in")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["EASYCACHE_TEST_PROBE"] = str(tmp_path_factory.mktemp("probe") / "calls.log")  # workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def probe(cluster):
    log = Path(os.environ["EASYCACHE_TEST_PROBE"])
    log.unlink(missing_ok=True)
    log.with_name("hung").unlink(missing_ok=True)
    return log


def calls(log: Path) -> list[tuple[str, int, str]]:
    """(prompt, seed, worker) of each ``sample`` call."""
    return [(p, int(s), w) for p, s, w, _ in (line.split("|") for line in log.read_text().splitlines())]


def threads(log: Path) -> set[int]:
    return {int(line.split("|")[3]) for line in log.read_text().splitlines()}


def argv(save_dir: Path) -> list[str]:
    return ["--model", "demo", *STEPS, "--save-path", str(save_dir)]


def options(prompts=PROMPTS, seeds=SEEDS) -> RunOptions:
    return RunOptions(prompts=list(prompts), seeds=list(seeds))


def videos(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.mp4"))}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".lock")]


@pytest.fixture(scope="module")
def plain_batch(tmp_path_factory, one_thread):
    """The 8 videos made by the plain batch mode in this process (one torch thread, as each worker)."""
    folder = tmp_path_factory.mktemp("plain")
    run(DemoBackend(), argv(folder), options())
    return folder


@pytest.fixture(scope="module")
def on_ray(tmp_path_factory, cluster, plain_batch):
    """The same 8 videos over 2 workers, and the probe's log of that run."""
    folder = tmp_path_factory.mktemp("ray")
    log = Path(os.environ["EASYCACHE_TEST_PROBE"])
    log.unlink(missing_ok=True)
    written = run_on_ray(ProbedDemo(), argv(folder), options(), (), RayOptions(workers=2))
    return folder, written, calls(log), threads(log)


def test_eight_videos_over_two_workers_are_the_plain_batch_to_the_byte(plain_batch, on_ray):
    folder, written, sampled, torch_threads = on_ray
    assert len(written) == 8 and len(videos(plain_batch)) == 16  # each job: its baseline and its EasyCache video
    assert videos(folder) == videos(plain_batch)
    per_job = {(p, s): sum(1 for c in sampled if c[:2] == (p, s)) for p in PROMPTS for s in SEEDS}
    assert set(per_job.values()) == {SAMPLES_PER_JOB}, f"each job sampled once (timed 3x per variant): {per_job}"
    assert len({w for _, _, w in sampled}) == 2, "both workers took jobs"
    assert torch_threads == {1}, "one CPU each: one torch thread"
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["videos"], summary["finished"], summary["failed"]) == (8, 8, 0)
    plain = json.loads((plain_batch / "summary.json").read_text())
    assert (summary["computed"], summary["transformer_calls"]) == (plain["computed"], plain["transformer_calls"])
    assert summary["estimated_seconds_saved"] > 0 and summary["computed"] < summary["transformer_calls"]
    record = json.loads((folder / "00000_seed1_a red circle moving left_easycache.json").read_text())
    assert record["video"] == str(folder / "00000_seed1_a red circle moving left_easycache.mp4"), \
        "the run JSON names the video where the driver wrote it, not the worker's staging folder"
    assert not leftovers(folder)


def test_a_rerun_of_a_finished_set_starts_no_worker_and_loads_no_model(on_ray, monkeypatch):
    folder = on_ray[0]
    before = videos(folder)

    def no_worker(self):
        raise AssertionError("a worker was started for a finished set")

    monkeypatch.setattr(JobQueue, "start_worker", no_worker)
    assert run_on_ray(MissingWeights(), argv(folder), options(), (), RayOptions(workers=2)) == []
    assert videos(folder) == before
    assert json.loads((folder / "summary.json").read_text())["finished"] == 8


def test_a_mismatched_job_is_refused_in_one_line_before_any_worker(on_ray, monkeypatch, capsys):
    folder = on_ray[0]
    monkeypatch.setattr(JobQueue, "start_worker", lambda self: pytest.fail("a worker was started"))
    prompt_file = folder.parent / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS))
    code = easycache_sample_video.main(["--model", "demo", "--infer-steps", "21", "--save-path", str(folder),
                                        "--prompt-file", str(prompt_file), "--seeds", "1", "2", "--ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "made by another job" in err and "infer_steps: 20 there, 21 now" in err


def test_a_killed_worker_s_job_is_made_elsewhere_nothing_lost_nothing_twice(plain_batch, probe, tmp_path):
    folder = tmp_path / "videos"
    hung = probe.with_name("hung")
    killed = []

    def kill_the_hung_worker():
        deadline = time.time() + 240
        while not hung.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)  # its name is written whole
        killed.append(hung.read_text())
        ray.kill(ray.get_actor(killed[0]))

    killer = threading.Thread(target=kill_the_hung_worker, daemon=True)
    killer.start()
    written = run_on_ray(HangsOnce(), argv(folder), options(), (), RayOptions(workers=2))
    killer.join(timeout=10)
    assert killed, "a worker hung on its job and was killed"
    assert len(written) == 8 and videos(folder) == videos(plain_batch), "nothing lost, the same videos"
    sampled = calls(probe)
    retried = [w for p, s, w in sampled if p == KILL_PROMPT and s == SEEDS[0]]
    assert retried[0] == killed[0] and len(retried) == 1 + SAMPLES_PER_JOB, "killed at its first sample, then made whole"
    assert killed[0] not in retried[1:], "made again by another worker"
    others = {(p, s): sum(1 for c in sampled if c[:2] == (p, s)) for p in PROMPTS for s in SEEDS}
    del others[(KILL_PROMPT, SEEDS[0])]
    assert set(others.values()) == {SAMPLES_PER_JOB}, "no other job made twice"
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["finished"], summary["failed"]) == (8, 0)
    assert not leftovers(folder) and not list(folder.glob("*_2.mp4"))


def test_a_job_that_always_fails_is_recorded_and_the_others_are_made(probe, tmp_path):
    folder = tmp_path / "videos"
    prompts = [PROMPTS[0], FAIL_PROMPT, PROMPTS[1]]
    with pytest.raises(RunFailed, match="1 of 3 videos failed after 3 tries each"):
        run_on_ray(FailsOne(), argv(folder), options(prompts, [5]), (), RayOptions(workers=2))
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["videos"], summary["finished"], summary["failed"]) == (3, 2, 1)
    failed = summary["jobs"][1]
    assert failed["prompt"] == FAIL_PROMPT and not failed["finished"]
    assert failed["failed"]["tries"] == 3 and "CUDA out of memory (the probe's)" in failed["failed"]["error"]
    assert len(set(failed["failed"]["workers"])) == 2, "tried on both workers, not three times on one"
    assert len(videos(folder)) == 4 and not leftovers(folder)
    assert sum(1 for p, _, _ in calls(probe) if p == FAIL_PROMPT) == 3


def test_a_load_error_stops_the_run_in_one_line(cluster, tmp_path):
    with pytest.raises(UsageError, match="no weights there"):
        run_on_ray(MissingWeights(), argv(tmp_path), options(seeds=[1]), (), RayOptions(workers=1))
    assert not videos(tmp_path)


def test_cpus_per_worker_are_the_worker_s_threads(probe, tmp_path):
    run_on_ray(ProbedDemo(), argv(tmp_path), options(PROMPTS[:1], [3]), (), RayOptions(workers=1, cpus_per_worker=2))
    assert threads(probe) == {2} and len(videos(tmp_path)) == 2


def test_the_probe_finds_a_live_cluster_s_gcs(cluster):
    """The checks before ``ray.init`` pass a real GCS (HTTP/2 greeting, a trial join in a child)."""
    import socket

    from easycache import ray_jobs

    address = ray.get_runtime_context().gcs_address
    host, port = ray_jobs.split_address(address)
    with socket.create_connection((host, port), timeout=5) as sock:
        assert ray_jobs.speaks_http2(sock)
    ray_jobs.check_cluster(ray_jobs.Target(address, f"--ray {address}", "-"))  # raises nothing


def test_cpus_per_worker_no_machine_has_is_refused_in_one_line(cluster, tmp_path, monkeypatch):
    """Ray would keep such a worker pending forever ("0/2", silent): refused before any worker."""
    monkeypatch.setattr(JobQueue, "start_worker", lambda self: pytest.fail("a worker was started"))
    with pytest.raises(UsageError) as refused:
        run_on_ray(ProbedDemo(), argv(tmp_path), options(PROMPTS[:1], [1, 2]), (), RayOptions(cpus_per_worker=4))
    assert str(refused.value) == ("--ray-cpus-per-worker 4: no machine of the cluster has 4 CPUs (the largest has 2); "
                                  "pass 2 or less, or add a machine with 4 CPUs")
    assert not videos(tmp_path) and not (tmp_path / "summary.json").exists()


def test_a_worker_that_waits_for_a_machine_is_said_once_and_the_others_go_on(probe, tmp_path, monkeypatch):
    """Two workers of 2 CPUs on a 2-CPU cluster: the second waits; one warning line says so, the
    first makes every video."""
    from loguru import logger

    monkeypatch.setattr(JobQueue, "TICK_SECONDS", 0.5)
    # Below the shortest the second worker can wait here: the first worker's start (about 4 s on an idle
    # machine) and both videos (2 s more); an idle CI run finished in 6 s, under the 8 s this once was.
    # On a loaded machine the first worker may wait past it too: each waiter is still said once.
    monkeypatch.setattr(JobQueue, "PENDING_WARN_SECONDS", 2.0)
    said: list[str] = []
    sink = logger.add(lambda message: said.append(message.record["message"]), level="WARNING")
    try:
        written = run_on_ray(ProbedDemo(), ["--model", "demo", "--infer-steps", "12", "--save-path", str(tmp_path)],
                             options(PROMPTS[:1], [1, 2]), (), RayOptions(workers=2, cpus_per_worker=2))
    finally:
        logger.remove(sink)
    assert len(written) == 2 and len(videos(tmp_path)) == 4
    waits = [line for line in said if "has waited" in line]
    # the worker left without room is said once; on a loaded machine the first may also wait past the
    # warning's 8 s before Ray places it, and is then said once too (which worker Ray places first is Ray's)
    waiting = [line.split(" has waited")[0] for line in waits]
    assert waits and len(waiting) == len(set(waiting)) <= 2, said
    assert all("2 free CPUs" in line and "of 2 workers started meanwhile" in line for line in waits), said
    assert len({w for _, _, w in calls(probe)}) == 1, "the worker that had room made both videos"
