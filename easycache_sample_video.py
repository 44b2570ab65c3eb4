#!/usr/bin/env python3
"""HunyuanVideo + EasyCache: a drop-in for HunyuanVideo's ``sample_video.py``.

    python3 easycache_sample_video.py --video-size 544 960 --video-length 129 --infer-steps 50 \\
        --prompt "A cat walks on the grass, realistic style." --flow-reverse --use-cpu-offload \\
        --save-path ./results --seed 42

Run it inside a HunyuanVideo checkout (or anywhere with --hunyuan-root PATH); every flag of
HunyuanVideo's own parser works. ``--backend diffusers --model ID_OR_FOLDER`` runs the same job
through a diffusers pipeline instead. Beside each video it writes a JSON of the run.
"""

from __future__ import annotations

import argparse
import sys

from loguru import logger

EASYCACHE_DEFAULTS = {"thresh": 0.025, "warmup_steps": 5}


def build_parser() -> argparse.ArgumentParser:
    """The flags this script adds; everything else goes to the backend's own parser."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # never read a HunyuanVideo flag as an abbreviation of ours
        prog="easycache_sample_video.py",
        description=__doc__.split("\n\n")[0],
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("EasyCache")
    group.add_argument("-h", "--help", action="store_true", help="show this help (and HunyuanVideo's flags) and exit")
    group.add_argument(
        "--easycache-thresh", type=float, default=EASYCACHE_DEFAULTS["thresh"],
        help="skip a step while the accumulated predicted change of the output stays below this; "
        "higher is faster and further from the uncached video (default: %(default)s)",
    )
    group.add_argument(
        "--easycache-warmup-steps", type=int, default=EASYCACHE_DEFAULTS["warmup_steps"],
        help="the first steps, always computed (default: %(default)s)",
    )
    group.add_argument(
        "--easycache-max-reuse", type=int, default=None,
        help="beyond the rule, off by default: compute after this many reused steps in a row",
    )
    group.add_argument(
        "--easycache-extrapolate", action="store_true",
        help="beyond the rule, off by default: reuse the cached delta extrapolated to first order "
        "from the last two computed steps (bench/ measures what it buys)",
    )
    group.add_argument(
        "--no-easycache", action="store_true",
        help="the baseline: every step computed, through the same code path (threshold 0)",
    )
    group.add_argument(
        "--backend", choices=["tencent", "diffusers"], default=None,
        help="tencent: HunyuanVideo's own code (a checkout); diffusers: a diffusers pipeline named by --model "
        "(default: tencent; diffusers with --model demo)",
    )
    group.add_argument("--hunyuan-root", default=None, help="HunyuanVideo checkout (default: the current directory)")
    many = parser.add_argument_group("many videos (resumable; torchrun ranks share the work)")
    many.add_argument("--prompt-file", default=None, help="one prompt per line; every prompt x seed is one video")
    many.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds for every prompt (default: --seed)")
    return parser


def print_help(parser: argparse.ArgumentParser, ours: argparse.Namespace) -> None:
    parser.print_help()
    if ours.backend == "diffusers":
        from easycache.diffusers_backend import build_parser as diffusers_parser

        print()
        diffusers_parser().print_help()
        return
    from easycache.errors import UsageError
    from easycache.hyvideo import find_checkout, import_hyvideo

    try:
        hy = import_hyvideo(find_checkout(ours.hunyuan_root))
    except UsageError as error:
        print(f"\nHunyuanVideo's own flags are listed here when its checkout is found: {error}")
        return
    print("\nHunyuanVideo's own flags:")
    saved = sys.argv
    sys.argv = [saved[0], "--help"]
    try:
        hy.parse_args()
    except SystemExit:
        pass
    finally:
        sys.argv = saved


def demo_requested(rest: list[str]) -> bool:
    """True if the command line asks for the embedded demo model (``--model demo``)."""
    return "--model=demo" in rest or any(a == "--model" and b == "demo" for a, b in zip(rest, rest[1:]))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if ours.backend is None:  # --model demo (the embedded demo model) needs no --backend
        ours.backend = "diffusers" if demo_requested(rest) else "tencent"
    if ours.help:
        print_help(parser, ours)
        return 0

    from easycache import EasyCacheConfig
    from easycache.batch import read_prompts
    from easycache.errors import UsageError

    try:
        config = EasyCacheConfig(
            thresh=0.0 if ours.no_easycache else ours.easycache_thresh,
            warmup_steps=ours.easycache_warmup_steps,
            max_consecutive_reuse=ours.easycache_max_reuse,
            extrapolate=ours.easycache_extrapolate,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        prompts = read_prompts(ours.prompt_file) if ours.prompt_file else None
        if ours.backend == "diffusers":
            from easycache import diffusers_backend

            diffusers_backend.run(rest, config, easycache_enabled=not ours.no_easycache, prompts=prompts,
                                  seeds=ours.seeds)
        else:
            from easycache import hyvideo

            root = hyvideo.find_checkout(ours.hunyuan_root)
            hyvideo.run(rest, root, config, easycache_enabled=not ours.no_easycache, prompts=prompts, seeds=ours.seeds)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted: videos already written are kept")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
