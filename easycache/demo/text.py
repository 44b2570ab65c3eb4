"""The demo's text encoder: a word-level tokenizer over the demo's vocabulary and a small
transformer encoder, trained with the video model (HunyuanVideo's are a 7B Llama and CLIP-L,
frozen; here nothing pretrained is available offline, and the vocabulary is about 25 words).

It gives what ``HunyuanVideoTransformer3DModel`` takes: per-token embeddings with an attention
mask (Llama's role) and one pooled vector (CLIP's role).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .clips import BACKGROUNDS, COLOURS, DIRECTIONS, FILLERS, SHAPES

SPECIAL = ("<pad>", "<unk>", "<s>")
VOCAB = [*SPECIAL, *FILLERS, *COLOURS, *SHAPES, *DIRECTIONS, *BACKGROUNDS]


class WordTokenizer:
    """Lower-cased words to ids; unknown words map to ``<unk>``. Id 0 is padding; ``<s>`` opens
    every prompt, so even the empty prompt (unconditional, for guidance) has one token."""

    def __init__(self, vocab: list[str] = VOCAB, max_length: int = 12):
        self.vocab = {word: i for i, word in enumerate(vocab)}
        self.max_length = max_length

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, mask)``, both ``(len(prompts), max_length)``; the mask is 1 on real tokens."""
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            words = ["<s>", *re.findall(r"[a-z]+", prompt.lower())][: self.max_length]
            ids[row, : len(words)] = torch.tensor([self.vocab.get(w, self.vocab["<unk>"]) for w in words])
        return ids, (ids != 0).long()


class TextEncoder(nn.Module):
    """Word and position embeddings, then ``layers`` transformer-encoder layers over the prompt.

    ``width`` is the size of each token embedding (the transformer's ``text_embed_dim``) and of the
    pooled vector (``pooled_projection_dim``); more width and layers understand nothing more here.
    """

    def __init__(self, vocab_size: int = len(VOCAB), width: int = 64, layers: int = 2, heads: int = 4,
                 max_length: int = 12):
        super().__init__()
        self.words = nn.Embedding(vocab_size, width)
        self.positions = nn.Parameter(torch.zeros(max_length, width))
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=width * 2, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.pool = nn.Linear(width, width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, L, width), pooled (B, width))`` for token ids and their mask."""
        x = self.words(ids) + self.positions[: ids.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=mask == 0))
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1)
        return x, self.pool(pooled)
