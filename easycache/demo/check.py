"""Does a sampled clip show what its prompt names? Colour and direction, measured on the pixels.

The background is the median colour of each frame's border; the object is the pixels far from it.
Its colour is the nearest named colour to the median colour of the object's core over all frames; its motion is
the displacement of its centroid from the first frames to the last, named by the larger axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .clips import COLOURS, DIRECTIONS, HELD_OUT, prompt_for

# 20 prompts the model never saw as written: held-out (colour, shape, direction) combinations.
HELD_OUT_PROMPTS = [prompt_for(*combo) for combo in HELD_OUT[:20]]
OBJECT_DISTANCE = 0.3  # RGB distance from the background above which a pixel is the object
MIN_TRAVEL = 2.0  # pixels the centroid must move for the motion to count


@dataclass
class ClipReading:
    colour: str | None
    direction: str | None
    travel: float  # pixels the centroid moved


def read_clip(frames) -> ClipReading:
    """Colour and motion of the object in ``frames`` ``(F, H, W, 3)`` in [0, 1] (numpy or torch)."""
    video = frames.detach().cpu().float().numpy() if torch.is_tensor(frames) else np.asarray(frames, dtype=np.float32)
    border = np.concatenate([video[:, 0], video[:, -1], video[:, :, 0], video[:, :, -1]], axis=1)
    background = np.median(border, axis=1)  # (F, 3)
    distance = np.linalg.norm(video - background[:, None, None], axis=-1)  # (F, H, W)
    mask = distance > OBJECT_DISTANCE
    if mask.sum() == 0:
        return ClipReading(None, None, 0.0)
    # The colour from the object's core: edge pixels are blended with the background (darker on
    # black), so only the farther half of the object's pixels is read.
    core = mask & (distance >= np.median(distance[mask]))
    object_colour = np.median(video[core], axis=0)
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names])
    colour = names[int(np.argmin(np.linalg.norm(palette - object_colour, axis=1)))]

    def centroid(masks: np.ndarray) -> np.ndarray | None:
        weights = masks.sum(0).astype(np.float64)  # (H, W): how many of these frames cover a pixel
        if weights.sum() == 0:
            return None
        ys, xs = np.indices(weights.shape)
        return np.array([(ys * weights).sum(), (xs * weights).sum()]) / weights.sum()

    first, last = centroid(mask[:2]), centroid(mask[-2:])
    if first is None or last is None:
        return ClipReading(colour, None, 0.0)
    dy, dx = last - first
    travel = float(np.hypot(dy, dx))
    if travel < MIN_TRAVEL:
        return ClipReading(colour, None, travel)
    step = (int(np.sign(dy)), 0) if abs(dy) > abs(dx) else (0, int(np.sign(dx)))
    direction = next(name for name, d in DIRECTIONS.items() if d == step)
    return ClipReading(colour, direction, travel)


def matches(prompt: str, reading: ClipReading) -> bool:
    """True if the reading shows the colour and the direction the prompt names."""
    words = prompt.split()
    return reading.colour in words and reading.direction in words


@dataclass(frozen=True, order=True)
class Score:
    """The check's score of a set of clips, compared as a tuple: first how many show the named
    colour and direction; then, among equal counts, how far they move that way (the mean of the
    centroid's travel, 0 for a clip that is wrong). Clips of the training data travel 6.5 px on
    average by this reading (400 drawn clips of the held-out combinations; 5.3 to 8.0)."""

    right: int
    travel: float


def score_of(results: list[tuple[str, ClipReading, bool]]) -> Score:
    """The ``Score`` of ``score_prompts``' results."""
    travel = [reading.travel if ok else 0.0 for _, reading, ok in results]
    return Score(sum(ok for *_, ok in results), float(np.mean(travel)) if travel else 0.0)


def score_prompts(pipe, prompts: list[str] = HELD_OUT_PROMPTS, steps: int = 30, seed: int = 0,
                  guidance_scale: float | None = None) -> list[tuple[str, ClipReading, bool]]:
    """Sample each prompt (one seed, all in one batch; ``guidance_scale`` None: the model's own) and read it."""
    generator = torch.Generator().manual_seed(seed)
    videos = pipe(prompts, num_inference_steps=steps, generator=generator, output_type="np",
                  guidance_scale=guidance_scale).frames
    readings = [read_clip(v) for v in videos]
    return [(p, r, matches(p, r)) for p, r in zip(prompts, readings)]
