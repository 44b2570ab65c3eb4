#!/usr/bin/env python3
"""HunyuanVideo + EasyCache: a drop-in for HunyuanVideo's ``sample_video.py``.

    python3 easycache_sample_video.py --video-size 544 960 --video-length 129 --infer-steps 50 \\
        --prompt "A cat walks on the grass, realistic style." --flow-reverse --use-cpu-offload \\
        --save-path ./results --seed 42

Run it inside a HunyuanVideo checkout (or anywhere with --hunyuan-root PATH); every flag of
HunyuanVideo's own parser works. ``--backend diffusers --model ID_OR_FOLDER`` runs the same job
through a diffusers pipeline (with that model's preset); ``--model demo`` the embedded demo model.
Beside each video it writes a JSON of the run.
"""

from __future__ import annotations

import sys

from easycache import cli


def build_parser():
    return cli.entry_parser("easycache_sample_video.py", __doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
