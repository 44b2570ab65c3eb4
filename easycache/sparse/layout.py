"""Where the video and text tokens sit in one attention sequence, and SVG's token-major order.

Both HunyuanVideo code bases (Tencent's ``hyvideo`` and diffusers) attend over one sequence per
sample: the video tokens first, frame-major (frame 0's ``h*w`` tokens, then frame 1's, ...), then
the text tokens, valid ones first and padding last. A *temporal* head is computed in token-major
order instead (token 0 of every frame, then token 1 of every frame, ...), so that "the same spatial
position across frames" becomes a diagonal band, exactly like "the same frame" is in frame-major order.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class VideoLayout:
    """One attention sequence: ``frames * tokens_per_frame`` video tokens, then ``text_len`` text tokens.

    ``text_valid`` holds, per sample of the batch, how many of the text tokens are real (the rest is
    padding). Real tokens never attend to padding; padding attends only to padding.
    """

    frames: int
    tokens_per_frame: int
    text_len: int
    text_valid: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.frames < 1 or self.tokens_per_frame < 1 or self.text_len < 0:
            raise ValueError(f"bad layout: {self}")
        if not self.text_valid or any(not 0 <= n <= self.text_len for n in self.text_valid):
            raise ValueError(f"text_valid must hold one length in [0, {self.text_len}] per sample: {self.text_valid}")

    @classmethod
    def uniform(cls, frames: int, tokens_per_frame: int, text_len: int, text_valid: int | None = None,
                batch: int = 1) -> "VideoLayout":
        """The same valid text length (default: all of it) for each of ``batch`` samples."""
        valid = text_len if text_valid is None else text_valid
        return cls(frames, tokens_per_frame, text_len, (int(valid),) * batch)

    @property
    def video_len(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def seq_len(self) -> int:
        return self.video_len + self.text_len

    @property
    def batch(self) -> int:
        return len(self.text_valid)

    def real_lengths(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Per sample, the length of the real (non-padding) prefix of the sequence: shape (batch,)."""
        return torch.tensor([self.video_len + n for n in self.text_valid], dtype=torch.long, device=device)

    def to_token_major(self, index: torch.Tensor) -> torch.Tensor:
        """Frame-major sequence positions -> token-major positions (text positions unchanged)."""
        frame, token = index // self.tokens_per_frame, index % self.tokens_per_frame
        return torch.where(index < self.video_len, token * self.frames + frame, index)

    def token_major_order(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``order[j]``: the frame-major position of the token at token-major position ``j`` (shape (seq_len,))."""
        j = torch.arange(self.seq_len, device=device)
        frame, token = j % self.frames, j // self.frames
        return torch.where(j < self.video_len, frame * self.tokens_per_frame + token, j)
