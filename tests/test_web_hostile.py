"""The web page as a hostile or unlucky user meets it (issue 27): its save folder removed while it
serves, its port taken or its address wrong, a seed the command line refuses, and timings that
would claim more speed than skipping calls can give. Each refused before the model loads where that
can be known, in one line naming the flag or the control; nothing sampled is lost."""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
import time

import pytest

import easycache_gradio_server as entry
from easycache import web
from easycache.backends import make_backend
from easycache.backends.demo import DemoBackend
from easycache.errors import UsageError
from easycache.runner import RunOptions

serve = web.serve

PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def session(tmp_path_factory, one_thread):
    return web.PageSession(make_backend("demo"), ["--model", "demo", "--seed", "0"], RunOptions(),
                           tmp_path_factory.mktemp("page"))


def form(session, **changes) -> web.Form:
    return dataclasses.replace(session.defaults(), **{"prompt": PROMPT, "compare": False, "steps": 6, **changes})


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def serve_nothing(*args, **kwargs):
    raise AssertionError("the page was served: the refusal came too late")


@pytest.fixture
def no_load(monkeypatch):
    """The demo's load, counted (a refusal that comes before loading leaves it at 0)."""
    calls = []
    original = DemoBackend.load

    def load(self, args):
        calls.append(args)
        return original(self, args)

    monkeypatch.setattr(DemoBackend, "load", load)
    monkeypatch.setattr(web, "web_problem", lambda: None)
    monkeypatch.setattr(web, "serve", serve_nothing)  # a test never serves (nor blocks) by mistake
    monkeypatch.delenv("SERVER_NAME", raising=False)
    monkeypatch.delenv("SERVER_PORT", raising=False)
    return calls


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# ---------------------------------------------------------------------------- 3: the save folder removed
def test_save_folder_removed_while_serving_is_made_again(session):
    shutil.rmtree(session.save_dir)  # a user clearing old outputs while the page serves
    result = session.generate(form(session))
    assert result.video.parent == session.save_dir and all(p.is_file() for p in result.files)


def test_save_folder_removed_while_sampling_loses_nothing(session, monkeypatch):
    original = session.backend.sample

    def sample(*args, **kwargs):  # the folder goes while the video is being made
        videos = original(*args, **kwargs)
        shutil.rmtree(session.save_dir, ignore_errors=True)
        return videos

    monkeypatch.setattr(session.backend, "sample", sample)
    result = session.generate(form(session, compare=True))
    assert len(result.files) == 6 and all(p.is_file() for p in result.files)


def test_save_folder_removed_between_two_files_loses_nothing(session, monkeypatch):
    removed = []

    def written(path):  # the folder goes after the baseline is written, before the cached video
        if not removed:
            removed.append(path)
            shutil.rmtree(session.save_dir)

    monkeypatch.setattr(session.backend, "written", written)
    result = session.generate(form(session, compare=True))
    assert removed and all(p.is_file() for p in result.files) and len(result.files) == 6
    assert result.baseline.is_file() and result.metrics is not None


def test_save_folder_replaced_by_a_file_loses_nothing_and_says_where(session):
    """A file where the folder was (or a folder no longer writable): the sampled videos go to a new
    folder, the page's numbers say where and why, naming --save-path; the user's file is untouched."""
    shutil.rmtree(session.save_dir)
    session.save_dir.write_text("precious")
    try:
        result = session.generate(form(session, compare=True))
        assert session.save_dir.read_text() == "precious"
        assert len(result.files) == 6 and all(p.is_file() for p in result.files)
        assert result.video.parent != session.save_dir
        assert result.note and "--save-path" in result.note and str(result.video.parent) in result.note
        assert result.note in web.numbers_text(result)
    finally:
        session.save_dir.unlink()
        session.save_dir.mkdir()


# ---------------------------------------------------------------------------- 9: the address, before loading
@pytest.fixture
def taken_port():
    """A port of 127.0.0.1 another server listens on (as Tencent's page on 8081 would)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_taken_port_is_refused_before_the_model_loads(taken_port, no_load, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert entry.main(["--model", "demo", "--server-port", str(taken_port)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: --server-port {taken_port}: ") and "in use" in line
    assert "pass a free --server-port" in line and "GRADIO_SERVER_PORT" not in line
    assert no_load == []


def test_a_taken_port_from_the_environment_names_the_variable(taken_port, no_load, capsys, monkeypatch):
    monkeypatch.setenv("SERVER_PORT", str(taken_port))
    assert entry.main(["--model", "demo"]) == 2
    assert one_error_line(capsys).startswith(f"error: $SERVER_PORT {taken_port}: ")
    assert no_load == []


@pytest.mark.parametrize("name, says", [
    ("999.1.1.1", "not an IPv4 address"),  # refused without a DNS lookup
    ("192.0.2.1", "not an address of this machine"),  # TEST-NET-1: no machine has it
])
def test_a_bad_server_name_is_refused_before_the_model_loads(name, says, no_load, capsys):
    assert entry.main(["--model", "demo", "--server-name", name, "--server-port", free_port()]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: --server-name {name}: {says}") and "pass --server-name 127.0.0.1" in line
    assert no_load == []


def test_a_bad_server_name_from_the_environment_names_the_variable(no_load, capsys, monkeypatch):
    monkeypatch.setenv("SERVER_NAME", "999.1.1.1")
    assert entry.main(["--model", "demo", "--server-port", free_port()]) == 2
    assert one_error_line(capsys).startswith("error: $SERVER_NAME 999.1.1.1: not an IPv4 address")


def test_the_port_flag_error_names_where_it_came_from(no_load, capsys, monkeypatch):
    monkeypatch.setenv("SERVER_PORT", "http")
    assert entry.main(["--model", "demo"]) == 2
    assert one_error_line(capsys) == "error: $SERVER_PORT http: give a port from 1 to 65535"


def test_a_free_address_passes_the_check():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    web.check_address("127.0.0.1", port, "--server-name 127.0.0.1", f"--server-port {port}")  # no error
    web.check_address("localhost", port, "--server-name localhost", f"--server-port {port}")


def test_a_port_taken_after_the_check_is_one_line(no_load, capsys, monkeypatch, tmp_path):
    """Taken between the check and the launch (a race no check can close): one line, no traceback."""
    gradio = pytest.importorskip("gradio", reason="the web extra is not installed (pip install -e \".[web]\")")

    def launch(self, **kwargs):
        raise OSError(f"Cannot find empty port in range: {kwargs['server_port']}-{kwargs['server_port']}. You can "
                      "specify a different port by setting the GRADIO_SERVER_PORT environment variable")

    monkeypatch.setattr(gradio.Blocks, "launch", launch)
    monkeypatch.setattr(web, "serve", serve)  # the real one, on the failing launch
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert entry.main(["--model", "demo", "--server-port", str(port), "--save-path", str(tmp_path)]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"error: --server-port {port}: ") and "GRADIO_SERVER_PORT" not in line
    assert len(no_load) == 1


def test_ray_flags_are_refused_by_the_page(no_load, capsys):
    assert entry.main(["--model", "demo", "--ray"]) == 2
    assert one_error_line(capsys).startswith("error: --ray")
    assert no_load == []


# ---------------------------------------------------------------------------- 10: seeds
@pytest.mark.parametrize("seed", ["99999999999999999999", "-5", "-1", str(2**63)])
def test_a_seed_the_command_line_refuses_is_refused_before_loading(seed, no_load, capsys):
    assert entry.main(["--model", "demo", "--seed", seed, "--server-port", free_port()]) == 2
    assert one_error_line(capsys) == f"error: --seed {seed}: a seed is an integer from 0 to 2**63 - 1"
    assert no_load == []


@pytest.mark.parametrize("seed", [-5, -2, 2**63, 10**30, 1e30, -1.0e19, "abc", None, 2.5])
def test_the_seed_control_takes_what_the_command_line_takes(session, seed):
    with pytest.raises(UsageError) as caught:
        session.parse_form(form(session, seed=seed))
    message = str(caught.value)
    assert message.startswith(f"Seed {seed}: ") and "\n" not in message
    events = list(web.run_with_progress(session, form(session, seed=seed)))
    assert events == [("error", message)]  # named in the page, not "generation failed"


@pytest.mark.parametrize("seed", [0, 2**63 - 1, str(2**63 - 1), 7.0])
def test_the_seed_control_keeps_every_seed_the_command_line_takes(session, seed):
    _, parsed, _ = session.parse_form(form(session, seed=seed))
    assert parsed == int(seed)  # exactly: no float rounding of a large seed


def test_the_seed_control_minus_one_is_a_random_recorded_seed(session):
    _, parsed, _ = session.parse_form(form(session, seed=-1))
    assert 0 <= parsed <= 2**63 - 1


# ---------------------------------------------------------------------------- 15: no speedup beyond skipping
def fake_result(computed: int, calls: int, transformer: float, end_to_end: float, **result) -> web.Result:
    record = {"summary": {"computed": computed, "calls": calls, "speedup": calls / computed, "steps": calls},
              "easycache": {"enabled": True, "thresh": 0.025, "warmup_steps": 5}, "seed": 0,
              "transformer_seconds": 1.0, "end_to_end_seconds": 2.0}
    base = {"transformer_seconds": transformer, "end_to_end_seconds": 2.0 * end_to_end}
    metrics = {"calls_speedup": calls / computed, "transformer_speedup": transformer, "end_to_end_speedup": end_to_end,
               "psnr": 30.0, "psnr_frame_mean": 31.0, "ssim": 0.95}
    return web.Result(video=web.Path("v.mp4"), record=record, files=[], baseline=web.Path("b.mp4"),
                      baseline_record=base, metrics=metrics, **result)


def shown_speedups(text: str) -> dict:
    rows = dict(re.findall(r"^\| ((?:transformer|end-to-end) speedup) \| (.*) \|$", text, re.M))
    return {name: float(m.group(1)) if (m := re.fullmatch(r"(\d+\.\d+)x", value)) else value
            for name, value in rows.items()}


@pytest.mark.parametrize("computed, calls, transformer, end_to_end", [
    (16, 50, 9.62, 7.1),  # the page: 16 of 50 computed, at most 3.12x
    (13, 50, 5.56, 4.0),  # the demo log
    (13, 50, 4.61, 4.45),  # a busy CPU: the baseline slowed by another process
    (50, 50, 1.3, 1.2),  # nothing skipped: no speedup at all is possible
])
def test_the_page_never_shows_a_speedup_above_what_skipping_gives(computed, calls, transformer, end_to_end):
    text = web.numbers_text(fake_result(computed, calls, transformer, end_to_end))
    bound = calls / computed
    shown = shown_speedups(text)
    assert set(shown) == {"transformer speedup", "end-to-end speedup"}
    for value in shown.values():
        assert isinstance(value, str) and value.startswith("not claimed"), value
    assert f"{transformer:.2f}x" not in text and f"at most {bound:.2f}x" in text
    assert f"| calls computed | {computed} / {calls} |" in text


def test_a_speedup_within_what_skipping_gives_is_shown():
    shown = shown_speedups(web.numbers_text(fake_result(16, 50, 2.41, 1.9)))
    assert shown == {"transformer speedup": 2.41, "end-to-end speedup": 1.9}


def test_a_speedup_the_metrics_json_marks_is_not_claimed():
    result = fake_result(16, 50, 2.41, 1.9)
    result.metrics.update(transformer_speedup_exceeds_calls_ratio=True, transformer_speedup=None)
    assert all(v.startswith("not claimed") for v in shown_speedups(web.numbers_text(result)).values())


def test_a_baseline_timed_cold_is_not_a_speedup():
    """The first timed run after loading pays the warm-up: a baseline timed so is no baseline."""
    text = web.numbers_text(fake_result(16, 50, 2.41, 1.9, baseline_cold=True))
    assert all(v.startswith("not claimed") and "warm-up" in v for v in shown_speedups(text).values())


def test_a_fresh_page_marks_its_first_timed_run(tmp_path, one_thread, monkeypatch):
    """A backend that times once (HunyuanVideo, diffusers): the first comparison after loading has
    a cold baseline and claims no speedup; the next one is timed warm."""
    monkeypatch.setattr(DemoBackend, "timing_repeats", 1)
    page = web.PageSession(make_backend("demo"), ["--model", "demo", "--seed", "0"], RunOptions(), tmp_path)
    first = page.generate(form(page, compare=True, steps=10))
    assert first.baseline_cold and not first.cold
    assert all(v.startswith("not claimed") for v in shown_speedups(web.numbers_text(first)).values())
    second = page.generate(form(page, compare=True, steps=10))
    assert not second.baseline_cold and not second.cold
    alone = page.generate(form(page, compare=False, steps=10))
    assert not alone.cold


def test_the_page_interleaves_its_timed_runs_as_the_command_line_does(session, monkeypatch):
    """baseline, EasyCache, baseline, ... (the demo times each 3 times): load on the machine falls
    on both variants, never on the baseline's runs alone."""
    order = []
    original = session.backend.sample

    def sample(*args, **kwargs):
        order.append("baseline" if session.cache.config.thresh == 0 else "easycache")
        return original(*args, **kwargs)

    monkeypatch.setattr(session.backend, "sample", sample)
    result = session.generate(form(session, compare=True, steps=10))
    assert order == ["baseline", "easycache"] * session.backend.timing_repeats
    assert result.record["summary"]["computed"] < result.baseline_record["summary"]["computed"] == 10


def test_a_disturbed_baseline_is_not_claimed(session):
    """The baseline's transformer calls slowed by something else on the machine: the page shows the
    seconds and claims no speedup above what skipping calls gives."""
    def slow(module, args):
        if session.cache.config.thresh == 0:  # the baseline's calls take the hit
            time.sleep(0.02)

    hook = session.model.transformer.x_embedder.proj.register_forward_pre_hook(slow)  # the plain-torch demo calls proj directly
    try:
        result = session.generate(form(session, compare=True, steps=10))
    finally:
        hook.remove()
    bound = result.record["summary"]["calls"] / result.record["summary"]["computed"]
    assert result.metrics["transformer_speedup"] > bound  # what was measured would claim too much
    shown = shown_speedups(web.numbers_text(result))
    assert shown["transformer speedup"].startswith("not claimed")
    for value in shown.values():
        assert isinstance(value, str) or value <= bound * (1 + web.SPEEDUP_TOLERANCE)


# ---------------------------------------------------------------------------- the demo's prompt
def test_the_demo_page_starts_on_a_prompt_the_demo_knows(session):
    from easycache.demo.text import VOCAB

    prompt = session.defaults().prompt
    assert prompt == PROMPT and set(prompt.split()) <= set(VOCAB)
    hint = web.prompt_hint(session)
    for word in ("red", "cyan", "triangle", "down", "gray"):
        assert word in hint
