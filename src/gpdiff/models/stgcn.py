"""STGCN base model, as the GPD paper uses it (``STGCN_NonBias`` of the released code).

One spatio-temporal block and a last temporal block, all bias-free::

    gated temporal conv (F -> C_t) -> graph conv (A_hat, Theta: C_t -> C_s, ReLU)
      -> gated temporal conv (C_s -> C_t) -> gated temporal conv (C_t -> C_t) -> linear (T' * C_t -> horizon)

A gated temporal conv is ``relu(sigmoid(conv_g(x)) * (conv_1(x) + conv_2(x)))`` with kernel ``kt``
over time (GPD's ``TimeBlock``). ``A_hat = D^-1/2 (A + I) D^-1/2`` is the normalised ego adjacency.
The inputs are the target channel(s) plus time-of-day features; the ``paper`` preset (one target
channel + the day fraction, as GPD's two input features) has exactly 16,960 parameters per node.

Only the centre node's forecast is needed, and everything after the graph convolution is per node,
so the batched forward runs the first temporal conv on every ego slot, takes the centre row of the
graph convolution, and runs the rest on the centre node alone. The reference module computes every
slot the ordinary way and reads the centre row at the end.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from gpdiff.data.windows import WindowBatch
from gpdiff.models.base import (
    N_TIME_FEATURES,
    BaseModel,
    NodeModule,
    ParamSpec,
    conv_weight,
    select_channels,
    spec_weight,
    sym_norm_adjacency,
    temporal_conv,
    time_features,
    uniform_,
)
from gpdiff.utils.errors import GpdiffError

BLOCKS = ("tc1", "tc2", "tc3")  # the three gated temporal convolutions, in order


class STGCN(BaseModel):
    name = "stgcn"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"temporal_channels": 16, "spatial_channels": 8, "kernel": 4, "time": "cyclic"},
        "paper": {"temporal_channels": 32, "spatial_channels": 8, "kernel": 4, "time": "linear"},
    }
    needs_graph = True
    output_params = ("fc",)  # the read-out, zero-initialised for residual: seasonal

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.ct, self.cs = int(self.size["temporal_channels"]), int(self.size["spatial_channels"])
        self.kt, self.time = int(self.size["kernel"]), str(self.size["time"])
        self.features = self.n_inputs + N_TIME_FEATURES[self.time]
        self.t_out = config.history - 3 * (self.kt - 1)  # time steps left after three temporal convs
        if self.t_out < 1:
            raise GpdiffError(
                f"stgcn ({config.preset}) needs a history of at least {3 * (self.kt - 1) + 1} steps "
                f"(three temporal convolutions of kernel {self.kt}); got history={config.history}."
            )

    def _block_shapes(self) -> dict[str, tuple[int, int]]:
        return {"tc1": (self.features, self.ct), "tc2": (self.cs, self.ct), "tc3": (self.ct, self.ct)}

    def _spec(self) -> list[ParamSpec]:
        out: list[ParamSpec] = []
        for block, (c_in, c_out) in self._block_shapes().items():
            out += [ParamSpec(f"{block}.{w}", (c_in, self.kt, c_out), "temporal") for w in ("conv1", "conv2", "gate")]
            if block == "tc1":
                out.append(ParamSpec("theta", (self.ct, self.cs), "spatial"))
        out.append(ParamSpec("fc", (self.t_out * self.ct, self.config.horizon), "temporal"))
        return out

    def init_one(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """torch's default conv init, ``U(+-1/sqrt(C_s))`` for Theta, Xavier-uniform for the output (as GPD)."""
        out = {}
        for s in self._spec():
            if s.name == "theta":
                out[s.name] = uniform_(s.shape, 1 / math.sqrt(self.cs), generator)
            elif s.name == "fc":
                out[s.name] = uniform_(s.shape, math.sqrt(6 / sum(s.shape)), generator)
            else:
                out[s.name] = uniform_(s.shape, 1 / math.sqrt(s.shape[0] * s.shape[1]), generator)
        return out

    def inputs(self, batch: WindowBatch) -> torch.Tensor:
        """``[n, B, K+1, T, F]``: the target channel(s) and the time-of-day features of the window."""
        x = self.model_inputs(batch)
        tf = time_features(batch.tod, self.time)  # [n, B, F_t]
        return torch.cat([x, tf[:, :, None, None, :].expand(*x.shape[:-1], tf.shape[-1])], dim=-1)

    def _forward(self, params: dict[str, torch.Tensor], batch: WindowBatch) -> torch.Tensor:
        x = self.inputs(batch).transpose(1, 2)  # [n, S, B, T, F]: slot-major, so the graph conv is a bmm
        n, s, b, t, f = x.shape
        h = _gate(temporal_conv(x.reshape(n, s * b, t, f), _glu_weight(params, "tc1")))  # [n, S*B, T1, C_t]
        t1 = h.shape[2]
        a_centre = sym_norm_adjacency(batch.adj, batch.valid)[:, :1, :]  # [n, 1, S]
        h = torch.bmm(a_centre, h.reshape(n, s, b * t1 * self.ct))  # centre row of A_hat @ h
        h = F.relu(torch.bmm(h.view(n, b * t1, self.ct), params["theta"]))  # [n, B*T1, C_s]
        h = _gate(temporal_conv(h.view(n, b, t1, self.cs), _glu_weight(params, "tc2")))
        h = _gate(temporal_conv(h, _glu_weight(params, "tc3")))  # [n, B, T3, C_t]
        return torch.bmm(h.reshape(n, b, -1), params["fc"])  # [n, B, horizon]


def _glu_weight(params: dict[str, torch.Tensor], block: str) -> torch.Tensor:
    """``[n, C_in, kt, 2*C_out]``: the two linear convolutions summed (same function, one matmul),
    then the gate."""
    return torch.cat([params[f"{block}.conv1"] + params[f"{block}.conv2"], params[f"{block}.gate"]], dim=-1)


def _gate(h: torch.Tensor) -> torch.Tensor:
    """GPD's gated activation ``relu(sigmoid(g) * a)`` of ``[..., 2*C]`` = ``[a, g]``."""
    lin, gate = h.chunk(2, dim=-1)
    return F.relu(torch.sigmoid(gate) * lin)


# ------------------------------------------------------------------ reference module
class TimeBlock(nn.Module):
    """GPD's ``TimeBlock_NonBias`` on ``[B, N, T, C]``."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, (1, kernel), bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out, (1, kernel), bias=False)
        self.gate = nn.Conv2d(c_in, c_out, (1, kernel), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # NCHW
        out = F.relu(torch.sigmoid(self.gate(x)) * (self.conv1(x) + self.conv2(x)))
        return out.permute(0, 2, 3, 1)


class STGCNNet(NodeModule):
    """STGCN for one node's ego-graph, written the ordinary way (every slot through every layer)."""

    model: STGCN

    def __init__(self, model: STGCN) -> None:
        super().__init__(model)
        self.tc1 = TimeBlock(model.features, model.ct, model.kt)
        self.theta = nn.Parameter(torch.zeros(model.ct, model.cs))
        self.tc2 = TimeBlock(model.cs, model.ct, model.kt)
        self.tc3 = TimeBlock(model.ct, model.ct, model.kt)
        self.fc = nn.Linear(model.t_out * model.ct, model.config.horizon, bias=False)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, valid: torch.Tensor, tod: torch.Tensor,
                dow: torch.Tensor) -> torch.Tensor:
        x = select_channels(x, self.model.n_inputs)  # [B, S, T, C]
        tf = time_features(tod, self.model.time)[:, None, None, :].expand(*x.shape[:-1], -1)
        x = torch.cat([x, tf], dim=-1)
        a_hat = sym_norm_adjacency(adj, valid)
        h = self.tc1(x)
        h = torch.einsum("ij,bjtc->bitc", a_hat, h)
        h = F.relu(h @ self.theta)
        h = self.tc3(self.tc2(h))
        out = self.fc(h.reshape(h.shape[0], h.shape[1], -1))  # [B, S, horizon]
        return out[:, 0]

    def load_node_params(self, params: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for block in BLOCKS:
                for w in ("conv1", "conv2", "gate"):
                    getattr(getattr(self, block), w).weight.copy_(conv_weight(params[f"{block}.{w}"]))
            self.theta.copy_(params["theta"])
            self.fc.weight.copy_(params["fc"].t())

    def node_params(self) -> dict[str, torch.Tensor]:
        out = {}
        for block in BLOCKS:
            for w in ("conv1", "conv2", "gate"):
                out[f"{block}.{w}"] = spec_weight(getattr(getattr(self, block), w))
        out["theta"] = self.theta.detach().clone()
        out["fc"] = self.fc.weight.detach().t().contiguous()
        return self.with_context(out)


STGCN.module_class = STGCNNet
