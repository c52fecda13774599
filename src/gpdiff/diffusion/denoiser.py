"""The Transformer denoiser over the token sequence of a standardised parameter vector.

``tokens [B, n_tokens, token_dim]``, diffusion step ``t [B]``, spatial prompt ``[B, ds]`` and
temporal prompt ``[B, dt]`` -> a prediction of the same shape as ``tokens`` (noise, velocity or
clean sample, depending on the schedule's prediction type). :class:`DenoiserConfig` holds the
user's settings (width, depth, conditioning, tokenisation limits), :class:`TokenShape` the sizes
that follow from the data (``n_tokens``, ``token_dim``, prompt widths ``ds``, ``dt``).

Token embedding (a linear map per token position by default: tokens of different tensors hold
unrelated numbers), learned position embedding, sinusoidal step embedding + MLP added to every
token, ``n_layers`` pre-LN blocks (attention over tokens, batch first), final LayerNorm and a
per-position linear head back to ``token_dim``, plus a step-dependent gain times the input tokens
(the part of the v / epsilon target that is linear in the noisy input). The prompts enter as the
chosen conditioning strategy decides (:mod:`gpdiff.diffusion.conditioning`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gpdiff.diffusion.conditioning import (
    CONDITIONING,
    Attention,
    Cond,
    Conditioning,
    Modulation,
)
from gpdiff.models.base import ParamSpec
from gpdiff.utils.config import require_at_least_one, require_range
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.zoo.params import Tokenizer

TOKEN_DIMS = (16, 32, 64, 128, 256, 512, 1024)  # the automatic token widths, smallest first


@dataclass(frozen=True)
class DenoiserConfig:
    """The denoiser's settings (the ``small`` preset's sizes by default)."""

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    condition: str = "pre_inductive"  # a name in CONDITIONING
    per_token: bool = True  # a separate input / output projection for every token position (False: shared)
    token_dim: int = 0  # parameters per token; 0: the smallest of TOKEN_DIMS giving at most ``max_tokens``
    max_tokens: int = 64

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONING:
            raise unknown_name("conditioning strategy", self.condition, CONDITIONING)
        require_at_least_one(self, ("d_model", "n_heads", "max_tokens", "n_layers"))
        require_range(self, ("mlp_ratio",), "diffusion.denoiser.", above=0)
        require_range(self, ("dropout",), "diffusion.denoiser.", at_least=0, below=1)
        if self.token_dim < 0:
            raise GpdiffError(f"token_dim must be 0 (automatic) or positive, got {self.token_dim}.")
        if self.d_model % self.n_heads:
            raise GpdiffError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}).")
        if self.d_model % 2:
            raise GpdiffError(f"d_model must be even (sinusoidal step embedding), got {self.d_model}.")

    def resolve_token_dim(self, spec: list[ParamSpec]) -> int:
        """``token_dim`` if set, else the smallest of :data:`TOKEN_DIMS` that cuts ``spec`` into at most
        ``max_tokens`` tokens (the largest when none does)."""
        if self.token_dim > 0:
            return self.token_dim
        for d in TOKEN_DIMS:
            if Tokenizer(spec, d).n_tokens <= self.max_tokens:
                return d
        return TOKEN_DIMS[-1]


@dataclass(frozen=True)
class TokenShape:
    """The sizes a denoiser takes from its data: ``n_tokens`` tokens of ``token_dim`` parameters each
    (:class:`~gpdiff.zoo.params.Tokenizer`) and the widths of the spatial and temporal prompts."""

    n_tokens: int
    token_dim: int
    spatial_dim: int
    temporal_dim: int

    def __post_init__(self) -> None:
        require_at_least_one(self, ("n_tokens", "token_dim", "spatial_dim", "temporal_dim"))


def step_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer steps ``[B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MLP(nn.Module):
    def __init__(self, d_model: int, ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(d_model * ratio)
        self.fc = nn.Linear(d_model, hidden)
        self.proj = nn.Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class TokenLinear(nn.Module):
    """Linear map applied to ``[B, T, d_in]``: one weight for all positions, or one per position."""

    def __init__(self, n_tokens: int, d_in: int, d_out: int, per_token: bool) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        shape = (n_tokens, d_in, d_out) if per_token else (d_in, d_out)
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(*shape[:-2], d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dim() == 2:
            return x @ self.weight + self.bias
        return torch.einsum("btk,tkd->btd", x, self.weight) + self.bias


class Block(nn.Module):
    """Pre-LN Transformer block; optional adaptive-norm modulation and a hook between the sub-layers."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, mod: Modulation | None,
                mid: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if mod is None:
            x = x + self.attn(self.ln1(x))
            x = mid(x)
            return x + self.mlp(self.ln2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        x = x + gate1 * self.attn(self.ln1(x) * (1 + scale1) + shift1)
        x = mid(x)
        return x + gate2 * self.mlp(self.ln2(x) * (1 + scale2) + shift2)


class Denoiser(nn.Module):
    """Transformer denoiser; ``spatial_mask`` ``[n_tokens]`` marks the tokens of spatial-role tensors.

    ``config.token_dim`` is not read: ``shape.token_dim`` is the width actually used.
    """

    def __init__(self, config: DenoiserConfig, shape: TokenShape, spatial_mask: torch.Tensor) -> None:
        super().__init__()
        c = config
        if spatial_mask.shape != (shape.n_tokens,):
            raise ValueError(f"spatial_mask has shape {tuple(spatial_mask.shape)}, expected ({shape.n_tokens},)")
        self.config, self.shape = c, shape
        self.tok_emb = TokenLinear(shape.n_tokens, shape.token_dim, c.d_model, c.per_token)
        self.pos_emb = nn.Parameter(torch.randn(shape.n_tokens, c.d_model) * 0.02)
        self.step_mlp = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.SiLU(), nn.Linear(c.d_model, c.d_model))
        self.cond: Conditioning = CONDITIONING[c.condition](c.d_model, c.n_layers, c.n_heads, shape.spatial_dim,
                                                            shape.temporal_dim, spatial_mask)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = TokenLinear(shape.n_tokens, c.d_model, shape.token_dim, c.per_token)
        # step-dependent gain on the input tokens added to the output: the linear-in-x_t part of the
        # v / epsilon targets, which a LayerNorm-ed residual stream passes on only approximately
        self.skip = nn.Linear(c.d_model, 1)
        nn.init.zeros_(self.skip.weight)
        nn.init.zeros_(self.skip.bias)

    def embed(self, tokens: torch.Tensor, t: torch.Tensor, spatial: torch.Tensor, temporal: torch.Tensor,
              drop: torch.Tensor | None = None) -> tuple[torch.Tensor, Cond]:
        """Input embedding after the strategy's input hook, and the per-pass conditioning."""
        step = self.step_mlp(step_embedding(t, self.config.d_model))
        h = self.tok_emb(tokens) + self.pos_emb[None] + step[:, None, :]
        cond = self.cond.prepare(h, Cond(self.cond.embed_prompts(spatial, temporal, drop), step))
        return self.cond.at_input(h, cond), cond

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, spatial: torch.Tensor, temporal: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """``drop`` ``[B]`` bool: replace these rows' prompts by the learned null prompt (guidance)."""
        h, cond = self.embed(tokens, t, spatial, temporal, drop)
        for i, block in enumerate(self.blocks):
            h = self.cond.before_block(i, h, cond)
            h = block(h, self.cond.modulation(i, cond), lambda x, i=i: self.cond.mid_block(i, x, cond))
        return self.head(self.ln_f(h)) + self.skip(cond.step)[:, :, None] * tokens

    def n_weights(self) -> int:
        return sum(p.numel() for p in self.parameters())
