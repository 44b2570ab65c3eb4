#!/usr/bin/env python3
"""Fit TeaCache's rescaling polynomial on a model, by TeaCache's own procedure; the bench reads it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/calibrate_teacache.py --overwrite     # both demos
    python bench/calibrate_teacache.py --model owner/name --prompt-file calibration.txt

The procedure (TeaCache's authors, ali-vilab/TeaCache issue 2): full, uncached generations on
calibration prompts; at every pair of consecutive steps (per guidance branch) the relative L1 change
of the indicator TeaCache reads (``bench/teacache.py``) and that of the transformer's output; then
``numpy.polyfit`` of degree 4, output change on indicator change, over every pair of every prompt
from the first step the rule may skip: the warm-up steps it always computes (HunyuanVideo's first,
Wan's first five) are left out, their changes never rescaled. On HunyuanVideo's demo that is every
pair, TeaCache's procedure exactly; on Wan's it leaves out the unconditional branch's first steps,
which change ten times more than later ones (``r2_all_steps`` records the fit over every pair).

The demos' calibration prompts are kept apart from the ones the bench times: 12 prompts of the demo
vocabulary (every colour twice, every shape and background four times, every direction three times),
none of them a timed prompt, with seeds 100 and 101 (the bench times seeds 0 and 1). Another model
needs ``--prompt-file``. Writes ``bench/results/<model>/teacache_coefficients.json`` (``--out`` to
put it elsewhere; an existing file only with ``--overwrite``): the coefficients, the fit's R^2 and
points, the prompts, seeds and steps, the command, and for a demo the sha256 of its weights (the
bench refuses a fit made on other weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SEEDS = (100, 101)


def calibration_prompts() -> list[str]:
    """The demos' 12 calibration prompts (see the module doc); never one the bench times."""
    from run_bench import DEFAULT_PROMPTS

    from easycache.demo.clips import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, prompt_for

    colours, directions, backgrounds = list(COLOURS), list(DIRECTIONS), list(BACKGROUNDS)
    prompts = [prompt_for(colours[i % 6], SHAPES[i % 3], directions[(i // 3 + 1) % 4], backgrounds[(i // 4) % 3])
               for i in range(12)]
    assert not set(prompts) & set(DEFAULT_PROMPTS), "a calibration prompt is one the bench times"
    return prompts


def calibrate(pipe, prompts: list[str], seeds, steps: int) -> dict:
    """Run the generations and fit; the record the JSON holds (without where it was written)."""
    import numpy as np
    import torch
    from run_bench import call_kwargs, frames_of
    from teacache import DEGREE, FORCED, INDICATORS, Recorder, after_warmup, architecture, fit

    args = argparse.Namespace(steps=steps, height=None, width=None, frames=None)
    with torch.no_grad(), Recorder(pipe.transformer) as recorder:
        for prompt in prompts:
            for seed in seeds:
                frames_of(pipe(**call_kwargs(pipe, prompt, seed, args)))
    arch = architecture(pipe.transformer)
    pairs = after_warmup(recorder.pairs, arch)
    coefficients, r2 = fit(pairs)
    x, y = np.array(pairs).T
    first = FORCED[arch][0]
    return {
        "coefficients": coefficients, "degree": DEGREE, "r2": r2, "points": len(pairs),
        "steps_fitted": f"{max(first, 1)} to {steps - 1}: every pair of consecutive steps from the first step the "
                        f"rule may skip (the first {first} always compute, their changes never rescaled)",
        "r2_all_steps": fit([(a, b) for _, a, b in recorder.pairs])[1],
        "indicator": INDICATORS[arch],
        "indicator_change_range": [float(x.min()), float(x.max())],
        "output_change_range": [float(y.min()), float(y.max())],
        "prompts": prompts, "seeds": list(seeds), "steps": steps,
        "procedure": "full uncached generations; per guidance branch, at every pair of consecutive steps, the "
                     "relative L1 change (mean |a - b| / mean |b|) of the indicator and of the transformer output; "
                     f"numpy.polyfit(indicator change, output change, {DEGREE}) over the pairs from the first step "
                     "the rule may skip",
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["demo", "demo-wan"],
                        help="demo, demo-wan, or a diffusers pipeline folder / hub id (default: both demos)")
    parser.add_argument("--prompt-file", help="calibration prompts, one a line (default for the demos: 12 kept "
                                              "apart from the bench's; required for another model)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dtype", default="bfloat16", help="torch dtype for a diffusers model")
    parser.add_argument("--out", help="the JSON to write (one --model only; default "
                                      "bench/results/<model>/teacache_coefficients.json)")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from run_bench import folder_name, load_model
    from teacache import COEFFICIENTS_FILE, RESULTS, weights_fingerprint

    from easycache.batch import read_prompts
    from easycache.demo import DEMO_FOLDERS

    if args.out and len(args.model) > 1:
        parser.error("--out takes one --model")
    targets = [Path(args.out) if args.out else RESULTS / folder_name(m) / COEFFICIENTS_FILE for m in args.model]
    for model, target in zip(args.model, targets):
        if target.exists() and not args.overwrite:
            parser.error(f"{target} exists; add --overwrite to replace it")
        if model not in DEMO_FOLDERS and not args.prompt_file:
            parser.error(f"--model {model}: pass --prompt-file (calibration prompts, apart from the ones you time)")
    for model, target in zip(args.model, targets):
        prompts = read_prompts(args.prompt_file) if args.prompt_file else calibration_prompts()
        started = time.perf_counter()
        pipe = load_model(model, args.dtype)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        record = {"model": model, **calibrate(pipe, prompts, args.seeds, args.steps)}
        if model in DEMO_FOLDERS:
            record["weights_sha256"] = weights_fingerprint(DEMO_FOLDERS[model])
        import torch

        record.update(torch=torch.__version__, seconds=round(time.perf_counter() - started, 1),
                      command="python bench/calibrate_teacache.py " + " ".join(sys.argv[1:] if argv is None else argv))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{model}: R^2 {record['r2']:.4f} over {record['points']} points -> {target}\n"
              f"  coefficients {record['coefficients']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
