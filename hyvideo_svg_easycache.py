#!/usr/bin/env python3
"""HunyuanVideo + sparse video attention (Sparse-VideoGen, SVG) + EasyCache.

    python3 hyvideo_svg_easycache.py --video-size 720 1280 --video-length 129 --infer-steps 50 \\
        --prompt "A cat walks on the grass, realistic style." --embedded-cfg-scale 6.0 \\
        --flow-shift 7.0 --flow-reverse --use-cpu-offload --save-path ./results \\
        --output_path ./results --pattern "SVG" --num_sampled_rows 64 --sparsity 0.2 \\
        --first_times_fp 0.055 --first_layers_fp 0.025 --record_attention --seed 42

SVG's attention is implemented here in PyTorch (flex_attention on CUDA, masked SDPA elsewhere), so
any resolution and length work and neither Sparse-VideoGen nor its kernels are needed. Run it
inside a HunyuanVideo checkout (or anywhere with --hunyuan-root PATH); every flag of HunyuanVideo's
own parser works. Beside each video it writes a JSON of the run (with an "svg" section).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from loguru import logger

import easycache_sample_video

SVG_DEFAULTS = {"pattern": "SVG", "num_sampled_rows": 64, "sparsity": 0.2, "first_times_fp": 0.055,
                "first_layers_fp": 0.025}


def build_parser() -> argparse.ArgumentParser:
    """EasyCache's flags (as easycache_sample_video.py) plus SVG's, snake_case as in Sparse-VideoGen."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # never read a HunyuanVideo flag as an abbreviation of ours
        prog="hyvideo_svg_easycache.py",
        description=__doc__.split("\n\n")[0],
        add_help=False,
        parents=[easycache_sample_video.build_parser()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("sparse video attention (SVG)")
    group.add_argument(
        "--pattern", choices=["SVG", "dense", "spatial", "temporal"], default=SVG_DEFAULTS["pattern"],
        help="SVG: each head takes the spatial or the temporal mask, whichever reproduces its sampled "
        "rows better; dense: HunyuanVideo's own attention everywhere (the baseline, same code path); "
        "spatial/temporal: that mask on every head (default: %(default)s)",
    )
    group.add_argument(
        "--num_sampled_rows", type=int, default=SVG_DEFAULTS["num_sampled_rows"],
        help="query rows per head whose exact attention chooses its mask; more: surer and slower "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--sparsity", type=float, default=SVG_DEFAULTS["sparsity"],
        help="fraction of the attention map KEPT (0 < s <= 1; 1 is dense): text rows and columns plus a "
        "diagonal band over video tokens (frame-major for spatial heads, token-major for temporal "
        "heads) whose width makes up the rest; lower is faster and further from dense "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--first_times_fp", type=float, default=SVG_DEFAULTS["first_times_fp"],
        help="a step runs dense attention while its timestep t (1000 = pure noise, falling to 0) "
        "satisfies t > 1000 * (1 - first_times_fp), as in Sparse-VideoGen; with --flow-shift 7, 0.055 "
        "keeps about the first 30%% of 50 steps dense (default: %(default)s)",
    )
    group.add_argument(
        "--first_layers_fp", type=float, default=SVG_DEFAULTS["first_layers_fp"],
        help="a block runs dense attention while its index within its own stack (double blocks "
        "0-19, single blocks 0-39, each counted from 0) is below 42 * first_layers_fp, as in "
        "Sparse-VideoGen (42, not 60); 0.025 keeps double blocks 0-1 and single blocks 0-1 dense "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--record_attention", action="store_true",
        help="write, per attention call (step, block, layer), the pattern chosen for each head and its "
        "sampled-row errors, as JSON lines under --output_path",
    )
    group.add_argument(
        "--output_path", default="./results",
        help="where --record_attention writes: a folder (gets svg_attention_<time>.jsonl) or a .jsonl "
        "file (default: %(default)s); videos go to --save-path",
    )
    group.add_argument(
        "--attention-backend", choices=["auto", "flex", "sdpa"], default="auto",
        help="flex: block-sparse flex_attention (torch >= 2.5, compiled on CUDA); sdpa: masked reference "
        "(memory grows with the sequence length squared); auto: flex on CUDA (default: %(default)s)",
    )
    return parser


def record_path(ours: argparse.Namespace) -> Path | None:
    if not ours.record_attention:
        return None
    path = Path(ours.output_path)
    if path.suffix == ".jsonl":
        return path
    return path / f"svg_attention_{time.strftime('%Y%m%d-%H%M%S')}.jsonl"


def svg_config(ours: argparse.Namespace):
    from easycache.sparse import SVGConfig

    return SVGConfig(
        pattern=ours.pattern, num_sampled_rows=ours.num_sampled_rows, sparsity=ours.sparsity,
        first_times_fp=ours.first_times_fp, first_layers_fp=ours.first_layers_fp,
        record_path=str(record_path(ours)) if ours.record_attention else None, backend=ours.attention_backend,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if ours.help:
        easycache_sample_video.print_help(parser, ours)
        return 0

    from easycache import EasyCacheConfig
    from easycache.errors import UsageError

    try:
        if ours.backend not in (None, "tencent"):  # None: the default, Tencent
            raise UsageError("hyvideo_svg_easycache.py runs Tencent's HunyuanVideo; for a diffusers pipeline "
                             "use easycache.sparse.apply_svg(pipe, SVGConfig(...)) in Python")
        try:
            config = EasyCacheConfig(thresh=0.0 if ours.no_easycache else ours.easycache_thresh,
                                     warmup_steps=ours.easycache_warmup_steps)
            sparse = svg_config(ours)
        except ValueError as error:
            raise UsageError(str(error)) from error
        run_tencent(ours, rest, config, sparse)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted: videos and records already written are kept")
        return 130
    return 0


def run_tencent(ours: argparse.Namespace, rest: list[str], config, sparse) -> list[Path]:
    """easycache.hyvideo.run, with sparse attention installed on the transformer before EasyCache."""
    from easycache import hyvideo
    from easycache.errors import UsageError
    from easycache.sparse import apply_svg

    installed = {}

    def prepare(sampler, args) -> None:
        try:
            installed["state"] = apply_svg(sampler, sparse)
        except ValueError as error:
            raise UsageError(str(error)) from error
        logger.info(f"sparse attention: pattern {sparse.pattern}, sparsity {sparse.sparsity}, "
                    f"first_times_fp {sparse.first_times_fp}, first_layers_fp {sparse.first_layers_fp}")

    root = hyvideo.find_checkout(ours.hunyuan_root)
    videos = hyvideo.run(rest, root, config, easycache_enabled=not ours.no_easycache, prepare=prepare)
    state = installed.get("state")
    if state is not None:
        summary = state.summary()
        logger.info(f"sparse attention: {summary['sparse_calls']}/{summary['attention_calls']} attention "
                    f"calls sparse, heads chosen {summary['heads_chosen']}")
        if sparse.record_path:
            logger.info(f"attention records: {sparse.record_path}")
        for video in videos:
            add_svg_section(video.with_suffix(".json"), sparse, summary)
    return videos


def add_svg_section(run_json: Path, sparse, summary: dict) -> None:
    """The run's JSON, with what sparse attention did added under "svg"."""
    if not run_json.is_file():
        return
    import dataclasses

    record = json.loads(run_json.read_text())
    record["svg"] = {**dataclasses.asdict(sparse), **summary}
    run_json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.exit(main())
