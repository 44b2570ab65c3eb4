"""The web page end to end in a real browser: the server on the demo at 127.0.0.1, headless Chromium
from Debian's packages (``chromium``, ``chromium-driver``) driven by selenium through
/usr/bin/chromedriver (Selenium Manager never runs, nothing downloads a browser, and the browser
resolves no host but 127.0.0.1). A mistake typed into the page shows one line and the server goes
on; then a prompt is typed and generated, the numbers shown must equal the run JSON's, and the
video served must decode to the demo's 9 frames. A screenshot is saved under the test's tmp
folder, and also at $EASYCACHE_SCREENSHOT when set (the one docs/web.md shows).
$EASYCACHE_GRADIO_PYTHON runs the server under another interpreter (e.g. HunyuanVideo's environment with its gradio 5.0.0).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from easycache import web
from easycache.metrics import iter_frames

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SERVER_PYTHON = os.environ.get("EASYCACHE_GRADIO_PYTHON", sys.executable)
PROMPT = "a red circle moving left"


def skip_reason() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"no {path}: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install -e ".[web]")'
    check = subprocess.run([SERVER_PYTHON, "-c", "from easycache.web import web_problem; print(web_problem() or '')"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    if check.returncode != 0:
        return f"{SERVER_PYTHON} cannot import easycache.web: {check.stderr.strip().splitlines()[-1:]}"
    return check.stdout.strip() or None  # gradio missing or older than the floor: the reason names both versions


pytestmark = pytest.mark.skipif(bool(reason := skip_reason()), reason=reason or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The page on the demo at 127.0.0.1 (seed 0), writing into a tmp folder."""
    folder = tmp_path_factory.mktemp("page")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SERVER_NAME", "SERVER_PORT")}
    env.update(OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    log = (folder / "server.log").open("w")
    process = subprocess.Popen([SERVER_PYTHON, str(ROOT / "easycache_gradio_server.py"), "--model", "demo",
                                "--seed", "0", "--server-port", str(port), "--save-path", str(folder / "out")],
                               cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not come up: {(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield url, folder
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    assert f"Running on local URL:  http://127.0.0.1:{port}" in (folder / "server.log").read_text()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",  # two tabs at once
                 "--window-size=1400,1700", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):  # no host but this one
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}")


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f"#{element_id}")
    return found[0].text if found else ""


def set_field(driver, selector: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.CSS_SELECTOR, selector)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(value)
    field.send_keys(Keys.TAB)  # Gradio takes the value on blur


def generate(driver, seconds: float = 180) -> str:
    """Click Generate; the status once this generation is done (new numbers: each video has a new
    name) or refused (a new line)."""
    from selenium.webdriver.common.by import By

    before = (text_of(driver, "status"), text_of(driver, "numbers"))

    def finished():
        status, shown = text_of(driver, "status"), text_of(driver, "numbers")
        if status.startswith("error") and status != before[0]:
            return status
        return status if status.startswith("done") and shown and shown != before[1] else None

    driver.find_element(By.CSS_SELECTOR, "#generate").click()
    return wait_for(finished, seconds, "the generation to finish")


def numbers(text: str) -> dict:
    """The rows of the page's numbers table: name -> value as shown."""
    rows = {}
    for line in text.splitlines():
        for name in ("calls computed", "speedup (calls / computed)", "transformer seconds", "end-to-end seconds",
                     "transformer speedup", "end-to-end speedup", "PSNR (whole-video MSE)", "PSNR (mean of frames)",
                     "SSIM"):
            if line.startswith(name + " ") or line.startswith(name + "\t"):
                rows[name] = line[len(name):].strip()
    return rows


def test_generate_in_a_real_browser(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, folder = server
    browser.get(url)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#prompt textarea"), 60, "the page")

    # The demo's page starts on a prompt the demo can draw, and says which words it knows.
    assert browser.find_element(By.CSS_SELECTOR, "#prompt textarea").get_attribute("value") == PROMPT
    assert "6 colours (red, green, blue, yellow, purple, cyan)" in text_of(browser, "prompt")

    # A mistake typed into the page: one line in the page, nothing written, the server goes on.
    set_field(browser, "#thresh input", "-1")
    status = generate(browser)
    assert status.startswith("error: EasyCache threshold -1: must be 0 or more") and "\n" not in status
    assert "Traceback" not in browser.page_source
    assert not list((folder / "out").glob("*.mp4"))
    set_field(browser, "#thresh input", "0.025")

    # A seed the command line refuses is named as the Seed control's (not "generation failed").
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "label") if "Show Advanced Options" in e.text).click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#seed input"), 30, "the Seed control")
    for seed in ("1000000000000000000000000000000", "-5"):
        set_field(browser, "#seed input", seed)
        status = generate(browser)
        assert status.startswith("error: Seed ") and "give -1 (a random seed) or a whole number" in status, status
    assert not list((folder / "out").glob("*.mp4"))
    set_field(browser, "#seed input", "0")

    set_field(browser, "#prompt textarea", PROMPT)
    status = generate(browser)
    assert status.startswith("done: EasyCache: step 50/50"), status
    shown = numbers(wait_for(lambda: text_of(browser, "numbers"), 30, "the numbers"))

    # The numbers shown are the run JSON's (and the metrics JSON's) as written.
    found = re.search(r"video:\s*(\S.*\.mp4)", text_of(browser, "numbers"))
    assert found, text_of(browser, "numbers")
    video = Path(found.group(1))
    assert video.parent == folder / "out" and video.name.endswith(f"_seed0_{PROMPT}_easycache.mp4")
    record = json.loads(video.with_suffix(".json").read_text())
    metrics = json.loads(video.with_name(video.name.replace("_easycache.mp4", "_metrics.json")).read_text())
    s = record["summary"]
    assert record["prompt"] == PROMPT and record["seed"] == 0 and record["easycache"]["thresh"] == 0.025
    # A measured ratio is a speedup only up to what skipping calls gives (the demo times each run
    # three times and keeps the fastest, so no kept run is the one that paid the warm-up).
    bound = s["calls"] / s["computed"]
    transformer = web.speedup_shown(metrics["transformer_speedup"], bound, False,
                                    metrics.get("transformer_speedup_exceeds_calls_ratio", False))
    end_to_end = transformer if transformer.startswith("not claimed") else web.speedup_shown(
        metrics["end_to_end_speedup"], bound, False, metrics.get("end_to_end_speedup_exceeds_calls_ratio", False))
    assert shown == {
        "calls computed": f"{s['computed']} / {s['calls']}",
        "speedup (calls / computed)": f"{s['speedup']:.2f}x",
        "transformer seconds": f"{record['transformer_seconds']:.3f}",
        "end-to-end seconds": f"{record['end_to_end_seconds']:.3f}",
        "transformer speedup": transformer,
        "end-to-end speedup": end_to_end,
        "PSNR (whole-video MSE)": f"{metrics['psnr']:.2f} dB",
        "PSNR (mean of frames)": f"{metrics['psnr_frame_mean']:.2f} dB",
        "SSIM": f"{metrics['ssim']:.4f}",
    }
    assert s["calls"] == 50 and 0 < s["computed"] < 50

    # The video the page serves decodes to the demo's 9 frames of 16x16.
    source = wait_for(lambda: browser.execute_script(
        "const v = document.querySelector('#video video'); return v && v.currentSrc;"), 30, "the video element")
    assert source.startswith(url)
    served = tmp_path / "served.mp4"
    served.write_bytes(urllib.request.urlopen(source, timeout=30).read())
    frames = list(iter_frames(served))
    assert len(frames) == record["args"]["video_length"] == 9 and frames[0].shape == (16, 16, 3)

    # The comparison is on the page: the side-by-side image and the plot.
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#side_by_side img"), 30, "the side-by-side image")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#plot img, #plot svg, #plot canvas"), 30, "the plot")
    time.sleep(1)  # let the images paint
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, max(1200, min(int(height) + 200, 2600)))
    shot = tmp_path / "gradio_demo.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("EASYCACHE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["EASYCACHE_SCREENSHOT"])


def open_page(driver, url: str, prompt: str) -> str:
    """A new tab (a new Gradio session) on the page with ``prompt`` typed in; returns its handle."""
    from selenium.webdriver.common.by import By

    driver.switch_to.new_window("tab")
    driver.get(url)
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#prompt textarea"), 60, "the page")
    set_field(driver, "#prompt textarea", prompt)
    return driver.current_window_handle


def shown_video(driver) -> Path:
    found = re.search(r"video:\s*(\S.*\.mp4)", text_of(driver, "numbers"))
    assert found, text_of(driver, "numbers")
    return Path(found.group(1))


def test_two_sessions_at_once_are_queued(server, browser):
    """Two browser sessions click Generate together: both are served (the queue runs one at a time)
    and each gets what the same prompt gives when it runs alone: neither touched the other's cache."""
    from selenium.webdriver.common.by import By

    url, folder = server
    prompts = ("a blue square moving up", "a green circle moving right on a white background")
    tabs = [open_page(browser, url, p) for p in prompts]
    for tab in tabs:
        browser.switch_to.window(tab)
        browser.find_element(By.CSS_SELECTOR, "#generate").click()
    together = []
    for tab in tabs:
        browser.switch_to.window(tab)
        wait_for(lambda: text_of(browser, "status").startswith("done"), 240, "both generations")
        together.append(shown_video(browser))
    alone = []
    for tab in tabs:
        browser.switch_to.window(tab)
        status = generate(browser)
        assert status.startswith("done"), status
        alone.append(shown_video(browser))
    for prompt, both, solo in zip(prompts, together, alone):
        assert both != solo and both.name.endswith(f"_{prompt}_easycache.mp4")
        runs = [json.loads(v.with_suffix(".json").read_text()) for v in (both, solo)]
        assert runs[0]["prompt"] == runs[1]["prompt"] == prompt
        assert [r["computed"] for r in runs[0]["records"]] == [r["computed"] for r in runs[1]["records"]]
        assert [f.tolist() for f in iter_frames(both)] == [f.tolist() for f in iter_frames(solo)]
