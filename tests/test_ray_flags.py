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


# ---------------------------------------------------------------------------- the address Ray would use
@pytest.fixture()
def no_ray_init(monkeypatch):
    """``ray.init`` fails the test: every refusal below comes before Ray is asked."""
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init was called"))


@pytest.fixture()
def web_page():
    """A plain HTTP server on 127.0.0.1 (a free port): what a dashboard or a web page answers."""
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # the server's request log is not the command's stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def grpc_lookalike():
    """A server on 127.0.0.1 that greets as HTTP/2 (gRPC) does, then answers nothing: what Ray
    Client's port looks like to a GCS client."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held = []

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # an empty SETTINGS frame
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


def bounded(seconds: float):
    import time

    class Clock:
        def __enter__(self):
            self.started = time.monotonic()
            return self

        def __exit__(self, *exc):
            assert time.monotonic() - self.started < seconds, f"took more than {seconds} s"

    return Clock()


@NEEDS_RAY
@pytest.mark.parametrize("flag", [[], ["auto"]])
def test_ray_address_naming_a_gone_cluster_is_refused_naming_it(tmp_path, capsys, nothing_starts, no_ray_init,
                                                                prompts, monkeypatch, flag):
    """RAY_ADDRESS left in a shell profile: the probe covers it as it covers --ray HOST:PORT."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with bounded(15):
        err = refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray", *flag))
    assert "RAY_ADDRESS=127.0.0.1:1" in err and "nothing answers at 127.0.0.1:1" in err and "unset RAY_ADDRESS" in err


@NEEDS_RAY
def test_a_stale_address_ray_start_recorded_is_refused_naming_the_file(tmp_path, capsys, nothing_starts, no_ray_init,
                                                                      prompts, monkeypatch):
    """A crashed `ray start` leaves its address in a file that ``ray.init()`` then joins."""
    import ray._private.utils

    recorded = tmp_path / "ray_current_cluster"
    recorded.write_text("127.0.0.1:1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray._private.utils, "get_ray_address_file", lambda temp_dir=None: str(recorded))
    with bounded(15):
        err = refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray"))
    assert str(recorded) in err and "nothing answers at 127.0.0.1:1" in err and "ray stop" in err


@NEEDS_RAY
def test_a_web_page_where_ray_should_answer_is_refused_at_once(tmp_path, capsys, nothing_starts, no_ray_init,
                                                               prompts, web_page, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with bounded(15):
        err = refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray", web_page))
    assert err == (f"error: --ray {web_page}: no Ray cluster answers there (is that the dashboard/client port? "
                   "give the GCS address, default port 6379)")


@NEEDS_RAY
def test_a_web_page_in_ray_address_is_refused_naming_it(tmp_path, capsys, nothing_starts, no_ray_init, prompts,
                                                        web_page, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", web_page)
    with bounded(15):
        err = refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray"))
    assert f"RAY_ADDRESS={web_page}" in err and "no Ray cluster answers there" in err


@NEEDS_RAY
def test_the_dashboard_s_http_address_in_ray_address_is_refused(tmp_path, capsys, nothing_starts, no_ray_init,
                                                                prompts, monkeypatch):
    """`ray job submit` users set RAY_ADDRESS=http://HEAD:8265; Ray's own error for it is many lines."""
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    err = refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray"))
    assert "RAY_ADDRESS=http://127.0.0.1:8265" in err and "GCS address HOST:PORT" in err


@NEEDS_RAY
def test_a_grpc_server_that_is_not_ray_is_refused_within_the_bound(tmp_path, capsys, nothing_starts, no_ray_init,
                                                                   prompts, grpc_lookalike, monkeypatch):
    """It passes the TCP probe and greets as gRPC; a trial connection in a child process, bounded,
    finds no Ray there (``ray.init`` itself would retry for many minutes)."""
    from easycache import ray_jobs

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_jobs, "JOIN_SECONDS", 6.0)
    with bounded(30):
        err = refused(capsys, demo(tmp_path, "--prompt-file", str(prompts), "--ray", grpc_lookalike))
    assert err.startswith(f"error: --ray {grpc_lookalike}: no Ray cluster answers there (is that the dashboard/client")
    assert "did not succeed within 6 s" in err
