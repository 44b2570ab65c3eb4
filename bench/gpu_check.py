#!/usr/bin/env python3
"""Every speed claim of this project, measured on one GPU in minutes: one command.

Run it as a script (it puts this repository first on ``sys.path``, so ``easycache``, ``bench.gpu``
and the tiny models of ``easycache.testing`` are this checkout's, installed or not; no PYTHONPATH)::

    python bench/gpu_check.py --budget-seconds 420        # on a CUDA machine
    python bench/gpu_check.py --tiny --out /tmp/gpu-check  # CPU smoke run, seconds

It writes ``<gpu-name-slug>.json`` and ``.md`` into ``--out`` (default ``bench/results/gpu``),
both rewritten after every result, so a run killed at its time limit keeps what it measured; where
files of that name are there already (an earlier run's), it writes ``<gpu-name-slug>-2.json`` and
``.md`` (``-3``, ...) instead and never replaces them. The
parts, in order of importance (checks run in the order of ``PLAN``; what no longer fits the budget
is recorded as "skipped: budget (...)"):

  a. the rule's cost at real size: computed vs reused transformer call, memory (544p; 720p last);
  b. sparse video attention (SVG) vs dense at HunyuanVideo's 720p sequence: one attention call,
     then one whole transformer call;
  c. the CUDA code paths: threshold 0 bit-identical, one decision per step with CFG, flex equals
     the SDPA reference, the demo's decisions against a CPU run's;
  d. Tencent's transformer (when HYVIDEO_ROOT names a HunyuanVideo checkout): its own attention
     (flash-attn 2) against ``--attention sdpa``, then computed vs reused;
  e. every computed step at the GPU's speed: diffusers' transformer at 544p with a padded prompt,
     its own (masked) attention against ``--attention sdpa``, the outputs' relative difference.

A check never stops the run: a failure is recorded ("failed: reason", with its traceback) and the
next check runs. The exit status is 1 if any check failed, else 0; a bad flag (an ``--only`` name
that is no part or check, a budget that is not a number of seconds above 0, an ``--out`` that is
not a folder, a device that is not there) is one ``error:`` line and exit 2, before anything is
built or written. What the lent GPU machine needs
besides the repository (diffusers and loguru as wheels): bench/gpu/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # this checkout's easycache and bench.gpu, wherever it is run from
    sys.path.insert(0, str(REPO))

REQUIRED = ("diffusers", "loguru")
DIFFUSERS_NEEDED = "0.36"  # HunyuanVideoTransformer3DModel (parts a, c) and its attention dispatcher (SVG, part b)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu"
DEFAULT_BUDGET = 420.0


@dataclasses.dataclass(frozen=True)
class Step:
    """One check: ``run(ctx, entry, write)`` fills ``entry`` through ``write``; ``estimate(ctx)``
    is its expected seconds (None: unknown, run while any budget is left)."""

    part: str
    name: str
    title: str
    run: Callable
    estimate: Callable = lambda ctx: None


def _plan() -> tuple[Step, ...]:
    from bench.gpu import attention_paths, cuda_paths, rule_cost, svg, tencent

    return (
        Step("a", "544p", "reused vs computed call, 544x960x129", lambda c, e, w: rule_cost.run(c, e, w, "544p")),
        Step("b", "attention", "one attention call at the 720p sequence, SVG vs dense", svg.run_attention,
             svg.estimate_attention),
        Step("c", "threshold0", "threshold 0 bit-identical to no cache", cuda_paths.run_threshold0,
             cuda_paths.estimate),
        Step("c", "cfg_decisions", "one decision per step with CFG", cuda_paths.run_cfg_decisions, cuda_paths.estimate),
        Step("c", "flex_vs_sdpa", "flex equals the SDPA reference", cuda_paths.run_flex_vs_sdpa, cuda_paths.estimate),
        Step("c", "demo", "demo decisions vs a CPU run", cuda_paths.run_demo, cuda_paths.estimate),
        Step("e", "diffusers_544p", "diffusers' transformer at 544p, the model's own attention vs --attention sdpa",
             attention_paths.run_diffusers, attention_paths.estimate),
        Step("b", "transformer", "one transformer call at 720x1280x129, SVG vs dense", svg.run_transformer,
             svg.estimate_transformer),
        Step("a", "720p", "reused vs computed call, 720x1280x129", lambda c, e, w: rule_cost.run(c, e, w, "720p")),
        Step("d", "tencent_544p", "Tencent's transformer: its own attention vs --attention sdpa, reused vs computed call",
             tencent.run, tencent.estimate),
    )


PLAN: tuple[Step, ...] | None = None  # None: ``_plan()``; tests put their own here


class Refusal(Exception):
    """A user's mistake, known before anything runs: printed as one ``error:`` line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage and error lines become one line
        raise Refusal(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for <gpu>.json and <gpu>.md (made if missing; files already there are kept: "
                             "the run then writes <gpu>-2.json and .md)")
    parser.add_argument("--budget-seconds", type=float, default=DEFAULT_BUDGET,
                        help="wall-clock seconds for the whole run; checks that no longer fit are skipped")
    parser.add_argument("--tiny", action="store_true", help="toy shapes: every code path in seconds (CPU is fine)")
    parser.add_argument("--device", default=None, help="cuda (default when there is one) or cpu (--tiny only)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                        help="the models' dtype (default: bfloat16 on CUDA, float32 on a CPU)")
    parser.add_argument("--only", default=None,
                        help="comma-separated parts or checks to run, e.g. 'a,c' or 'b.transformer'")
    return parser


def missing_packages() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except Refusal as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    started = time.perf_counter()  # the budget counts the imports too: a device's time limit does
    args = build_parser().parse_args(argv)
    check_budget(args.budget_seconds)
    check_out(args.out)
    only = only_names(args.only)
    missing = missing_packages()
    if missing:
        raise Refusal(f"{' and '.join(missing)} not installed: carry the wheels, see bench/gpu/README.md")
    from easycache.versions import shortfall  # reads package metadata, imports no diffusers

    too_old = shortfall("gpu_check (HunyuanVideo and its attention dispatcher)", "diffusers", DIFFUSERS_NEEDED)
    if too_old:
        raise Refusal(f"{too_old}; carry a newer wheel, see bench/gpu/README.md")
    import torch

    device = chosen_device(args.device, args.tiny)
    plan = PLAN if PLAN is not None else _plan()
    wanted = check_only(only, plan)

    from bench.gpu.context import Budget, Context
    from bench.gpu.results import Results, slug

    budget = Budget(args.budget_seconds, started)
    ctx = Context(device=device, tiny=args.tiny, budget=budget, dtype_name=args.dtype)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    name = slug(gpu) + ("-tiny" if args.tiny else "")
    try:
        results = Results(args.out, name, _meta(args, device, gpu))
    except OSError as error:  # the folder could not be made or written after all (a full disk, a race)
        raise Refusal(f"--out {args.out}: cannot write there ({error.strerror or error}); pass a folder you "
                      "can write") from None
    kept = f" ({name}.json is there already, kept)" if results.json_path.name != f"{name}.json" else ""
    ctx.say(f"{gpu}: writing {results.json_path} and {results.md_path.name}{kept}; budget {budget.seconds:.0f} s")
    threads = torch.get_num_threads()
    if args.tiny and device.type == "cpu":
        torch.set_num_threads(1)  # toy shapes gain nothing from threads; a busy CPU makes threads wait on each other
    try:
        _run(plan, wanted, ctx, results)
    finally:
        torch.set_num_threads(threads)
    ctx.release_transformer()
    results.meta["finished"] = True
    results.write()
    failed = [k for k, s in results.statuses().items() if s.startswith("failed")]
    ctx.say(f"done: {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; {results.md_path}")
    return 1 if failed else 0


def check_budget(seconds: float) -> None:
    """A number of seconds above 0: below it every check is skipped; NaN would turn the budget off."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise Refusal(f"--budget-seconds {seconds:g}: pass the seconds the whole run may take, a number above 0 "
                      f"(default {DEFAULT_BUDGET:g})")


def check_out(out: Path) -> None:
    """A folder, or a path where one can be made, that this user can write."""
    if out.exists() and not out.is_dir():
        raise Refusal(f"--out {out} is a file; pass a folder (it is made if missing)")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise Refusal(f"--out {out}: {existing} is a file; pass a folder (it is made if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Refusal(f"--out {out}: cannot write in {existing}; pass a folder you can write")


def only_names(only: str | None) -> list[str] | None:
    """``--only``'s names (None: every check); an empty name (``a,,c``) is refused."""
    if only is None:
        return None
    names = [name.strip() for name in only.split(",")]
    if not all(names):
        raise Refusal(f"--only {only!r}: an empty name; pass comma-separated part letters or part.check names, "
                      "e.g. 'a,c' or 'b.transformer'")
    return names


def check_only(names: list[str] | None, plan) -> set[str] | None:
    """Every ``--only`` name a part letter or ``part.check`` of ``plan``: a typo would run nothing,
    exit 0 and write an empty report."""
    if names is None:
        return None
    valid = sorted({step.part for step in plan}) + [f"{step.part}.{step.name}" for step in plan]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise Refusal(f"--only {','.join(unknown)}: no such part or check; pass part letters or part.check names, "
                      f"comma-separated: {', '.join(valid)}")
    return set(names)


def chosen_device(name: str | None, tiny: bool):
    """``--device`` (default: cuda where there is one) as a torch device that is there."""
    import torch

    if name is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type not in ("cuda", "cpu"):
            raise Refusal(f"--device {name}: pass cuda, cuda:N or cpu (cpu runs --tiny only)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise Refusal(f"--device {name or 'cuda'}: this torch sees no CUDA device")
        if device.index is not None and device.index >= count:
            raise Refusal(f"--device {name}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
                          f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    elif not tiny:
        what = f"--device {name}" if name else "no CUDA device"
        raise Refusal(f"{what}: the real-size check needs a GPU (--tiny runs toy shapes on a CPU)")
    return device


def _run(plan, wanted, ctx, results) -> None:
    """Each wanted check in order: its budget, its run; its status and wall seconds recorded."""
    import torch

    from bench.gpu.context import CheckFailed, Skipped

    budget, device = ctx.budget, ctx.device
    with torch.no_grad():
        for step in plan:
            if wanted is not None and step.part not in wanted and f"{step.part}.{step.name}" not in wanted:
                continue
            label = f"{step.part}.{step.name}"
            entry = results.start(step.part, step.name, step.title)
            started, crashed = time.perf_counter(), False
            ctx.say(f"{label}: {step.title}")
            try:
                budget.require(step.estimate(ctx), label)
                step.run(ctx, entry, results.update)
                status = "ok"
            except Skipped as skip:
                status = f"skipped: {skip}"
            except CheckFailed as failure:
                status = f"failed: {failure}"
            except Exception as error:  # noqa: BLE001 - one check's crash must not stop the others
                status = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                entry["traceback"] = traceback.format_exc(limit=-12)
                crashed = True
            if crashed:  # outside the except block: the exception's frames no longer hold its tensors
                _free(device)
            results.finish(entry, status, time.perf_counter() - started)
            ctx.say(f"{label}: {status} ({time.perf_counter() - started:.1f} s)")


def _meta(args: argparse.Namespace, device, gpu: str) -> dict:
    import diffusers
    import torch

    return {
        "gpu": gpu, "device": str(device), "tiny": args.tiny,
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "diffusers": diffusers.__version__, "python": platform.python_version(),
        "gpu_memory_bytes": torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None,
        "budget_seconds": args.budget_seconds, "dtype": args.dtype or ("bfloat16" if device.type == "cuda" else "float32"),
        "finished": False,
        "started_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bench/gpu_check.py " + " ".join(
            a for a in (["--tiny"] if args.tiny else []) + ["--budget-seconds", f"{args.budget_seconds:g}"]
            + (["--dtype", args.dtype] if args.dtype else []) + (["--only", args.only] if args.only else [])),
    }


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
