"""STID base model (Shao et al. 2022): an MLP on the flattened history with time embeddings.

The hidden vector concatenates four ``d``-dimensional embeddings:

- the centre node's history (``history * C`` values, a linear layer),
- a *spatial* embedding: a linear layer over the mean of the neighbours' histories (weighted by the
  ego-graph's transition row; all zero without neighbours). STID's learned per-node embedding is
  meaningless for a model that sees one node, so the neighbourhood's series takes its place,
- time of day: sin/cos of ``harmonics`` daily frequencies, a linear layer (bias-free),
- day of week: a 7-row table,

followed by ``layers`` residual MLP blocks ``h + fc2(relu(fc1(h)))`` and a linear read-out.
It needs no graph: without edges the spatial embedding is the bias of its layer.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from gpdiff.data.windows import WindowBatch
from gpdiff.models.base import BaseModel, NodeModule, ParamSpec, row_normalize, select_channels, uniform_


def _fourier(tod: torch.Tensor, harmonics: int) -> torch.Tensor:
    """``[..., 2 * harmonics]``: sin and cos of ``2 pi k tod`` for k = 1..harmonics."""
    k = torch.arange(1, harmonics + 1, device=tod.device, dtype=tod.dtype)
    angle = 2 * math.pi * tod.unsqueeze(-1) * k
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class STID(BaseModel):
    name = "stid"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"embed": 8, "layers": 2, "harmonics": 4},
        "paper": {"embed": 32, "layers": 3, "harmonics": 8},
    }
    needs_graph = False
    output_params = ("out.w", "out.b")  # the read-out, zero-initialised for residual: seasonal

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.dim = int(self.size["embed"])
        self.hidden = 4 * self.dim
        self.n_layers, self.harmonics = int(self.size["layers"]), int(self.size["harmonics"])
        self.flat = config.history * self.n_inputs

    def _spec(self) -> list[ParamSpec]:
        d, hid = self.dim, self.hidden
        out = [ParamSpec("series.w", (self.flat, d), "temporal"), ParamSpec("series.b", (d,), "temporal"),
               ParamSpec("spatial.w", (self.flat, d), "spatial"), ParamSpec("spatial.b", (d,), "spatial"),
               ParamSpec("tod.w", (2 * self.harmonics, d), "temporal"), ParamSpec("dow.w", (7, d), "temporal")]
        for i in range(self.n_layers):
            out += [ParamSpec(f"mlp{i}.fc1.w", (hid, hid), "temporal"), ParamSpec(f"mlp{i}.fc1.b", (hid,), "temporal"),
                    ParamSpec(f"mlp{i}.fc2.w", (hid, hid), "temporal"), ParamSpec(f"mlp{i}.fc2.b", (hid,), "temporal")]
        out += [ParamSpec("out.w", (hid, self.config.horizon), "temporal"),
                ParamSpec("out.b", (self.config.horizon,), "temporal")]
        return out

    def init_one(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """torch's default linear init (``U(+-1/sqrt(fan_in))`` for weights and biases); the
        day-of-week table Xavier-uniform (as STID)."""
        out: dict[str, torch.Tensor] = {}
        for s in self._spec():
            if s.name == "dow.w":
                out[s.name] = uniform_(s.shape, math.sqrt(6 / sum(s.shape)), generator)
            else:
                fan_in = s.shape[0] if s.name.endswith(".w") else out[s.name[:-1] + "w"].shape[0]
                out[s.name] = uniform_(s.shape, 1 / math.sqrt(fan_in), generator)
        return out

    def _forward(self, params: dict[str, torch.Tensor], batch: WindowBatch) -> torch.Tensor:
        x = self.model_inputs(batch)  # [n, B, S, T, C]
        n, b, s = x.shape[:3]
        weights = row_normalize(batch.adj)[:, :1, :]  # [n, 1, S]: the centre's neighbour weights
        neigh = torch.bmm(weights, x.transpose(1, 2).reshape(n, s, b * self.flat)).view(n, b, self.flat)
        series = torch.baddbmm(params["series.b"].unsqueeze(1), x[:, :, 0].reshape(n, b, self.flat),
                               params["series.w"])
        spatial = torch.baddbmm(params["spatial.b"].unsqueeze(1), neigh, params["spatial.w"])
        tod = torch.bmm(_fourier(batch.tod, self.harmonics), params["tod.w"])
        dow = torch.bmm(F.one_hot(batch.dow, 7).to(x.dtype), params["dow.w"])
        h = torch.cat([series, spatial, tod, dow], dim=-1)  # [n, B, 4d]
        for i in range(self.n_layers):
            u = F.relu(torch.baddbmm(params[f"mlp{i}.fc1.b"].unsqueeze(1), h, params[f"mlp{i}.fc1.w"]))
            h = h + torch.baddbmm(params[f"mlp{i}.fc2.b"].unsqueeze(1), u, params[f"mlp{i}.fc2.w"])
        return torch.baddbmm(params["out.b"].unsqueeze(1), h, params["out.w"])


# ------------------------------------------------------------------ reference module
class STIDNet(NodeModule):
    """STID for one node, with ``nn.Linear`` / ``nn.Embedding`` layers."""

    model: STID

    def __init__(self, model: STID) -> None:
        super().__init__(model)
        d, hid = model.dim, model.hidden
        self.series = nn.Linear(model.flat, d)
        self.spatial = nn.Linear(model.flat, d)
        self.tod = nn.Linear(2 * model.harmonics, d, bias=False)
        self.dow = nn.Embedding(7, d)
        self.fc1 = nn.ModuleList([nn.Linear(hid, hid) for _ in range(model.n_layers)])
        self.fc2 = nn.ModuleList([nn.Linear(hid, hid) for _ in range(model.n_layers)])
        self.out = nn.Linear(hid, model.config.horizon)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, valid: torch.Tensor, tod: torch.Tensor,
                dow: torch.Tensor) -> torch.Tensor:
        x = select_channels(x, self.model.n_inputs)  # [B, S, T, C]
        flat = x.reshape(x.shape[0], x.shape[1], -1)  # [B, S, T*C]
        neigh = torch.einsum("s,bsf->bf", row_normalize(adj)[0], flat)
        h = torch.cat([self.series(flat[:, 0]), self.spatial(neigh), self.tod(_fourier(tod, self.model.harmonics)),
                       self.dow(dow)], dim=-1)
        for fc1, fc2 in zip(self.fc1, self.fc2):
            h = h + fc2(F.relu(fc1(h)))
        return self.out(h)

    def load_node_params(self, params: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, layer in self._linears().items():
                layer.weight.copy_(params[f"{name}.w"].t())
                if layer.bias is not None:
                    layer.bias.copy_(params[f"{name}.b"])
            self.dow.weight.copy_(params["dow.w"])

    def node_params(self) -> dict[str, torch.Tensor]:
        out = {"dow.w": self.dow.weight.detach().clone()}
        for name, layer in self._linears().items():
            out[f"{name}.w"] = layer.weight.detach().t().contiguous()
            if layer.bias is not None:
                out[f"{name}.b"] = layer.bias.detach().clone()
        return self.with_context(out)

    def _linears(self) -> dict[str, nn.Linear]:
        out = {"series": self.series, "spatial": self.spatial, "tod": self.tod, "out": self.out}
        for i in range(self.model.n_layers):
            out[f"mlp{i}.fc1"], out[f"mlp{i}.fc2"] = self.fc1[i], self.fc2[i]
        return out


STID.module_class = STIDNet
