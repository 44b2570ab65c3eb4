"""Baseline beside EasyCache as one small GIF, for the README and for a quick look at a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def side_by_side_gif(baseline, cached, path: Path, scale: int = 8, fps: int = 6,
                     labels: tuple[str, str] = ("baseline", "EasyCache")) -> Path:
    """Write ``baseline | cached`` (each ``(F, H, W, 3)`` in [0, 1]) enlarged ``scale`` times, labelled."""
    import imageio
    from PIL import Image, ImageDraw

    def panel(frame: np.ndarray, label: str) -> np.ndarray:
        big = np.kron((np.clip(frame, 0, 1) * 255).astype(np.uint8), np.ones((scale, scale, 1), np.uint8))
        canvas = Image.new("RGB", (big.shape[1], big.shape[0] + 14), (255, 255, 255))
        canvas.paste(Image.fromarray(big), (0, 14))
        ImageDraw.Draw(canvas).text((3, 1), label, fill=(0, 0, 0))
        return np.asarray(canvas)

    frames = [np.concatenate([panel(a, labels[0]), np.full((panel(a, "").shape[0], 4, 3), 255, np.uint8),
                              panel(b, labels[1])], axis=1) for a, b in zip(baseline, cached)]
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    return path
