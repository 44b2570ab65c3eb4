"""The demo's world: coloured shapes moving over a plain background, and the prompts naming them.

Clips are drawn on the fly from a seeded generator, so training needs no data set. A clip is
``(frames, 3, size, size)`` in [0, 1]. Prompts read "a red circle moving left" (on black, the
default background) or "a red circle moving left on a gray background". Some (colour, shape, direction) combinations are never trained on
(``HELD_OUT``); every colour, shape and direction, and every pair of them, is still seen in
training, so sampling a held-out prompt tests whether the model combines words it knows.
"""

from __future__ import annotations

import torch

COLOURS = {
    "red": (0.95, 0.10, 0.10),
    "green": (0.10, 0.80, 0.15),
    "blue": (0.15, 0.30, 1.00),
    "yellow": (1.00, 0.90, 0.10),
    "purple": (0.65, 0.20, 0.90),
    "cyan": (0.10, 0.90, 0.95),
}
BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "gray": (0.45, 0.45, 0.45), "white": (1.0, 1.0, 1.0)}
DEFAULT_BACKGROUND = "black"  # what a prompt that names no background shows
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (dy, dx)
FILLERS = ("a", "moving", "on", "background")

# (colour, shape, direction) with shape index == (colour index + direction index) % 3: 24
# combinations, one shape in three for every (colour, direction) pair. Never trained on.
HELD_OUT = [
    (c, s, d)
    for ci, c in enumerate(COLOURS)
    for di, d in enumerate(DIRECTIONS)
    for si, s in enumerate(SHAPES)
    if si == (ci + di) % len(SHAPES)
]
TRAIN_COMBOS = [
    (c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS if (c, s, d) not in set(HELD_OUT)
]


def prompt_for(colour: str, shape: str, direction: str, background: str = DEFAULT_BACKGROUND) -> str:
    """The prompt naming a clip; the default background goes unnamed."""
    text = f"a {colour} {shape} moving {direction}"
    return text if background == DEFAULT_BACKGROUND else f"{text} on a {background} background"


def shape_mask(shape: str, cy: torch.Tensor, cx: torch.Tensor, radius: float, size: int) -> torch.Tensor:
    """Soft (anti-aliased) masks ``(len(cy), size, size)`` of a shape centred at (cy, cx) in pixels."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    y = grid.view(1, -1, 1) - cy.view(-1, 1, 1)
    x = grid.view(1, 1, -1) - cx.view(-1, 1, 1)
    if shape == "circle":
        distance = (y**2 + x**2).sqrt() - radius
    elif shape == "square":
        distance = torch.maximum(y.abs(), x.abs()) - radius * 0.85
    elif shape == "triangle":  # apex up: inside while below the two slanted edges and above the base
        base = y - radius * 0.8
        edges = (x.abs() * 2.0 - (y + radius)) / 5**0.5
        distance = torch.maximum(base, edges)
    else:
        raise ValueError(f"unknown shape {shape!r}; one of {SHAPES}")
    return (0.5 - distance).clamp(0.0, 1.0)


def render_clip(
    colour: str, shape: str, direction: str, background: str, *, frames: int, size: int,
    start: tuple[float, float], speed: float, radius: float,
) -> torch.Tensor:
    """One clip ``(frames, 3, size, size)``: the shape moving ``speed`` pixels a frame from ``start``."""
    dy, dx = DIRECTIONS[direction]
    t = torch.arange(frames, dtype=torch.float32)
    mask = shape_mask(shape, start[0] + dy * speed * t, start[1] + dx * speed * t, radius, size).unsqueeze(1)
    fg = torch.tensor(COLOURS[colour]).view(1, 3, 1, 1)
    bg = torch.tensor(BACKGROUNDS[background]).view(1, 3, 1, 1)
    return bg * (1 - mask) + fg * mask


def sample_clip(generator: torch.Generator, frames: int, size: int, combos=TRAIN_COMBOS,
                caption_noise: float = 0.0) -> tuple[torch.Tensor, str]:
    """A random clip of a random combination and its prompt.

    ``caption_noise``: the fraction of clips whose prompt names another direction than the one the
    shape moves in (as web captions are often wrong); the named combination is still one of
    ``combos``, so a held-out prompt is never seen, not even with the wrong clip. With it the data
    itself says "moving left" means left only most of the time: sampling the model's conditional
    as it is (no guidance) reproduces that noise, and classifier-free guidance sharpens it toward
    the prompt, which is why real models need guidance. 0 draws no extra random number (the first
    demo's data stream is unchanged).

    The shape crosses the frame: it starts near the edge it moves away from and travels 80-100% of
    the way to the opposite one, a little off the middle across the motion (up to 15% of the frame).
    Why not anywhere: with a random start, "moving left" is only a relation between frames, which
    this tiny model did not learn in an hour on a CPU (direction right in 1 of 20 held-out prompts).
    A crossing also puts the direction into the average clip of a prompt (where the shape is in each
    frame), which is what the model predicts from pure noise, given the coordinate channels
    (``model.py``). Size, speed, offset and background still vary.

    The prompt always determines the background (unnamed: black, half the clips). An earlier version
    named it only half the time, so from pure noise the background was a coin toss between black,
    gray and white: that ambiguity was ~80% of the loss there and drowned the direction's share
    (measured: 1,000 pure-noise steps learned no direction with it; with the background fixed,
    the predicted centroid moved 1.2-2.9 px the named way).
    """

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    def pick(seq):
        return seq[int(torch.randint(len(seq), (), generator=generator))]

    colour, shape, direction = pick(combos)
    others = [name for name in BACKGROUNDS if name != DEFAULT_BACKGROUND]
    background = DEFAULT_BACKGROUND if float(torch.rand((), generator=generator)) < 0.5 else pick(others)
    radius = uniform(0.16, 0.2) * size
    lo, hi = radius + 1, size - radius - 1  # where the centre may go with the whole shape inside
    travel = uniform(0.8, 1.0) * (hi - lo)
    start_along = lo + uniform(0, hi - lo - travel)  # for a positive direction; mirrored below
    across = size / 2 + uniform(-0.15, 0.15) * size
    dy, dx = DIRECTIONS[direction]
    along = start_along if (dy + dx) > 0 else size - start_along
    start = (along, across) if dy else (across, along)
    clip = render_clip(colour, shape, direction, background, frames=frames, size=size,
                       start=start, speed=travel / (frames - 1), radius=radius)
    named = direction
    if caption_noise > 0 and float(torch.rand((), generator=generator)) < caption_noise:
        others = [d for d in DIRECTIONS if d != direction and (colour, shape, d) in combos]
        named = pick(others) if others else direction
    return clip, prompt_for(colour, shape, named, background)
