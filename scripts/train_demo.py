#!/usr/bin/env python3
"""Train an embedded demo model from scratch: a tiny transformer (diffusers' HunyuanVideo or Wan 2.1)
and its text encoder.

    python scripts/train_demo.py --threads 2      # the shipped 'demo' weights: 25 min on a 2-core CPU
    python scripts/train_demo.py --architecture wan --steps 6000 --threads 2   # the shipped 'demo-wan'
    python scripts/train_demo.py                  # the GPU if there is one; seeded either way
    python scripts/train_demo.py --steps 200 --out /tmp/demo   # a quick try

Both architectures share everything here: the clips, the text encoder, the objective, the noise
levels, the schedule; only the transformer (``easycache/demo/model.py``) and the prompt's form differ.
The Wan demo's captions are noisy by default (``--caption-noise`` 0.25: a quarter of its clips move
another way than their prompt says, as web captions are often wrong), so that, as with real video
models, sampling its conditional as it is reproduces the noise and classifier-free guidance is what
makes it follow the prompt. Without that noise this world is so easy that a trained model follows
every held-out prompt unguided (measured: 40 of 40 with and without guidance at step 2,000 of a
4,000-step run), and guidance has nothing to add.

Clips are drawn on the fly (``easycache/demo/clips.py``), never from the held-out combinations.
The objective is HunyuanVideo's flow matching: ``x_s = (1 - s) x0 + s noise``, the transformer
predicts ``noise - x0`` at timestep ``1000 s``, the velocity diffusers' FlowMatchEulerDiscreteScheduler
integrates. Noise levels ``s``: half are drawn as the sampler places them (uniform, then the
scheduler's shift, 7.0), which puts most of them near pure noise; the other half are uniform, so the
few low-noise steps the sampler takes at the end, which draw the final edges, are trained too.
Pure noise (level 1) is where the prompt alone must decide the layout: where the object is in each
frame, so which way it moves. At any lower level the noisy clip itself already shows much of that to
a model that denoises what it sees, and that easier lesson is learned first. So the first
``--pure-noise-steps`` (2000) are all at level 1, and after them a ``--pure-noise`` fraction (0.3)
of each batch stays there. Measured (centroid travel the named way, in pixels, of the clip predicted
from pure noise, 6 prompts a direction): in the shipped run about 0 at step 500, -0.1 to 0.6 at 1000,
5.1 for every direction at 1500; mixed from the start (0.3 or 0.5 of each batch at pure noise),
within +-0.15 at step 2000. One prompt in ten is dropped (the empty prompt) so classifier-free
guidance can be used.
Same seed, same device type: the same weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
from loguru import logger
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from easycache.demo.clips import sample_clip  # noqa: E402
from easycache.demo.model import ARCHITECTURES, DemoConfig, encode, text_inputs, with_coordinates  # noqa: E402
from easycache.demo.text import WordTokenizer  # noqa: E402
from easycache.demo.weights import CONFIG, DEMO_FOLDERS, build_modules, load_demo, save_demo  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10000, help="optimizer steps; more is better and slower")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (cosine decay)")
    parser.add_argument("--ema", type=float, default=0.995, help="decay of the weights' moving average (saved)")
    parser.add_argument("--drop-prompt", type=float, default=0.1, help="fraction trained with the empty prompt")
    parser.add_argument("--pure-noise", type=float, default=0.3,
                        help="fraction trained at noise level 1 (no image left: only the prompt tells what to draw)")
    parser.add_argument("--pure-noise-steps", type=int, default=None,
                        help="first steps trained at noise level 1 only, where the prompt alone decides the "
                             "layout (see the module docstring); default 2000, or 0 when continuing with --init")
    parser.add_argument("--caption-noise", type=float, default=None,
                        help="fraction of clips whose prompt names a wrong direction (easycache/demo/clips.py); "
                             "default 0.25 for --architecture wan (so guidance has work to do), else 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, default=None,
                        help="continue from weights saved by an earlier run (its folder); its config is kept")
    parser.add_argument("--no-coordinates", action="store_true",
                        help="a fresh model without coordinate channels (see easycache/demo/model.py; for comparison)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--save-every", type=int, default=500, help="also save every N steps (0: only at the end)")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="hunyuan",
                        help="the transformer: diffusers' HunyuanVideo (the 'demo' model) or Wan 2.1 ('demo-wan')")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for demo.safetensors and config.json (default: the shipped model's folder)")
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def noise_levels(n: int, shift: float, pure_noise: float, generator: torch.Generator) -> torch.Tensor:
    """Noise levels of one batch: a ``pure_noise`` fraction exactly 1, then half as the shifted
    sampler visits them and half uniform (see the module docstring)."""
    u = torch.rand(n, generator=generator)
    shifted = shift * u / (1 + (shift - 1) * u)
    use_shifted = torch.rand(n, generator=generator) < 0.5
    sigma = torch.where(use_shifted, shifted, torch.rand(n, generator=generator))
    return torch.where(torch.rand(n, generator=generator) < pure_noise, torch.ones(n), sigma)


def learning_rate(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.out is None:
        args.out = DEMO_FOLDERS["demo-wan" if args.architecture == "wan" else "demo"]
    if args.caption_noise is None:
        args.caption_noise = 0.25 if args.architecture == "wan" else 0.0
    if args.pure_noise_steps is None:
        args.pure_noise_steps = 0 if args.init is not None else 2000
    torch.set_grad_enabled(True)  # whatever the caller's process had set
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    before = None  # the earlier stages' records, when this run continues one
    if args.init is not None:  # a second stage: same model, trained further (the EMA weights saved)
        config, transformer, text_encoder = load_demo(args.init)
        before = json.loads((args.init / CONFIG).read_text()).get("training")
    else:
        config = DemoConfig.for_architecture(args.architecture, coordinates=not args.no_coordinates)
        transformer, text_encoder = build_modules(config)
    transformer.to(device).train()
    text_encoder.to(device).train()
    ema = [copy.deepcopy(m).eval().requires_grad_(False) for m in (transformer, text_encoder)]
    params = [*transformer.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    tokenizer = WordTokenizer(max_length=config.max_words)
    data = torch.Generator().manual_seed(args.seed)  # clips, prompts, noise: all from CPU generators
    logger.info(f"training the demo on {device}: {sum(p.numel() for p in params) / 1e6:.2f}M parameters, "
                f"{args.steps} steps of {args.batch_size} clips")

    def save(step: int, seconds: float) -> None:
        extra = {"steps": step, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "before": before,
                 "pure_noise": args.pure_noise, "pure_noise_steps": args.pure_noise_steps, "device": str(device),
                 "architecture": config.architecture, "caption_noise": args.caption_noise,
                 "seconds": round(seconds, 1), "loss_ema": round(loss_avg, 5)}
        save_demo(args.out, config, ema[0], ema[1], extra)
        logger.info(f"saved {args.out} at step {step}")

    started, loss_avg = time.perf_counter(), None
    for step in (bar := tqdm(range(args.steps), desc="train demo", mininterval=10)):
        clips, prompts = zip(*(sample_clip(data, config.frames, config.size, caption_noise=args.caption_noise)
                               for _ in range(args.batch_size)))
        prompts = ["" if float(torch.rand((), generator=data)) < args.drop_prompt else p for p in prompts]
        x0 = encode(torch.stack(clips), config.fold)
        noise = torch.randn(x0.shape, generator=data)
        pure_noise = 1.0 if step < args.pure_noise_steps else args.pure_noise
        sigma = noise_levels(len(prompts), config.shift, pure_noise, data)
        s = sigma.view(-1, 1, 1, 1, 1)
        xt = ((1 - s) * x0 + s * noise).to(device)
        if config.coordinates:
            xt = with_coordinates(xt)
        target = (noise - x0).to(device)
        ids, mask = (t.to(device) for t in tokenizer(prompts))

        tokens, pooled = text_encoder(ids, mask)
        pred = transformer(hidden_states=xt, timestep=(sigma * 1000).to(device), **text_inputs(config, tokens, mask, pooled),
                           return_dict=False)[0]
        loss = (pred.float() - target).pow(2).mean()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            for average, model in zip(ema, (transformer, text_encoder)):
                for a, p in zip(average.parameters(), model.parameters()):
                    a.lerp_(p, 1 - args.ema)
        loss_value = float(loss.detach())
        loss_avg = loss_value if loss_avg is None else 0.98 * loss_avg + 0.02 * loss_value
        bar.set_postfix(loss=f"{loss_avg:.4f}", refresh=False)
        if step % 100 == 0:
            logger.info(f"step {step}: loss {loss_avg:.4f}, {time.perf_counter() - started:.0f}s")
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            save(step + 1, time.perf_counter() - started)
    save(args.steps, time.perf_counter() - started)
    logger.info(f"done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
