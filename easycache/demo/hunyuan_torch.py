"""The demo's HunyuanVideo transformer in plain torch, for a diffusers without one (before 0.32).

HunyuanVideo's own environment pins diffusers 0.31, which has no ``HunyuanVideoTransformer3DModel``.
So that ``--model demo`` runs there too, this module computes what that class computes for the
demo's configuration (text-to-video: no distilled-guidance embedding, no image conditioning), with
the same module tree, so the shipped weights load unchanged into either. Where diffusers has the
class, the demo uses diffusers' (``model.build_transformer``); ``tests/test_demo.py`` holds the two
outputs equal on the shipped weights, and the demo's cache decisions equal in both environments.

Written from the architecture (HunyuanVideo's paper and the parameter names of diffusers' class),
not copied from either code base. The blocks, in the order a call runs them:

- the prompt's tokens: projected to the hidden size, then refined by ``num_refiner_layers``
  self-attention blocks gated by the timestep and the prompt's mean token;
- the conditioning vector: the timestep's sinusoidal embedding plus the pooled prompt, each
  through a two-layer MLP;
- ``num_layers`` dual-stream blocks: video and text each modulated (shift, scale, gate) by the
  conditioning, attending jointly, with their own projections and feed-forwards;
- ``num_single_layers`` single-stream blocks: one sequence, attention and MLP in parallel;
- a modulated final norm and the projection back to latent channels.
RoPE (per axis: frames, rows, columns) rotates the video tokens' queries and keys, never the text's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


def timestep_features(t: torch.Tensor, width: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of ``t`` (cosines first), ``(B, width)``."""
    half = width // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t[:, None].float() * frequencies[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def rope_tables(frames: int, rows: int, cols: int, axes: tuple[int, ...], theta: float,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables ``(frames*rows*cols, sum(axes))``: each axis of a token's position gets
    its own slice of the head, each frequency on a pair of adjacent channels."""
    grids = torch.meshgrid(*(torch.arange(n, device=device, dtype=torch.float32) for n in (frames, rows, cols)),
                           indexing="ij")
    cos, sin = [], []
    for grid, dim in zip(grids, axes):
        frequencies = 1.0 / theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
        angles = torch.outer(grid.reshape(-1), frequencies)
        cos.append(angles.cos().repeat_interleave(2, dim=1))
        sin.append(angles.sin().repeat_interleave(2, dim=1))
    return torch.cat(cos, dim=1), torch.cat(sin, dim=1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on ``x (B, S, heads, D)``: each adjacent channel pair rotated by its angle."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(3)
    return (x.float() * cos[None, :, None] + turned.float() * sin[None, :, None]).to(x.dtype)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention on ``(B, S, heads, D)`` tensors; ``(B, S, heads * D)`` out."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


class MLP(nn.Module):
    """Two linear layers with an activation between (the conditioning embedders)."""

    def __init__(self, width_in: int, width: int):
        super().__init__()
        self.linear_1 = nn.Linear(width_in, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class Conditioning(nn.Module):
    """Timestep embedding plus projected pooled text: the vector every block is modulated by."""

    def __init__(self, width: int, pooled_width: int):
        super().__init__()
        self.timestep_embedder = MLP(256, width)
        self.text_embedder = MLP(pooled_width, width)

    def forward(self, t: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.timestep_embedder(timestep_features(t).to(pooled.dtype)) + self.text_embedder(pooled)


class Activated(nn.Module):
    """A linear layer followed by an activation (``proj`` then ``activation``)."""

    def __init__(self, width_in: int, width: int, activation):
        super().__init__()
        self.proj = nn.Linear(width_in, width)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.proj(x))


class FeedForward(nn.Module):
    """``net``: widen by ``ratio``, activate, (no dropout), narrow back."""

    def __init__(self, width: int, ratio: float, activation):
        super().__init__()
        hidden = int(width * ratio)
        self.net = nn.Sequential(Activated(width, hidden, activation), nn.Identity(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class Modulation(nn.Module):
    """``chunks`` vectors of the hidden width from the conditioning (shift, scale, gate, ...)."""

    def __init__(self, width: int, chunks: int):
        super().__init__()
        self.linear = nn.Linear(width, chunks * width)
        self.chunks = chunks

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(c[:, None] for c in self.linear(F.silu(condition)).chunk(self.chunks, dim=1))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Layer norm without parameters, then ``* (1 + scale) + shift``."""
    return F.layer_norm(x, x.shape[-1:], eps=EPS) * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention projections: ``to_q/k/v``, optional RMS norms of queries and keys,
    optional projections of a second (text) stream, and the outputs kept."""

    def __init__(self, width: int, heads: int, qk_norm: bool, text_stream: bool = False, out: bool = True):
        super().__init__()
        self.heads = heads
        head = width // heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(width, width) for _ in range(3))
        if qk_norm:
            self.norm_q, self.norm_k = nn.RMSNorm(head, eps=EPS), nn.RMSNorm(head, eps=EPS)
        if text_stream:
            self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(width, width) for _ in range(3))
            self.norm_added_q, self.norm_added_k = nn.RMSNorm(head, eps=EPS), nn.RMSNorm(head, eps=EPS)
            self.to_add_out = nn.Linear(width, width)
        if out:
            self.to_out = nn.Sequential(nn.Linear(width, width))

    def qkv(self, x: torch.Tensor, prefix: str = "") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``(B, S, heads, D)``, queries and keys normed when configured."""
        project = (self.add_q_proj, self.add_k_proj, self.add_v_proj) if prefix else (self.to_q, self.to_k, self.to_v)
        q, k, v = (p(x).unflatten(2, (self.heads, -1)) for p in project)
        norm_q, norm_k = getattr(self, f"norm{prefix}_q", None), getattr(self, f"norm{prefix}_k", None)
        return (norm_q(q) if norm_q else q), (norm_k(k) if norm_k else k), v


class RefinerBlock(nn.Module):
    """Self-attention over the prompt's tokens and a feed-forward, each gated by the conditioning."""

    def __init__(self, width: int, heads: int, ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=EPS)
        self.attn = Attention(width, heads, qk_norm=False)
        self.norm2 = nn.LayerNorm(width, eps=EPS)
        self.ff = FeedForward(width, ratio, F.silu)
        self.norm_out = Modulation(width, 2)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self.attn.qkv(self.norm1(x))
        gate_attention, gate_ff = self.norm_out(condition)
        x = x + self.attn.to_out(attend(q, k, v, mask)) * gate_attention
        return x + self.ff(self.norm2(x)) * gate_ff


class Refiner(nn.Module):
    """The prompt's tokens to the hidden width, refined under the timestep and the mean token."""

    def __init__(self, text_width: int, width: int, heads: int, layers: int, ratio: float):
        super().__init__()
        self.time_text_embed = Conditioning(width, text_width)
        self.proj_in = nn.Linear(text_width, width)
        self.token_refiner = nn.Module()
        self.token_refiner.refiner_blocks = nn.ModuleList(RefinerBlock(width, heads, ratio) for _ in range(layers))

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            pooled, pair_mask = tokens.mean(dim=1), None
        else:
            weights = mask.float().unsqueeze(-1)
            pooled = ((tokens * weights).sum(dim=1) / weights.sum(dim=1)).to(tokens.dtype)
            real = mask.bool()
            pair_mask = (real[:, None, :, None] & real[:, None, None, :]).clone()
            pair_mask[..., 0] = True  # padding queries attend to the first token (no empty row)
        condition = self.time_text_embed(t, pooled)
        x = self.proj_in(tokens)
        for block in self.token_refiner.refiner_blocks:
            x = block(x, condition, pair_mask)
        return x


class DualStreamBlock(nn.Module):
    """Video and text apart (their own modulation, projections, feed-forwards), attending jointly."""

    def __init__(self, width: int, heads: int, ratio: float):
        super().__init__()
        self.norm1, self.norm1_context = Modulation(width, 6), Modulation(width, 6)
        self.attn = Attention(width, heads, qk_norm=True, text_stream=True)
        self.ff = FeedForward(width, ratio, gelu_tanh)
        self.ff_context = FeedForward(width, ratio, gelu_tanh)

    def forward(self, x, text, condition, mask, rope):
        shift, scale, gate, shift_ff, scale_ff, gate_ff = self.norm1(condition)
        c_shift, c_scale, c_gate, c_shift_ff, c_scale_ff, c_gate_ff = self.norm1_context(condition)
        q, k, v = self.attn.qkv(modulate(x, shift, scale))
        q, k = rotate(q, *rope), rotate(k, *rope)
        tq, tk, tv = self.attn.qkv(modulate(text, c_shift, c_scale), prefix="_added")
        joint = attend(torch.cat([q, tq], 1), torch.cat([k, tk], 1), torch.cat([v, tv], 1), mask)
        video_out, text_out = joint[:, : x.shape[1]], joint[:, x.shape[1]:]
        x = x + self.attn.to_out(video_out) * gate
        text = text + self.attn.to_add_out(text_out) * c_gate
        x = x + self.ff(modulate(x, shift_ff, scale_ff)) * gate_ff
        text = text + self.ff_context(modulate(text, c_shift_ff, c_scale_ff)) * c_gate_ff
        return x, text


class SingleStreamBlock(nn.Module):
    """Video and text as one sequence: attention and an MLP side by side, one output projection."""

    def __init__(self, width: int, heads: int, ratio: float):
        super().__init__()
        hidden = int(width * ratio)
        self.attn = Attention(width, heads, qk_norm=True, out=False)
        self.norm = Modulation(width, 3)
        self.proj_mlp = nn.Linear(width, hidden)
        self.proj_out = nn.Linear(width + hidden, width)

    def forward(self, x, text, condition, mask, rope):
        video_length = x.shape[1]
        joined = torch.cat([x, text], dim=1)
        shift, scale, gate = self.norm(condition)
        normed = modulate(joined, shift, scale)
        q, k, v = self.attn.qkv(normed)
        q = torch.cat([rotate(q[:, :video_length], *rope), q[:, video_length:]], dim=1)
        k = torch.cat([rotate(k[:, :video_length], *rope), k[:, video_length:]], dim=1)
        both = torch.cat([attend(q, k, v, mask), gelu_tanh(self.proj_mlp(normed))], dim=2)
        joined = joined + self.proj_out(both) * gate
        return joined[:, :video_length], joined[:, video_length:]


class DemoHunyuanTransformer(nn.Module):
    """HunyuanVideo's text-to-video transformer, the keyword arguments of diffusers'
    ``HunyuanVideoTransformer3DModel`` for it (``guidance_embeds=False``, no image conditioning),
    called as that class is called."""

    def __init__(self, in_channels: int, out_channels: int, num_attention_heads: int, attention_head_dim: int,
                 num_layers: int, num_single_layers: int, num_refiner_layers: int, mlp_ratio: float,
                 patch_size: int, patch_size_t: int, text_embed_dim: int, pooled_projection_dim: int,
                 rope_axes_dim: tuple[int, ...], guidance_embeds: bool = False, qk_norm: str = "rms_norm",
                 rope_theta: float = 256.0):
        super().__init__()
        if guidance_embeds or qk_norm != "rms_norm":
            raise ValueError("the plain-torch HunyuanVideo transformer covers the demo's configuration only "
                             "(guidance_embeds=False, qk_norm='rms_norm')")
        width = num_attention_heads * attention_head_dim
        self.patch = (patch_size_t, patch_size, patch_size)
        self.rope_axes, self.rope_theta, self.out_channels = tuple(rope_axes_dim), rope_theta, out_channels
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv3d(in_channels, width, kernel_size=self.patch, stride=self.patch)
        # The refiner's feed-forward is 4x wide whatever mlp_ratio is (as in diffusers' class).
        self.context_embedder = Refiner(text_embed_dim, width, num_attention_heads, num_refiner_layers, 4.0)
        self.time_text_embed = Conditioning(width, pooled_projection_dim)
        self.transformer_blocks = nn.ModuleList(
            DualStreamBlock(width, num_attention_heads, mlp_ratio) for _ in range(num_layers))
        self.single_transformer_blocks = nn.ModuleList(
            SingleStreamBlock(width, num_attention_heads, mlp_ratio) for _ in range(num_single_layers))
        self.norm_out = Modulation(width, 2)
        self.proj_out = nn.Linear(width, math.prod(self.patch) * out_channels)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor, pooled_projections: torch.Tensor, return_dict: bool = True):
        """The velocity ``(B, out_channels, F, H, W)``; a one-tuple when ``return_dict`` is False, else
        an object with ``.sample``. The text mask must be ones then zeros (padding at the end)."""
        b, _, f, h, w = hidden_states.shape
        pt, ph, pw = self.patch
        grid = (f // pt, h // ph, w // pw)
        rope = rope_tables(*grid, self.rope_axes, self.rope_theta, hidden_states.device)
        condition = self.time_text_embed(timestep, pooled_projections)
        x = self.x_embedder.proj(hidden_states).flatten(2).transpose(1, 2)
        text = self.context_embedder(encoder_hidden_states, timestep, encoder_attention_mask)

        # Every video token, and the prompt's first n tokens: keys past them are masked out.
        real = encoder_attention_mask.sum(dim=1).to(torch.int)
        keys = torch.arange(x.shape[1] + text.shape[1], device=x.device)[None]
        mask = (keys < (x.shape[1] + real)[:, None])[:, None, None]

        for block in (*self.transformer_blocks, *self.single_transformer_blocks):
            x, text = block(x, text, condition, mask, rope)
        scale, shift = self.norm_out(condition)
        x = self.proj_out(modulate(x, shift, scale))
        x = x.reshape(b, *grid, self.out_channels, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        video = x.reshape(b, self.out_channels, f, h, w)
        return (video,) if not return_dict else _Output(video)


class _Output(dict):
    """``.sample``, as diffusers' transformers return it with ``return_dict=True``."""

    def __init__(self, sample: torch.Tensor):
        super().__init__(sample=sample)

    @property
    def sample(self) -> torch.Tensor:
        return self["sample"]
