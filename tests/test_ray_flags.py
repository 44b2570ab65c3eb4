"""``--ray``'s bad input, refused in one line (exit 2) before any model loads or worker starts; these
need no Ray cluster, and the ones that do not look for Ray run where it is not installed."""

from __future__ import annotations

import pytest

import easycache_sample_video
from easycache import versions
from easycache.errors import RunFailed
from easycache.ray_jobs import RAY_FLOOR, JobQueue
from easycache.versions import shortfall

NEEDS_RAY = pytest.mark.skipif(shortfall("--ray", "ray", RAY_FLOOR) is not None,
                               reason=shortfall("--ray", "ray", RAY_FLOOR) or "")


@pytest.fixture()
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red circle moving left\na blue square moving right\n")
    return path


@pytest.fixture()
def nothing_starts(monkeypatch):
    """Loading a model or starting a worker fails the test."""
    from easycache.backends.demo import DemoBackend

    monkeypatch.setattr(DemoBackend, "load", lambda self, args: pytest.fail("the model was loaded"))
    monkeypatch.setattr(JobQueue, "start_worker", lambda self: pytest.fail("a worker was started"))


def refused(capsys, argv: list[str]) -> str:
    code = easycache_sample_video.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def demo(tmp_path, *flags) -> list[str]:
    return ["--model", "demo", "--save-path", str(tmp_path / "videos"), *flags]


@pytest.mark.parametrize("flags, says", [
    (["--prompt", "a red circle", "--ray"], "--ray shares many videos out over workers: pass --prompt-file"),
    (["--seeds", "1", "--ray-workers", "2"], "--ray-workers is for Ray workers: add --ray"),
    (["--seeds", "1", "--ray", "--ray-max-retries", "-1"], "--ray-max-retries -1: pass 0 or more"),
    (["--seeds", "1", "--ray", "--ray-workers", "0"], "--ray-workers 0: pass 1 or more"),
    (["--seeds", "1", "--ray", "--ray-cpus-per-worker", "0"], "--ray-cpus-per-worker 0: pass 1 or more"),
])
def test_bad_ray_flags_are_refused_in_one_line(tmp_path, capsys, nothing_starts, flags, says):
    assert says in refused(capsys, demo(tmp_path, "--prompt", "x", *flags))


def test_ray_under_torchrun_is_refused(tmp_path, capsys, nothing_starts, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "not under torchrun" in refused(capsys, demo(tmp_path, "--seeds", "1", "2", "--ray"))


def test_without_ray_installed_ray_says_how_to_install_it(tmp_path, capsys, nothing_starts, monkeypatch, prompts):
    real = versions.installed
    monkeypatch.setattr(versions, "installed", lambda package: None if package == "ray" else real(package))
    err = refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray"))
    assert f"--ray needs ray >= {RAY_FLOOR}; this environment has no ray (pip install 'ray>={RAY_FLOOR}')" in err


@NEEDS_RAY
@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", "--ray 127.0.0.1:1: nothing answers at 127.0.0.1:1"),
    ("ray://127.0.0.1:1", "nothing answers at 127.0.0.1:1"),
    ("headnode", "--ray headnode: pass HOST:PORT"),
])
def test_an_address_that_cannot_be_reached_is_refused_before_any_worker(tmp_path, capsys, nothing_starts, prompts,
                                                                        address, says):
    import ray

    assert not ray.is_initialized()
    assert says in refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray", address))
    assert not ray.is_initialized()


def test_the_ray_flags_reach_the_ray_options():
    from easycache import cli
    from easycache.ray_jobs import LOCAL, RayOptions

    def parsed(*flags):
        ours, _ = easycache_sample_video.build_parser().parse_known_args(["--seeds", "1", *flags])
        return cli.ray_options(ours)

    assert parsed() is None
    assert parsed("--ray") == RayOptions(address=LOCAL, max_retries=2, workers=None, cpus_per_worker=1)
    assert parsed("--ray", "auto", "--ray-max-retries", "0", "--ray-workers", "3", "--ray-cpus-per-worker", "4") == \
        RayOptions(address="auto", max_retries=0, workers=3, cpus_per_worker=4)
    assert parsed("--ray-workers", "2", "--ray", "10.0.0.1:6379").address == "10.0.0.1:6379"


def test_a_run_with_failed_videos_exits_1_with_one_line(tmp_path, capsys, monkeypatch, prompts):
    import easycache.ray_jobs

    def fails(*args):
        raise RunFailed("1 of 2 videos failed after 3 tries each; their errors are in summary.json")

    monkeypatch.setattr(easycache.ray_jobs, "run_on_ray", fails)
    code = easycache_sample_video.main(demo(tmp_path, "--prompt-file", str(prompts), "--ray"))
    assert code == 1 and capsys.readouterr().err.strip() == (
        "error: 1 of 2 videos failed after 3 tries each; their errors are in summary.json")
