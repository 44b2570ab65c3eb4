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
own parser, and of easycache_sample_video.py, works (``--backend diffusers`` with a HunyuanVideo
pipeline too). Beside each video it writes a JSON of the run (with an "svg" section).
"""

from __future__ import annotations

import sys

from easycache import cli


def build_parser():
    return cli.entry_parser("hyvideo_svg_easycache.py", __doc__.split("\n\n")[0], sparse=True)


def sparse_attention(ours) -> tuple:
    """SVG's flags as a step of the run (refused in one line, naming the flag, before loading)."""
    from easycache.sparse import SVGConfig
    from easycache.sparse.step import SparseAttentionStep

    config = cli.checked_config(SVGConfig, cli.given_fields(ours, SVGConfig), cli.SVG_FLAG)
    return (SparseAttentionStep(config),)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, build_parser(), extensions=sparse_attention)


if __name__ == "__main__":
    sys.exit(main())
