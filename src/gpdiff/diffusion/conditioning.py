"""How a node's prompts enter the denoiser: the five conditioning strategies of the GPD paper.

Every strategy embeds the spatial and the temporal prompt into one ``d_model`` vector each (the two
*prompt tokens*, ``[B, 2, d]``) and then uses them through some of these hooks, which the denoiser
calls in this order:

- :meth:`Conditioning.prepare`: once, after the input embedding (may precompute a context);
- :meth:`Conditioning.at_input`: on the input token embeddings;
- :meth:`Conditioning.before_block`: before every Transformer block;
- :meth:`Conditioning.modulation`: shift / scale / gate of a block's two layer norms (or ``None``);
- :meth:`Conditioning.mid_block`: inside every block, between self-attention and the MLP.

A new strategy is one subclass (its layers made in :meth:`Conditioning.build`) plus one line in
:data:`CONDITIONING`. For classifier-free guidance
the denoiser replaces the prompt tokens of dropped samples by a learned null embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention, batch first: self-attention, or cross-attention when given a context."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        src = x if context is None else context
        q = self.q(x).view(b, n, self.n_heads, -1).transpose(1, 2)
        k, v = self.kv(src).view(b, src.shape[1], 2, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def _prompt_mlp(dim_in: int, d_model: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, d_model), nn.SiLU(), nn.Linear(d_model, d_model))


@dataclass
class Cond:
    """What the hooks see in one forward pass."""

    prompts: torch.Tensor  # [B, 2, d]: embedded spatial and temporal prompt
    step: torch.Tensor  # [B, d]: embedded diffusion step
    context: torch.Tensor | None = None  # anything a strategy precomputes in ``prepare``


Modulation = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class Conditioning(nn.Module):
    """Base class: embeds the two prompts; every hook is the identity unless overridden."""

    name = ""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, spatial_dim: int, temporal_dim: int,
                 spatial_mask: torch.Tensor) -> None:
        super().__init__()
        self.d_model, self.n_layers, self.n_heads = d_model, n_layers, n_heads
        self.spatial = _prompt_mlp(spatial_dim, d_model)
        self.temporal = _prompt_mlp(temporal_dim, d_model)
        self.null = nn.Parameter(torch.zeros(2, d_model))  # "no prompt", for classifier-free guidance
        self.register_buffer("spatial_mask", spatial_mask.float(), persistent=False)  # [n_tokens]
        self.build()

    def build(self) -> None:
        """Create the strategy's own layers (``d_model``, ``n_layers``, ``n_heads`` are set)."""

    def embed_prompts(self, spatial: torch.Tensor, temporal: torch.Tensor,
                      drop: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, ds]``, ``[B, dt]`` -> prompt tokens ``[B, 2, d]``; rows with ``drop`` get the null embedding."""
        c = torch.stack([self.spatial(spatial), self.temporal(temporal)], dim=1)
        if drop is not None:
            c = torch.where(drop[:, None, None], self.null.to(c.dtype).expand_as(c), c)
        return c

    def prepare(self, h: torch.Tensor, cond: Cond) -> Cond:
        return cond

    def at_input(self, h: torch.Tensor, cond: Cond) -> torch.Tensor:
        return h

    def before_block(self, i: int, h: torch.Tensor, cond: Cond) -> torch.Tensor:
        return h

    def modulation(self, i: int, cond: Cond) -> Modulation | None:
        return None

    def mid_block(self, i: int, h: torch.Tensor, cond: Cond) -> torch.Tensor:
        return h


class PreInductive(Conditioning):
    """Paper default: at the input, the temporal prompt is added to every token and the spatial prompt
    only to the tokens of ``spatial``-role tensors; other tokens see it only through attention."""

    name = "pre_inductive"

    def at_input(self, h: torch.Tensor, cond: Cond) -> torch.Tensor:
        s, t = cond.prompts[:, 0, None, :], cond.prompts[:, 1, None, :]
        return h + t + self.spatial_mask[None, :, None].to(h.dtype) * s


class Pre(Conditioning):
    """The prompt embedding (spatial + temporal, projected per layer) is added to every token before every block."""

    name = "pre"

    def build(self) -> None:
        self.proj = nn.ModuleList(nn.Linear(self.d_model, self.d_model) for _ in range(self.n_layers))

    def before_block(self, i: int, h: torch.Tensor, cond: Cond) -> torch.Tensor:
        return h + self.proj[i](cond.prompts.sum(dim=1))[:, None, :]


class PreAdaptive(Conditioning):
    """Each token (by its input embedding) attends over the two prompt tokens; the resulting per-token
    mix is computed once and added (projected per layer) before every block."""

    name = "pre_adaptive"

    def build(self) -> None:
        self.ln = nn.LayerNorm(self.d_model)
        self.attn = Attention(self.d_model, self.n_heads)
        self.proj = nn.ModuleList(nn.Linear(self.d_model, self.d_model) for _ in range(self.n_layers))

    def prepare(self, h: torch.Tensor, cond: Cond) -> Cond:
        cond.context = self.attn(self.ln(h), cond.prompts)
        return cond

    def before_block(self, i: int, h: torch.Tensor, cond: Cond) -> torch.Tensor:
        assert cond.context is not None
        return h + self.proj[i](cond.context)


class PostAdaptive(Conditioning):
    """A cross-attention sub-layer over the prompt tokens inside every block (after self-attention)."""

    name = "post_adaptive"

    def build(self) -> None:
        self.ln = nn.ModuleList(nn.LayerNorm(self.d_model) for _ in range(self.n_layers))
        self.attn = nn.ModuleList(Attention(self.d_model, self.n_heads) for _ in range(self.n_layers))

    def mid_block(self, i: int, h: torch.Tensor, cond: Cond) -> torch.Tensor:
        return h + self.attn[i](self.ln[i](h), cond.prompts)


class AdaNorm(Conditioning):
    """Adaptive layer norm (adaLN-Zero): prompts + step give shift, scale and gate for both sub-layers of
    every block; the projection is zero-initialised, so every block starts as the identity."""

    name = "adanorm"

    def build(self) -> None:
        self.mod = nn.ModuleList(nn.Linear(self.d_model, 6 * self.d_model) for _ in range(self.n_layers))
        for lin in self.mod:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def modulation(self, i: int, cond: Cond) -> Modulation:
        c = F.silu(cond.prompts.sum(dim=1) + cond.step)
        return tuple(m[:, None, :] for m in self.mod[i](c).chunk(6, dim=-1))  # type: ignore[return-value]


CONDITIONING: dict[str, type[Conditioning]] = {
    "pre_inductive": PreInductive,
    "pre": Pre,
    "pre_adaptive": PreAdaptive,
    "post_adaptive": PostAdaptive,
    "adanorm": AdaNorm,
}
