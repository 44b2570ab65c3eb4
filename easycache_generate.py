#!/usr/bin/env python3
"""HunyuanVideo-1.5 + EasyCache: a drop-in for HunyuanVideo-1.5's ``generate.py``.

    torchrun --nproc_per_node=8 easycache_generate.py --prompt "A cat walks on the grass." \\
        --resolution 480p --model_path ./ckpts --output_path ./outputs/cat.mp4 --seed 1

Copy this file (with the easycache package) into a HunyuanVideo-1.5 checkout, or run it from
anywhere with --hunyuan-root PATH; every flag of generate.py's own parser works, plus EasyCache's.
It writes what generate.py writes (the video, its _config.json) and, beside the video, a JSON of the
run. --enable_cache (generate.py's fixed-schedule caches) is refused: EasyCache replaces it.
"""

from __future__ import annotations

import os
import sys

# As generate.py does before torch is imported (the CUDA allocator reads it on first use).
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

from easycache import cli  # noqa: E402

def build_parser():
    """The shared entry flags, the backend fixed to HunyuanVideo-1.5."""
    return cli.entry_parser("easycache_generate.py", __doc__.split("\n\n")[0], backend="hunyuan15",
                            checkout="HunyuanVideo-1.5")


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
