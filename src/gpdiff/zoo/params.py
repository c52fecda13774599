"""Parameter collections: flatten / unflatten, tokenise, standardise, save and load.

A *collection* is a set of trained (or generated) parameter vectors of one base model: one row per
node, in the order of the model's parameter spec. Everything downstream of the zoo (prompts
diagnostics, diffusion, adaptation, baselines) reads and writes this one format.

Tokens are contiguous chunks of one tensor: each tensor is flattened, zero-padded to a multiple of
``token_dim`` and cut, so a token never straddles two tensors and the tokens of the ``spatial``
tensors are a known set. Standardisation is per tensor (one mean and std over all nodes and
entries of that tensor), so small and large tensors weigh the same in the diffusion loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpdiff.models.base import ParamSpec
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors, save_tensors
from gpdiff.zoo.noderows import NodeRows


def flatten(params: dict[str, torch.Tensor], spec: list[ParamSpec]) -> torch.Tensor:
    """``{name: [n, *shape]}`` -> ``[n, P]`` in spec order."""
    missing = [s.name for s in spec if s.name not in params]
    if missing:
        raise GpdiffError(f"parameters {missing} are missing; the parameters do not match the model spec.")
    n = next(iter(params.values())).shape[0]
    return torch.cat([params[s.name].reshape(n, s.numel) for s in spec], dim=1)


def unflatten(flat: torch.Tensor, spec: list[ParamSpec]) -> dict[str, torch.Tensor]:
    """``[n, P]`` -> ``{name: [n, *shape]}`` (views into ``flat``)."""
    total = sum(s.numel for s in spec)
    if flat.dim() != 2 or flat.shape[1] != total:
        raise GpdiffError(
            f"parameter matrix has shape {tuple(flat.shape)} but the model spec needs [n, {total}]; "
            "were these parameters made for another base model or preset?"
        )
    out, i = {}, 0
    for s in spec:
        out[s.name] = flat[:, i : i + s.numel].reshape(flat.shape[0], *s.shape)
        i += s.numel
    return out


def spec_to_json(spec: list[ParamSpec]) -> list[list[Any]]:
    return [[s.name, list(s.shape), s.role] for s in spec]


def spec_from_json(data: list[list[Any]]) -> list[ParamSpec]:
    return [ParamSpec(name, tuple(int(d) for d in shape), role) for name, shape, role in data]


# --------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class TokenInfo:
    tensor: int  # index into the spec
    name: str
    role: str
    start: int  # first flat index (within the tensor) covered by this token


class Tokenizer:
    """Flat vectors ``[n, P]`` <-> tokens ``[n, n_tokens, token_dim]``, tensor-aligned."""

    def __init__(self, spec: list[ParamSpec], token_dim: int) -> None:
        if token_dim < 1:
            raise GpdiffError(f"token_dim must be >= 1, got {token_dim}.")
        self.spec, self.token_dim = list(spec), int(token_dim)
        tokens: list[TokenInfo] = []
        src: list[torch.Tensor] = []  # flat index of every token slot, -1 for padding
        offset = 0
        for ti, s in enumerate(self.spec):
            n_tok = -(-s.numel // token_dim)
            idx = torch.full((n_tok * token_dim,), -1, dtype=torch.long)
            idx[: s.numel] = torch.arange(offset, offset + s.numel)
            src.append(idx)
            tokens += [TokenInfo(ti, s.name, s.role, j * token_dim) for j in range(n_tok)]
            offset += s.numel
        self.tokens = tokens
        self.n_params = offset
        self._src = torch.cat(src)
        self._real = self._src >= 0

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def spatial_mask(self) -> torch.Tensor:
        """``[n_tokens]`` bool: tokens of ``spatial``-role tensors."""
        return torch.tensor([t.role == "spatial" for t in self.tokens], dtype=torch.bool)

    def tensor_index(self) -> torch.Tensor:
        """``[n_tokens]`` long: which spec tensor each token belongs to."""
        return torch.tensor([t.tensor for t in self.tokens], dtype=torch.long)

    def encode(self, flat: torch.Tensor) -> torch.Tensor:
        if flat.shape[-1] != self.n_params:
            raise GpdiffError(f"vectors of length {flat.shape[-1]} do not match the tokenizer's {self.n_params}.")
        out = flat.new_zeros(flat.shape[0], self._src.numel())
        out[:, self._real] = flat[:, self._src[self._real].to(flat.device)]
        return out.reshape(flat.shape[0], self.n_tokens, self.token_dim)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[0]
        slots = tokens.reshape(n, -1)
        out = tokens.new_empty(n, self.n_params)
        out[:, self._src[self._real].to(tokens.device)] = slots[:, self._real.to(tokens.device)]
        return out


# ---------------------------------------------------------------- standardisation
@dataclass
class Standardizer:
    """Location and scale of every coordinate ``[P]``, fitted per tensor or per coordinate;
    ``inverse_transform(transform(x)) == x`` up to float rounding.

    ``per="tensor"``: one location and scale for all nodes and entries of a tensor, so small and
    large tensors weigh the same in the diffusion loss. ``per="coordinate"``: each coordinate its
    own, over the nodes, with the scale floored at ``COORD_FLOOR`` times its tensor's scale (a
    coordinate that barely varies is not blown up). ``center=False`` keeps the location at 0 and
    the scale is the root mean square, so a zero vector maps to zero (residual generation: a zero
    sample is the reference point).
    """

    mean: torch.Tensor  # [P]
    std: torch.Tensor  # [P]

    MIN_STD = 1e-6
    COORD_FLOOR = 0.1
    PER = ("tensor", "coordinate")

    @classmethod
    def fit(cls, flat: torch.Tensor, spec: list[ParamSpec], per: str = "tensor", center: bool = True) -> Standardizer:
        """Fit on rows ``flat [n, P]`` in ``spec`` order; :class:`GpdiffError` for an unknown ``per``."""
        if per not in cls.PER:
            raise GpdiffError(f"unknown standardisation {per!r}; choose one of {', '.join(cls.PER)}.")
        x = flat.double()
        mean, std = torch.zeros(x.shape[1], dtype=torch.float64), torch.ones(x.shape[1], dtype=torch.float64)
        i = 0
        for s in spec:
            block = x[:, i : i + s.numel]
            loc = (block.mean() if per == "tensor" else block.mean(0)) if center else torch.zeros(())
            dev = block - loc
            tensor_scale = dev.square().mean().sqrt().clamp_min(cls.MIN_STD)
            if per == "tensor":
                scale = tensor_scale.expand(s.numel)
            else:
                scale = dev.square().mean(0).sqrt().clamp_min(float(tensor_scale) * cls.COORD_FLOOR)
            mean[i : i + s.numel], std[i : i + s.numel] = loc, scale
            i += s.numel
        return cls(mean.float(), std.float())

    def transform(self, flat: torch.Tensor) -> torch.Tensor:
        return (flat - self.mean.to(flat.device)) / self.std.to(flat.device)

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.to(z.device) + self.mean.to(z.device)

    def state(self) -> dict[str, torch.Tensor]:
        return {"std_mean": self.mean, "std_std": self.std}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Standardizer:
        mean, std = state["std_mean"].float(), state["std_std"].float()
        if "std_sizes" in state:  # an earlier format: one value per tensor
            sizes = state["std_sizes"].long()
            mean, std = torch.repeat_interleave(mean, sizes), torch.repeat_interleave(std, sizes)
        return cls(mean, std)


# --------------------------------------------------------------------- collections
@dataclass
class ParamCollection(NodeRows):
    """Parameter vectors of one base model for a set of nodes, keyed by (city, node id)."""

    params: torch.Tensor  # [n, P] float32
    node_ids: list[str]
    cities: list[str]
    model: str
    model_config: dict[str, Any]
    spec: list[ParamSpec]
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [n]
    config: dict[str, Any] = field(default_factory=dict)
    anchor: torch.Tensor | None = None  # [P] the shared point every row was fine-tuned from (anchored zoo)
    members: torch.Tensor | None = None  # [n, M - 1, P] further members per row (zoo.members > 1); see all_members

    def __post_init__(self) -> None:
        n, p = self.params.shape
        if self.anchor is not None and self.anchor.shape != (p,):
            raise GpdiffError(f"anchor of shape {tuple(self.anchor.shape)} for parameter rows of width {p}.")
        if self.members is not None and (self.members.dim() != 3 or self.members.shape[0] != n
                                         or self.members.shape[2] != p):
            raise GpdiffError(f"members of shape {tuple(self.members.shape)} for {n} parameter rows of width {p}; "
                              f"expected [{n}, M - 1, {p}].")
        if p != sum(s.numel for s in self.spec):
            raise GpdiffError(f"parameter width {p} does not match the spec ({sum(s.numel for s in self.spec)}).")
        if len(self.node_ids) != n or len(self.cities) != n:
            raise GpdiffError(f"{n} parameter rows but {len(self.node_ids)} node ids and {len(self.cities)} cities.")
        for k, v in self.metrics.items():
            if v.shape != (n,):
                raise GpdiffError(f"metric {k!r} has shape {tuple(v.shape)}, expected ({n},).")

    def __len__(self) -> int:
        return int(self.params.shape[0])

    @property
    def n_members(self) -> int:
        """Parameter vectors per row: 1, or ``zoo.members`` for a zoo trained with several."""
        return 1 if self.members is None else 1 + int(self.members.shape[1])

    def all_members(self) -> ParamCollection:
        """Every member as its own row (``[n * M, P]``, member-major: the ``params`` rows first, then
        member 1 of every row, ...), keys repeated, no metrics; ``self`` when there is one member.

        What the denoiser trains on (:func:`gpdiff.diffusion.train.pretrain`): several fine-tuned
        copies of each node from perturbed starts give it a distribution per prompt (FNFM,
        tsinghua-fib-lab/FNFM). Everything else reads ``params``, member 0.
        """
        if self.members is None:
            return self
        m = self.n_members
        rows = torch.cat([self.params.unsqueeze(1), self.members], 1).transpose(0, 1).reshape(-1, self.params.shape[1])
        return ParamCollection(rows, self.node_ids * m, self.cities * m, self.model, dict(self.model_config),
                               list(self.spec), {}, dict(self.config), self.anchor)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return unflatten(self.params, self.spec)

    def noun(self) -> str:
        return f"{self.model} parameters"

    def _take(self, index: torch.Tensor) -> ParamCollection:
        il = index.tolist()
        return ParamCollection(self.params[index], [self.node_ids[i] for i in il], [self.cities[i] for i in il],
                               self.model, dict(self.model_config), list(self.spec),
                               {k: v[index] for k, v in self.metrics.items()}, dict(self.config), self.anchor,
                               None if self.members is None else self.members[index])

    def deltas(self) -> torch.Tensor:
        """Every row's difference from the anchor ``[n, P]``; :class:`GpdiffError` without an anchor."""
        if self.anchor is None:
            raise GpdiffError("this collection has no anchor (its zoo was not trained with zoo.init: anchor).")
        return self.params - self.anchor

    def save(self, path: str | os.PathLike[str]) -> Path:
        tensors = {"params": self.params.float(), **{f"metric.{k}": v for k, v in self.metrics.items()}}
        if self.anchor is not None:
            tensors["anchor"] = self.anchor.float()
        if self.members is not None:
            tensors["members"] = self.members.float()
        meta = {"format": "gpdiff.params", "node_ids": self.node_ids, "cities": self.cities, "model": self.model,
                "model_config": self.model_config, "spec": spec_to_json(self.spec), "config": self.config}
        return save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ParamCollection:
        path = Path(path)
        if path.is_dir():
            candidates = sorted(path.glob("*.safetensors"))
            named = [p for p in candidates if p.name in ("zoo.safetensors", "generated.safetensors", "params.safetensors")]
            if not (named or len(candidates) == 1):
                raise GpdiffError(f"{path} holds no single parameter collection; pass the .safetensors file itself.")
            path = (named or candidates)[0]
        tensors, meta = load_tensors(path)
        if meta.get("format") != "gpdiff.params":
            raise GpdiffError(f"{path} is not a gpdiff parameter collection (made by `gpdiff zoo train` or "
                              "`gpdiff generate`).")
        metrics = {k[len("metric."):]: v for k, v in tensors.items() if k.startswith("metric.")}
        return cls(tensors["params"].float(), list(meta["node_ids"]), list(meta["cities"]), meta["model"],
                   dict(meta["model_config"]), spec_from_json(meta["spec"]), metrics, dict(meta.get("config", {})),
                   tensors.get("anchor"), tensors.get("members"))
