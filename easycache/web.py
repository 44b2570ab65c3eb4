"""The web page (``easycache_gradio_server.py``): one model loaded once, its cache installed, one
generation at a time on request, written exactly as the command line writes it.

``PageSession`` is the page without the page: a form's values in, the run's files and numbers out,
each bad value refused as one ``UsageError`` line. ``build_page`` lays it out with Gradio (imported
only there); ``progress_text``, ``numbers_text`` and ``error_plot`` are what the page shows.

One cache per model instance, so one generation at a time per model: ``PageSession.generate`` holds
a lock, and the page's generate event runs on Gradio's queue with a concurrency of 1, so a second
browser session waits in the queue (and sees its place) instead of sharing the cache's state.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import ipaddress
import json
import math
import random
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from loguru import logger

from .api import apply_easycache
from .batch import MAX_SEED, check_seeds
from .cache import EasyCacheConfig
from .errors import UsageError
from .outputs import prepare_save_dir
from .runner import Backend, RunOptions, Video, Generation, Names, cache_config, install_attention

GRADIO_FLOOR = "5.0.0"  # the oldest Gradio the page is checked on (HunyuanVideo's own pin)
GRADIO_OUTPUTS = "gradio_outputs"  # where Tencent's gradio_server.py writes, unless --save-path is given

# Tencent's page's sizes (width x height, as it spells them) and lengths.
RESOLUTIONS = [
    ("1280x720 (16:9, 720p)", "1280x720"), ("720x1280 (9:16, 720p)", "720x1280"),
    ("1104x832 (4:3, 720p)", "1104x832"), ("832x1104 (3:4, 720p)", "832x1104"), ("960x960 (1:1, 720p)", "960x960"),
    ("960x544 (16:9, 540p)", "960x544"), ("544x960 (9:16, 540p)", "544x960"), ("832x624 (4:3, 540p)", "832x624"),
    ("624x832 (3:4, 540p)", "624x832"), ("720x720 (1:1, 540p)", "720x720"),
]
LENGTHS = [("2s(65f)", 65), ("5s(129f)", 129)]
COMPUTED, REUSED = "■", "□"
TENCENT_PROMPT = "A cat walks on the grass, realistic style."  # Tencent's page's first prompt
DEMO_PROMPT = "a red circle moving left"  # the demo draws only its own words (see ``prompt_hint``)

# A measured speedup is shown as one only up to what skipping calls gives (calls / computed), plus
# this fraction of it: a reused step still costs a little, so the true ratio is below calls /
# computed, and a measured one above it by more than timing noise says the two runs were not timed
# alike (the bench's and the comparison's tolerance too).
SPEEDUP_TOLERANCE = 0.05


def web_problem() -> str | None:
    """Why the page cannot run here, or None: Gradio or matplotlib missing, Gradio older than
    ``GRADIO_FLOOR``, or Gradio 5 beside Starlette 1 (Gradio 5.0.0 does not cap Starlette, and
    Starlette 1.0 dropped the ``TemplateResponse(name, context)`` call it renders every page with:
    measured, no page is served, Tencent's own ``gradio_server.py`` neither)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    installed = {}
    for package in ("gradio", "matplotlib", "starlette"):
        try:
            installed[package] = version(package)
        except PackageNotFoundError:
            return f'the web page needs {package}, which is not installed; pip install -e ".[web]"'
    gradio = Version(installed["gradio"])
    if gradio < Version(GRADIO_FLOOR):
        return (f"the web page needs gradio >= {GRADIO_FLOOR}; gradio {installed['gradio']} is installed "
                f'(pip install -e ".[web]")')
    if gradio < Version("6") and Version(installed["starlette"]) >= Version("1"):
        return (f"the web page needs starlette < 1.0 with gradio {installed['gradio']}; starlette "
                f"{installed['starlette']} is installed (pip install \"starlette<1.0\", or a gradio >= 6)")
    return None


@dataclass
class Form:
    """What the page's controls hold (Tencent's, then EasyCache's)."""

    prompt: str
    resolution: str  # "WIDTHxHEIGHT", as Tencent's page spells it
    video_length: int
    seed: int  # -1: a random one (recorded)
    steps: int
    guidance_scale: float
    flow_shift: float
    embedded_guidance_scale: float
    easycache: bool = True
    thresh: float = 0.025
    warmup_steps: float = 5
    compare: bool = False


@dataclass
class Result:
    """One generation from the page: the files written and their numbers, read back from them."""

    video: Path  # the cached video (or, with EasyCache off, the only one)
    record: dict  # its run JSON
    files: list[Path]
    baseline: Path | None = None
    baseline_record: dict | None = None
    metrics: dict | None = None  # the *_metrics.json of a comparison
    side_by_side: Path | None = None
    cold: bool = False  # the video's kept timing was the first run since the model loaded (warm-up in it)
    baseline_cold: bool = False  # the same for the baseline's: its seconds are no baseline for a ratio
    note: str | None = None  # what the page must say beside the numbers (the files went elsewhere)


@dataclass
class Progress:
    """What the generation in flight has done so far: the variant and the cache's records."""

    phase: str = ""
    steps: int = 0
    records: list = field(default_factory=list)


class PageSession:
    """A backend's model, loaded once with its cache, generating one ``Form`` at a time."""

    def __init__(self, backend: Backend, argv: list[str], options: RunOptions, save_dir: Path | None = None):
        backend.easycache_enabled = True
        self.backend, self.argv, self.options = backend, list(argv), options
        self.args, settings = backend.parse(self.argv, need_prompt=False)
        check_seeds([settings.seed], "--seed")  # the page's default seed: what the command line takes
        self.save_dir = prepare_save_dir(save_dir or settings.save_dir)
        started = time.perf_counter()
        self.model = backend.load(self.args)
        self.load_seconds = time.perf_counter() - started
        backend.prepare(self.model, self.args)
        self.attention = install_attention(self.model, options.attention)
        self.config, self.source = cache_config(self.model, dataclasses.replace(options, enabled=True), settings)
        self.cache = apply_easycache(self.model, self.config)
        self.lock = threading.Lock()  # one cache per model instance: one generation at a time
        self.progress = Progress()
        self.timed_runs = 0  # samples timed since the model loaded (the first pays the warm-up)
        logger.info(f"model loaded in {self.load_seconds:.1f}s; EasyCache {self.config.thresh} "
                    f"({self.config.warmup_steps} warmup steps) from {self.source}; videos go to {self.save_dir}")

    # ------------------------------------------------------------------ the form's defaults
    def defaults(self) -> Form:
        a = self.args
        return Form(prompt=a.prompt or self.default_prompt(), resolution=f"{a.video_size[1]}x{a.video_size[0]}",
                    video_length=a.video_length, seed=-1 if a.seed is None else a.seed, steps=a.infer_steps,
                    guidance_scale=a.cfg_scale, flow_shift=a.flow_shift, embedded_guidance_scale=a.embedded_cfg_scale,
                    easycache=self.options.enabled, thresh=self.config.thresh, warmup_steps=self.config.warmup_steps,
                    compare=self.backend.compare_with_baseline)

    def default_prompt(self) -> str:
        """Tencent's page's prompt; on the demo, one it knows (it cannot draw a cat)."""
        return DEMO_PROMPT if self.backend.name == "demo" else TENCENT_PROMPT

    # ------------------------------------------------------------------ checking a form
    def parse_form(self, form: Form) -> tuple[argparse.Namespace, int, EasyCacheConfig]:
        """The form as the backend's own flags (checked by its own parser), the seed and the cache
        config; a bad value is one ``UsageError`` naming the control."""
        if not (form.prompt or "").strip():
            raise UsageError("Prompt: type a prompt to generate")
        try:
            width, height = (int(v) for v in str(form.resolution).lower().split("x"))
        except ValueError:
            raise UsageError(f"Resolution {form.resolution!r}: give WIDTHxHEIGHT, e.g. 1280x720") from None
        seed = _seed(form.seed)
        seed = random.randint(0, 1_000_000) if seed == -1 else seed  # as the command line picks one
        argv = [*self.argv, "--prompt", form.prompt, "--video-size", str(height), str(width),
                "--video-length", str(_whole(form.video_length, "Video Length")),
                "--infer-steps", str(_whole(form.steps, "Number of Inference Steps")), "--seed", str(seed),
                "--cfg-scale", str(_number(form.guidance_scale, "Guidance Scale")),
                "--flow-shift", str(_number(form.flow_shift, "Flow Shift")),
                "--embedded-cfg-scale", str(_number(form.embedded_guidance_scale, "Embedded Guidance Scale"))]
        from .backends.diffusers import DiffusersBackend, check_grid

        try:
            args, _ = self.backend.parse(argv, need_prompt=True)
            if isinstance(self.backend, DiffusersBackend):
                check_grid(self.model, args)  # a size or length this pipeline would silently round
        except UsageError as error:
            raise UsageError(in_page_terms(str(error))) from None
        thresh = _number(form.thresh, "EasyCache threshold")
        if thresh < 0:
            raise UsageError(f"EasyCache threshold {thresh:g}: must be 0 or more (0 computes every step)")
        try:
            config = dataclasses.replace(self.config, thresh=thresh,
                                         warmup_steps=_whole(form.warmup_steps, "EasyCache warmup steps"),
                                         num_steps=args.infer_steps)
        except ValueError as error:
            raise UsageError(f"EasyCache: {error}") from None
        if not form.easycache:
            config = dataclasses.replace(config, thresh=0.0)
        return args, seed, config

    # ------------------------------------------------------------------ one generation
    def generate(self, form: Form) -> Result:
        """Check the form, then (one at a time) sample and write as the command line does: the
        video and its run JSON; with a comparison, the baseline too, the metrics JSON and a GIF."""
        args, seed, config = self.parse_form(form)
        variants = ["baseline", "easycache"] if form.compare and form.easycache else ["video"]
        options = RunOptions(cache={"thresh": config.thresh, "warmup_steps": config.warmup_steps},
                             enabled=form.easycache)
        source = f"{self.source}; page: thresh, warmup_steps" if form.easycache else "EasyCache off in the page: threshold 0"
        names = Names(self.backend, variants)  # the runner's file naming, this generation's variants
        with self.lock:
            set_flow_shift(self.model, args.flow_shift)
            self.cache.config = config
            generation = Generation(self.backend, self.model, args, self.cache, options, (), self.load_seconds,
                                     source, names, self.attention)
            # Timed as the command line times it (Generation.sample_variants): each variant the
            # fastest of the backend's repeats, the variants' runs interleaved (baseline, EasyCache,
            # baseline, ...) so that load on the machine falls on both, not on the baseline alone.
            best: dict[str, tuple] = {}
            try:
                for _ in range(self.backend.timing_repeats):
                    for name in variants:
                        self.cache.reset()  # the progress shown starts from this run's first step
                        self.progress = Progress(phase=name, steps=args.infer_steps, records=[])
                        self.cache.config = dataclasses.replace(config, thresh=0.0) if name == "baseline" else config
                        # The first run since loading pays the warm-up: kept as a variant's timing
                        # only when the backend times once (kept among repeats, it was the fastest).
                        first = self.timed_runs == 0 and self.backend.timing_repeats == 1
                        try:
                            videos, timing = generation.sample_once(form.prompt, seed, 1, name)
                        finally:
                            self.timed_runs += 1
                        if name not in best or timing["end_to_end_seconds"] < best[name][1]["end_to_end_seconds"]:
                            best[name] = (videos, timing, first)
            finally:
                self.cache.config = self.config
                self.progress = Progress()
            sampled, cold = [], set()
            for name in variants:
                videos, timing, first = best[name]
                generation.count(name, videos, timing)
                if first:
                    cold.add(name)
                sampled.append((name, Video(channels_last(videos[0].frames), seed), timing))
            identity = {"backend": self.backend.name, **self.backend.job_key(args),
                        "easycache": {"enabled": form.easycache, **options.cache}, "prompt": form.prompt, "seed": seed}
            path, written, note = self.write(generation, names, form.prompt, seed, identity, sampled)
        result = read_result(path, written)
        result.note = note
        result.cold = variants[-1] in cold
        result.baseline_cold = result.baseline is not None and "baseline" in cold
        return result

    def write(self, generation: Generation, names: Names, prompt: str, seed: int, identity: dict,
              sampled: list) -> tuple[Path, list[Path], str | None]:
        """Write what was sampled into the save folder, made again if it is gone: a user may clear
        old outputs (the folder with them) while the page serves, and a video sampled for minutes
        must not be lost to that. Gone while writing (between two files), the whole set is written
        again into the new folder, under a name free there. Where the folder cannot be written at
        all (a file now stands at its path, its permissions changed), the set goes to a new
        temporary folder, and the returned note (shown in the page, logged) says where and why."""
        for attempt in (1, 2):
            try:
                self.save_dir.mkdir(parents=True, exist_ok=True)
                path = names.free(self.backend.video_path(self.save_dir, seed, prompt))
                return path, generation.write(path, prompt, identity, sampled), None
            except FileNotFoundError:
                if attempt == 2 or self.save_dir.is_dir():
                    raise
                logger.warning(f"{self.save_dir} was removed while the page wrote into it: made again, writing again")
            except OSError as error:
                rescue = Path(tempfile.mkdtemp(prefix="easycache_page_"))
                note = (f"--save-path {self.save_dir} cannot be written ({error.strerror or error}): this "
                        f"generation was saved in {rescue} instead; make {self.save_dir} a writable folder again")
                logger.warning(note)
                path = names.free(self.backend.video_path(rescue, seed, prompt))
                return path, generation.write(path, prompt, identity, sampled), note
        raise AssertionError("unreachable")

    def live_records(self) -> Progress:
        """The generation in flight: its variant, steps and the cache's records so far."""
        progress = self.progress
        return Progress(progress.phase, progress.steps, list(self.cache.records) if progress.phase else [])


# The backends' flags as the page's controls call them, for their messages.
CONTROLS = {"--video-size": "Resolution", "--video-length": "Video Length", "--infer-steps": "Number of Inference Steps",
            "--seed": "Seed", "--cfg-scale": "Guidance Scale", "--flow-shift": "Flow Shift",
            "--embedded-cfg-scale": "Embedded Guidance Scale"}


def in_page_terms(message: str) -> str:
    """A backend's one-line refusal, led by the page's names of the controls it is about (the
    message names flags: the size is HEIGHT WIDTH there, WIDTHxHEIGHT in the page)."""
    named = [control for flag, control in CONTROLS.items() if re.search(rf"{flag}(?![\w-])", message)]
    return f"{' and '.join(named)}: {message}" if named else message


def _number(value: Any, control: str) -> float:
    """A finite number from a control (an emptied one gives None)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{control} {value!r}: give a number") from None
    if not math.isfinite(number):
        raise UsageError(f"{control} {value}: give a finite number")
    return number


def _seed(value: Any) -> int:
    """The Seed control: -1 (a random seed, recorded) or a seed the command line takes (0 to
    2**63 - 1). A whole number given as an int or its text is kept exactly (a float would round a
    large seed to another one)."""
    refusal = UsageError(f"Seed {value}: give -1 (a random seed) or a whole number from 0 to 2**63 - 1")
    if isinstance(value, bool):
        raise refusal
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        value = int(value)
    if isinstance(value, int):
        seed = value
    else:
        try:
            seed = _whole(value, "Seed")
        except UsageError:
            raise refusal from None
    if seed != -1 and not 0 <= seed <= MAX_SEED:
        raise refusal
    return seed


def _whole(value: Any, control: str) -> int:
    """A whole number from a control (Gradio's numbers may come as floats)."""
    number = _number(value, control)
    if not number.is_integer():
        raise UsageError(f"{control} {value}: give a whole number")
    return int(number)


def channels_last(frames: Any) -> np.ndarray:
    """Frames as a ``(T, H, W, C)`` array: Tencent's sampler gives a ``(C, T, H, W)`` tensor, which
    the video writer takes but the comparison (metrics, GIF) does not."""
    array = frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if array.ndim == 4 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        return array.transpose(1, 2, 3, 0)
    return array


def set_flow_shift(model: Any, shift: float) -> None:
    """A diffusers pipeline's flow shift, per generation (Tencent's sampler takes it per call)."""
    scheduler = getattr(model, "scheduler", None)
    config = getattr(scheduler, "config", None)
    if config is None:
        return
    key = "flow_shift" if "flow_shift" in config else "shift" if "shift" in config else None
    if key is not None and config[key] != shift:
        model.scheduler = type(scheduler).from_config(config, **{key: shift})


def read_result(path: Path, written: list[Path]) -> Result:
    """The files of one generation and the numbers in them (what the page shows is what was written)."""
    final = written[-1]
    record = json.loads(final.with_suffix(".json").read_text())
    result = Result(video=final, record=record, files=[p for v in written for p in (v, v.with_suffix(".json"))])
    if len(written) == 2:
        metrics_path, gif_path = Names.metrics(path), Names.gif(path)
        result.baseline = written[0]
        result.baseline_record = json.loads(written[0].with_suffix(".json").read_text())
        result.metrics = json.loads(metrics_path.read_text())
        result.side_by_side = gif_path
        result.files += [metrics_path, gif_path]
    return result


# ---------------------------------------------------------------------------- what the page shows
def per_step(records: list) -> list:
    """The first call of each step (the one the step's decision was taken on), in step order.
    Records may be ``CallRecord`` objects or their JSON dicts."""
    first = {}
    for r in records:
        r = r if isinstance(r, dict) else r.as_dict()
        first.setdefault(r["step"], r)
    return [first[s] for s in sorted(first)]


def progress_text(progress: Progress) -> str:
    """One line per generation in flight: the variant, steps done, computed and reused so far, and
    a strip of the steps (■ computed, □ reused)."""
    steps = per_step(progress.records)
    computed = sum(r["computed"] for r in steps)
    strip = "".join(COMPUTED if r["computed"] else REUSED for r in steps)
    label = {"baseline": "baseline (uncached)", "easycache": "EasyCache", "video": "generating"}.get(
        progress.phase, progress.phase)
    return (f"**{label}**: step {len(steps)}/{progress.steps}, {computed} computed, {len(steps) - computed} reused"
            f"<br>`{strip or ' '}`")


def numbers_text(result: Result) -> str:
    """The numbers of one generation, from its run JSON (and metrics JSON), as a Markdown table."""
    record, summary = result.record, result.record["summary"]
    cache = record["easycache"]
    setting = (f"threshold {cache['thresh']:g}, {cache['warmup_steps']} warmup steps" if cache["enabled"]
               else "off (every step computed)")
    warm_up = " (the first run since the model loaded: includes its warm-up)"
    rows = [
        ("EasyCache", setting),
        ("calls computed", f"{summary['computed']} / {summary['calls']}"),
        ("speedup (calls / computed)", f"{summary['speedup']:.2f}x"),
        ("transformer seconds", f"{record['transformer_seconds']:.3f}" + (warm_up if result.cold else "")),
        ("end-to-end seconds", f"{record['end_to_end_seconds']:.3f}"),
    ]
    if result.metrics is not None:
        m, base = result.metrics, result.baseline_record
        bound = summary["calls"] / summary["computed"]
        transformer = speedup_shown(m.get("transformer_speedup"), bound, result.baseline_cold,
                                    m.get("transformer_speedup_exceeds_calls_ratio", False))
        rows += [
            ("baseline: transformer / end-to-end seconds",
             f"{base['transformer_seconds']:.3f} / {base['end_to_end_seconds']:.3f}"
             + (warm_up if result.baseline_cold else "")),
            ("transformer speedup", transformer),
            # the end to end holds the transformer's time: not timed alike there, not alike here
            ("end-to-end speedup", transformer if transformer.startswith("not claimed")
             else speedup_shown(m.get("end_to_end_speedup"), bound, result.baseline_cold,
                                m.get("end_to_end_speedup_exceeds_calls_ratio", False))),
            ("PSNR (whole-video MSE)", _db(m["psnr"])),
            ("PSNR (mean of frames)", _db(m["psnr_frame_mean"])),
            ("SSIM", f"{m['ssim']:.4f}"),
        ]
    attention = record.get("attention")
    if attention:
        rows.append(("attention", f"{attention['path']} ({attention['reason']})"))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    note = f"\n\n**note:** {result.note}" if result.note else ""
    return f"| this generation | |\n|---|---|\n{table}\n\nseed {record['seed']}; video: `{result.video}`{note}"


def speedup_shown(measured: float | None, bound: float, baseline_cold: bool, marked: bool = False) -> str:
    """A measured speedup as the page shows it: the ratio, or "not claimed" with why.

    Skipping calls can make the transformer at most calls / computed faster (a reused step still
    costs a little), and the end to end less (the rest of the pipeline is the same in both). A
    measured ratio above that bound (by more than ``SPEEDUP_TOLERANCE``, timing noise) is not a speedup:
    the two runs were timed in different states, e.g. the baseline ran first after loading and paid
    the warm-up (the issue's 9.62x for 16 of 50 computed), or the machine was busy during one of
    them. A baseline known to be the first timed run since loading is no baseline either, whatever
    its ratio. Warming the model up at load instead would cost HunyuanVideo's users minutes per
    start and would not warm the shapes a user picks later, so the page marks, and does not hide,
    such a run: the seconds stay shown, and the calls computed say what skipping gave. ``marked``:
    the metrics JSON already marks the ratio as above the bound (``*_exceeds_calls_ratio``)."""
    if baseline_cold:
        return (f"not claimed: the baseline was the first run since the model loaded and its seconds include "
                f"the warm-up; generate again for a like-for-like ratio (at most {bound:.2f}x from the calls skipped)")
    if marked or measured is None or not math.isfinite(measured) or measured > bound * (1 + SPEEDUP_TOLERANCE):
        return (f"not claimed: the runs were not timed alike (a busy machine or a warm-up); at most {bound:.2f}x "
                f"from the calls skipped, see the seconds")
    return f"{measured:.2f}x"


def _db(value: Any) -> str:
    return f"{value:.2f} dB" if isinstance(value, (int, float)) else f"{value} dB"


def error_plot(records: list, thresh: float):
    """The accumulated error each step's decision was taken on, against the threshold: computed
    steps filled, reused steps hollow (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = per_step(records)
    fig, ax = plt.subplots(figsize=(7.5, 3.4), dpi=100)
    xs = [r["step"] for r in steps]
    ax.plot(xs, [r["accumulated_error"] for r in steps], color="0.6", linewidth=1, zorder=1)
    for computed, style in ((True, dict(color="tab:blue", label="computed")),
                            (False, dict(facecolors="none", edgecolors="tab:orange", label="reused"))):
        chosen = [r for r in steps if r["computed"] == computed]
        ax.scatter([r["step"] for r in chosen], [r["accumulated_error"] for r in chosen], s=22, zorder=2, **style)
    ax.axhline(thresh, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {thresh:g}")
    ax.set_xlabel("denoising step")
    ax.set_ylabel("accumulated error")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))  # room above for the page's label
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------------- the page
def run_with_progress(session: PageSession, form: Form, poll_seconds: float = 0.25) -> Iterator[tuple[str, Any]]:
    """Generate in a worker thread; yield ``("progress", text)`` while it runs, then ``("done",
    Result)`` or ``("error", one line)``. A user's mistake is its own line; anything else is
    logged with its traceback on the server and named in one line in the page."""
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = session.generate(form)
        except UsageError as error:
            outcome["error"] = str(error)
        except Exception as error:  # the server goes on serving; the log has the traceback
            logger.exception("generation failed")
            outcome["error"] = f"generation failed ({type(error).__name__}: {error}); see the server's log"

    worker = threading.Thread(target=work, name="easycache-generate", daemon=True)
    worker.start()
    last = None
    while worker.is_alive():
        worker.join(poll_seconds)
        progress = session.live_records()
        if progress.phase:
            text = progress_text(progress)
            if text != last:
                last = text
                yield "progress", text
    yield ("error", outcome["error"]) if "error" in outcome else ("done", outcome["result"])


def prompt_hint(session: PageSession) -> str | None:
    """What the demo can draw (its whole vocabulary), shown under the prompt; None for a real model."""
    if session.backend.name != "demo":
        return None
    from .demo.clips import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES

    return (f"The demo draws only its own words: 6 colours ({', '.join(COLOURS)}), 3 shapes ({', '.join(SHAPES)}), "
            f"4 directions ({', '.join(DIRECTIONS)}) and 3 backgrounds ({', '.join(BACKGROUNDS)}), as "
            f'"a red circle moving left" or "a blue square moving up on a white background".')


def build_page(session: PageSession, title: str = "Hunyuan Video Generation, with EasyCache"):
    """Tencent's page (its controls, names and defaults) plus EasyCache's controls, live progress,
    the numbers and the comparison. Returns a ``gr.Blocks`` with its queue set up."""
    import gradio as gr

    d = session.defaults()
    hidden = api_hidden(gr)
    resolutions = list(RESOLUTIONS)
    if d.resolution not in [v for _, v in resolutions]:
        resolutions.insert(0, (f"{d.resolution} (this model's)", d.resolution))
    lengths = list(LENGTHS)
    if d.video_length not in [v for _, v in lengths]:
        lengths.insert(0, (f"{d.video_length}f (this model's)", d.video_length))

    with gr.Blocks(title="HunyuanVideo + EasyCache") as page:
        gr.Markdown(f"# {title}")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", value=d.prompt, info=prompt_hint(session), elem_id="prompt")
                with gr.Row():
                    resolution = gr.Dropdown(choices=resolutions, value=d.resolution, label="Resolution",
                                             elem_id="resolution")
                    video_length = gr.Dropdown(choices=lengths, value=d.video_length, label="Video Length",
                                               elem_id="video_length")
                steps = gr.Slider(1, 100, value=d.steps, step=1, label="Number of Inference Steps")
                with gr.Row():
                    easycache_on = gr.Checkbox(label="EasyCache", value=d.easycache, elem_id="easycache")
                    compare = gr.Checkbox(label="Compare with the uncached video (generates it too)",
                                          value=d.compare, elem_id="compare")
                with gr.Row():
                    thresh = gr.Number(value=d.thresh, label="EasyCache threshold (higher: faster, further "
                                       "from the uncached video)", elem_id="thresh")
                    warmup = gr.Number(value=d.warmup_steps, precision=0, label="EasyCache warmup steps "
                                       "(always computed)", elem_id="warmup")
                show_advanced = gr.Checkbox(label="Show Advanced Options", value=False)
                with gr.Row(visible=False) as advanced_row:
                    with gr.Column():
                        seed = gr.Number(value=d.seed, precision=0, label="Seed (-1 for random)", elem_id="seed")
                        guidance = gr.Slider(1.0, 20.0, value=d.guidance_scale, step=0.5, label="Guidance Scale")
                        flow_shift = gr.Slider(0.0, 10.0, value=d.flow_shift, step=0.1, label="Flow Shift")
                        embedded = gr.Slider(1.0, 20.0, value=d.embedded_guidance_scale, step=0.5,
                                             label="Embedded Guidance Scale")
                show_advanced.change(fn=lambda x: gr.update(visible=x), inputs=[show_advanced], outputs=[advanced_row],
                                     **hidden)
                generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown("", elem_id="status")
                plot = gr.Plot(label="Accumulated error against the threshold", elem_id="plot")
            with gr.Column():
                with gr.Row():
                    video = gr.Video(label="Generated Video (EasyCache)", elem_id="video", height=300)
                    baseline = gr.Video(label="Uncached video (same seed)", elem_id="baseline", height=300)
                numbers = gr.Markdown("", elem_id="numbers")
                side_by_side = gr.Image(label="Uncached | EasyCache (same seed)", show_label=False, type="filepath",
                                        elem_id="side_by_side", height=180)  # the GIF carries its labels
                files = gr.File(label="Written (video and run JSON, as the command line writes them)",
                                file_count="multiple", elem_id="files")

        outputs = [status, video, numbers, side_by_side, baseline, plot, files]

        def on_generate(*values):
            form = Form(*values)
            cleared = (None, "", None, None, None, None)
            yield ("starting", *cleared)
            for kind, payload in run_with_progress(session, form):
                if kind == "progress":
                    yield (payload, *(gr.update() for _ in cleared))
                elif kind == "error":
                    yield (f"**error:** {payload}", *cleared)
                else:
                    r = payload
                    records, thresh = r.record["records"], r.record["easycache"]["thresh"]
                    yield ("done: " + progress_text(Progress("easycache" if r.record["easycache"]["enabled"] else "baseline",
                                                             r.record["summary"]["steps"], records)),
                           str(r.video), numbers_text(r), str(r.side_by_side) if r.side_by_side else None,
                           str(r.baseline) if r.baseline else None, error_plot(records, thresh),
                           [str(p) for p in r.files])

        # One cache per model instance: the queue runs one generation at a time (a second session waits).
        generate_btn.click(fn=on_generate, outputs=outputs, concurrency_limit=1, concurrency_id="model", **hidden,
                           inputs=[prompt, resolution, video_length, seed, steps, guidance, flow_shift, embedded,
                                   easycache_on, thresh, warmup, compare])
    page.queue(default_concurrency_limit=1)
    return page


def api_hidden(gr) -> dict:
    """Gradio 5's event keyword that keeps an event out of the page's API description: {} on Gradio 6.
    Gradio 5.0's API description fails on this page's file outputs with a recent pydantic ("argument
    of type 'bool' is not iterable", in gradio_client), and Gradio renders it into the page itself,
    so on Gradio 5 the events are left out of it (the page works; clients see no API docs)."""
    import inspect

    parameters = inspect.signature(gr.Button.click).parameters
    return {} if "api_visibility" in parameters or "show_api" not in parameters else {"show_api": False}


def check_address(host: str, port: int, name_flag: str, port_flag: str) -> None:
    """Refuse, before any model loads, an address the page could not serve on: bind a socket to it
    briefly as the server will (SO_REUSEADDR, as Gradio and uvicorn set it), on every address the
    name resolves to, and on 127.0.0.1 where Gradio itself checks the port first. ``name_flag`` and
    ``port_flag`` name where each value came from (``--server-port 8081``, ``$SERVER_PORT 8081``)."""
    address = f"{host}:{port}"
    use_name = "pass --server-name 127.0.0.1 (this machine), 0.0.0.0 (every network) or an address of this machine"
    use_port = "pass a free --server-port"
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # Gradio strips IPv6 brackets
    if re.fullmatch(r"[\d.]+", bare):  # dotted numbers are an IPv4 address or nothing: no DNS lookup
        try:
            ipaddress.IPv4Address(bare)
        except ValueError:
            raise UsageError(f"{name_flag}: not an IPv4 address (four numbers from 0 to 255); {use_name}") from None
    try:
        found = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise UsageError(f"{name_flag}: not an address this machine can resolve ({reason}); {use_name}") from None
    targets = {(family, sockaddr): "" for family, _, _, _, sockaddr in found}
    gradio_first = f" (Gradio tries the port on 127.0.0.1 before serving on {host})"  # whatever the name
    targets.setdefault((socket.AF_INET, ("127.0.0.1", port)), gradio_first)
    for (family, sockaddr), gradios in targets.items():
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except OSError as error:
            where = f"{sockaddr[0]}:{port}"
            if error.errno == errno.EADDRINUSE:
                tencent = " (Tencent's page serves on 8081 too)" if port == 8081 else ""
                raise UsageError(f"{port_flag}: {where} is in use by another program{tencent}{gradios}; "
                                 f"{use_port}") from None
            if error.errno in (errno.EACCES, errno.EPERM):
                raise UsageError(f"{port_flag}: this user may not serve on {where} (ports below 1024 need root); "
                                 f"{use_port}, above 1023") from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"{name_flag}: not an address of this machine ({address}: "
                                 f"{error.strerror}); {use_name}") from None
            raise UsageError(f"{name_flag} with {port_flag}: cannot serve on {where} ({error.strerror or error}); "
                             f"{use_name}, or {use_port}") from None


def serve(page, server_name: str, server_port: int, save_dir: Path, launch: Callable | None = None) -> None:
    """Serve the page (blocking) where only the save folder's files may be downloaded."""
    (launch or page.launch)(server_name=server_name, server_port=server_port, allowed_paths=[str(save_dir)],
                            share=False, show_error=False)
