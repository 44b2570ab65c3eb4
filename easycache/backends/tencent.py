"""Tencent's HunyuanVideo (a checkout with ``hyvideo/``): finding it, its flags, its sampler.

Nothing of HunyuanVideo is copied here: its own parser reads its flags, its own sampler loads the
models and samples, and EasyCache is installed on the sampler's pipeline (its transformer instance)
after everything HunyuanVideo wraps around that instance (xDiT's sequence-parallel forward,
accelerate's CPU-offload hooks), so the cache is the outermost layer.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import UsageError
from ..runner import Backend, Settings, Video, prompt_required
from ._checks import check_frame_grid, check_sampling_flags

CHECKOUT_HINT = (
    "run this inside a HunyuanVideo checkout, or pass --hunyuan-root PATH "
    "(git clone https://github.com/Tencent/HunyuanVideo), or use --backend diffusers --model "
    "hunyuanvideo-community/HunyuanVideo"
)
DIT_WEIGHT = Path("hunyuan-video-t2v-720p") / "transformers" / "mp_rank_00_model_states.pt"
WEIGHTS_HINT = "download them as HunyuanVideo's README says (ckpts/README.md there), or pass --model-base PATH"


def find_checkout(explicit: str | None) -> Path:
    """The HunyuanVideo checkout: ``--hunyuan-root``, else the current directory."""
    root = Path(explicit).expanduser() if explicit else Path.cwd()
    if not (root / "hyvideo" / "inference.py").is_file():
        where = f"--hunyuan-root {root}" if explicit else f"the current directory ({root})"
        raise UsageError(f"HunyuanVideo's code (hyvideo/) was not found in {where}; {CHECKOUT_HINT}")
    return root.resolve()


def import_hyvideo(root: Path) -> SimpleNamespace:
    """Import HunyuanVideo's parser and sampler from the checkout."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from hyvideo.config import parse_args
        from hyvideo.inference import HunyuanVideoSampler
    except ImportError as error:
        raise UsageError(
            f"HunyuanVideo's code in {root} does not import ({error}); install its requirements "
            "(pip install -r requirements.txt in the checkout)"
        ) from error
    return SimpleNamespace(parse_args=parse_args, Sampler=HunyuanVideoSampler)


def parse_hyvideo_args(hy: SimpleNamespace, argv: list[str], root: Path, need_prompt: bool = True) -> argparse.Namespace:
    """HunyuanVideo's own parser on its own flags, with weights found relative to the checkout.

    HunyuanVideo reads the text-encoder and VAE paths from ``$MODEL_BASE`` (default ``./ckpts``) and
    the transformer from ``--dit-weight`` (default ``ckpts/...``), both relative to the current
    directory. Here they follow ``--model-base`` when it is given, and the checkout's ``ckpts/``
    when run from elsewhere, so one flag points at one set of weights.
    """
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--model-base")
    peek.add_argument("--dit-weight")
    given, _ = peek.parse_known_args(argv)
    model_base = Path(given.model_base or ("ckpts" if Path("ckpts").exists() else root / "ckpts"))
    argv = list(argv)
    if given.model_base is None:
        argv += ["--model-base", str(model_base)]
    if given.dit_weight is None:
        argv += ["--dit-weight", str(model_base / DIT_WEIGHT)]
    os.environ.setdefault("MODEL_BASE", str(model_base))
    saved = sys.argv
    sys.argv = [sys.argv[0], *argv]
    try:
        args = hy.parse_args()
    except ValueError as error:  # HunyuanVideo's own sanity checks raise ValueError
        raise UsageError(f"{error}") from error
    finally:
        sys.argv = saved
    if not Path(args.model_base).is_dir():
        raise UsageError(f"HunyuanVideo's weights were not found at {args.model_base}; {WEIGHTS_HINT}")
    if not Path(args.dit_weight).exists():
        raise UsageError(f"the transformer weights {args.dit_weight} do not exist; {WEIGHTS_HINT}")
    prompt_required(args.prompt, need_prompt)
    check_sampling_flags(args)
    check_frame_grid(args, temporal=4, spatial=1, model="HunyuanVideo")  # it refuses other lengths itself, later
    height, width = args.video_size
    if height % 16 or width % 16:
        from loguru import logger

        logger.warning(f"--video-size {height} {width}: HunyuanVideo rounds the size up to multiples of 16: "
                       f"{-(-height // 16) * 16} {-(-width // 16) * 16}")
    return args


class TencentBackend(Backend):
    """HunyuanVideo's own sampler from a checkout (``--hunyuan-root`` or the current directory)."""

    name = "tencent"

    hy: SimpleNamespace | None = None  # HunyuanVideo's parser and sampler, once imported

    def checkout(self) -> SimpleNamespace:
        if self.hy is None:
            self.root = find_checkout(self.hunyuan_root)
            self.hy = import_hyvideo(self.root)
        return self.hy

    def print_help(self) -> None:
        try:
            hy = self.checkout()
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

    def parse(self, argv: list[str], need_prompt: bool) -> tuple[argparse.Namespace, Settings]:
        args = parse_hyvideo_args(self.checkout(), argv, self.root, need_prompt)
        save_dir = args.save_path if args.save_path_suffix == "" else f"{args.save_path}_{args.save_path_suffix}"
        return args, Settings(save_dir=Path(save_dir), prompt=args.prompt, seed=args.seed, steps=args.infer_steps,
                              num_videos=args.num_videos, splits_video=args.ulysses_degree * args.ring_degree > 1)

    def load(self, args: argparse.Namespace) -> Any:
        """HunyuanVideo's sampler; it wraps its transformer (xDiT, offload hooks) as it always does."""
        sampler = self.checkout().Sampler.from_pretrained(Path(args.model_base), args=args)
        args.__dict__.update(vars(sampler.args))
        return sampler

    def sample(self, sampler: Any, args: argparse.Namespace, prompt: str, seed: int, num_videos: int) -> list[Video]:
        outputs = sampler.predict(
            prompt=prompt,
            height=args.video_size[0],
            width=args.video_size[1],
            video_length=args.video_length,
            seed=seed,
            negative_prompt=args.neg_prompt,
            infer_steps=args.infer_steps,
            guidance_scale=args.cfg_scale,
            num_videos_per_prompt=num_videos,
            flow_shift=args.flow_shift,
            batch_size=args.batch_size,
            embedded_guidance_scale=args.embedded_cfg_scale,
        )
        return [Video(frames, seed) for frames, seed in zip(outputs["samples"], outputs["seeds"])]


BACKEND = TencentBackend
