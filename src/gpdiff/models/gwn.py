"""Graph WaveNet base model (Wu et al. 2019), in GPD's bias-free ``v_GWN`` form.

A 1x1 start convolution, then ``blocks * layers`` WaveNet layers: a dilated gated temporal
convolution ``tanh(filter(x)) * sigmoid(gate(x))``, a 1x1 skip convolution of its output, and a
diffusion graph convolution of it (orders 1..``order`` of the forward and backward transition
matrices of the ego-graph and of an adaptive adjacency) plus the residual, then a layer norm. The
forecast reads the summed skips at the last step: ``end2(relu(end1(relu(skip))))``.

Differences from GPD's ``v_GWN`` (DESIGN.md section 4): no BatchNorm running statistics (a
LayerNorm over channels instead), no residual 1x1 convolutions (the released model has them but
never uses them with a graph), and no graph convolution / norm in the last layer (its output is
never read). The adaptive adjacency is learned per node over the ego-graph slots
(``softmax(relu(E1 E2))``, padded slots masked). The ``paper`` preset has 93,024 parameters
per node (GPD: 91,904, of which 8,192 were the unused residual convolutions).

The input is cropped (or left-padded with zeros) to the receptive field, so the last layer has one
output step. Everything is per node except the graph convolutions, so the batched forward runs all
ego slots up to the second-to-last layer, whose graph convolution is evaluated for the centre row
only; the last layer and the skips run on the centre node's last step only.
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
    row_normalize,
    select_channels,
    spec_weight,
    temporal_conv,
    time_features,
    uniform_,
)


class GWN(BaseModel):
    name = "gwn"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"residual": 8, "dilation": 8, "skip": 16, "end": 16, "kernel": 2, "blocks": 4, "layers": 2,
                  "order": 2, "adaptive_dim": 4, "time": "cyclic"},
        "paper": {"residual": 32, "dilation": 32, "skip": 32, "end": 32, "kernel": 2, "blocks": 4, "layers": 2,
                  "order": 2, "adaptive_dim": 10, "time": "linear"},
    }
    needs_graph = True
    output_params = ("end2",)  # the read-out, zero-initialised for residual: seasonal
    n_supports = 3  # forward and backward transition matrices, adaptive adjacency

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        z = self.size
        self.r, self.d, self.sk, self.e = int(z["residual"]), int(z["dilation"]), int(z["skip"]), int(z["end"])
        self.kt, self.order, self.time = int(z["kernel"]), int(z["order"]), str(z["time"])
        self.dilations = [2**i for _ in range(int(z["blocks"])) for i in range(int(z["layers"]))]
        self.receptive_field = 1 + (self.kt - 1) * sum(self.dilations)
        self.features = self.n_inputs + N_TIME_FEATURES[self.time]
        self.slots = config.ego_size

    @property
    def n_layers(self) -> int:
        return len(self.dilations)

    def _spec(self) -> list[ParamSpec]:
        out = [ParamSpec("start", (self.features, self.r), "temporal")]
        hops = self.order * self.n_supports + 1
        for i in range(self.n_layers):
            out += [ParamSpec(f"l{i}.filter", (self.r, self.kt, self.d), "temporal"),
                    ParamSpec(f"l{i}.gate", (self.r, self.kt, self.d), "temporal"),
                    ParamSpec(f"l{i}.skip", (self.d, self.sk), "temporal")]
            if i < self.n_layers - 1:  # the last layer's graph conv output is never read
                out += [ParamSpec(f"l{i}.gconv", (hops * self.d, self.r), "spatial"),
                        ParamSpec(f"l{i}.norm_w", (self.r,), "temporal"),
                        ParamSpec(f"l{i}.norm_b", (self.r,), "temporal")]
        adim = int(self.size["adaptive_dim"])
        out += [ParamSpec("adaptive.source", (self.slots, adim), "spatial"),
                ParamSpec("adaptive.target", (adim, self.slots), "spatial"),
                ParamSpec("end1", (self.sk, self.e), "temporal"),
                ParamSpec("end2", (self.e, self.config.horizon), "temporal")]
        return out

    def init_one(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """torch's default conv init (``U(+-1/sqrt(fan_in))``), unit/zero norms, N(0, 1) node vectors
        (as Graph WaveNet's ``nodevec``)."""
        out = {}
        for s in self._spec():
            if s.name.endswith("norm_w"):
                out[s.name] = torch.ones(s.shape)
            elif s.name.endswith("norm_b"):
                out[s.name] = torch.zeros(s.shape)
            elif s.name.startswith("adaptive"):
                out[s.name] = torch.randn(s.shape, generator=generator)
            else:
                fan_in = s.shape[0] * (s.shape[1] if len(s.shape) == 3 else 1)
                out[s.name] = uniform_(s.shape, 1 / math.sqrt(fan_in), generator)
        return out

    # ------------------------------------------------------------------ pieces
    def inputs(self, batch: WindowBatch) -> torch.Tensor:
        """``[n, B, K+1, RF, F]``: target channel(s) + time features, cropped/left-padded to the receptive field."""
        x = self.model_inputs(batch)
        tf = time_features(batch.tod, self.time)
        tf = tf[:, :, None, None, :].expand(*x.shape[:-1], tf.shape[-1])
        x = torch.cat([x, tf], dim=-1)
        t, rf = x.shape[-2], self.receptive_field
        return x[..., t - rf:, :] if t >= rf else F.pad(x, (0, 0, rf - t, 0))

    def supports(self, adj: torch.Tensor, valid: torch.Tensor, params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Diffusion matrices ``M = P^T`` (``[n, S, S]``; ``x' = M x``, Graph WaveNet's ``nconv``) for
        the forward and backward transition matrices and the adaptive adjacency."""
        used = adj.shape[-1]  # may be fewer than ego_size when padded slots were cut
        logits = F.relu(params["adaptive.source"][:, :used] @ params["adaptive.target"][:, :, :used])
        logits = logits.masked_fill(~valid.unsqueeze(-2), float("-inf"))
        adaptive = torch.softmax(logits, dim=-1) * valid.unsqueeze(-1).to(logits.dtype)
        mats = [row_normalize(adj), row_normalize(adj.transpose(-1, -2)), adaptive]
        return [m.transpose(-1, -2) for m in mats]

    def _forward(self, params: dict[str, torch.Tensor], batch: WindowBatch) -> torch.Tensor:
        x = self.inputs(batch).transpose(1, 2)  # [n, S, B, T, F], slot-major: graph convs are bmm
        n, s, b, t, _ = x.shape
        # every diffusion hop M, M^2, .., M^order of every support, stacked: one bmm per layer
        powers = []
        for m in self.supports(batch.adj, batch.valid, params):
            p = m
            for _ in range(self.order):
                powers.append(p)
                p = torch.bmm(p, m)
        hops_all = torch.cat(powers, dim=1)  # [n, hops*S, S]
        hops_centre = torch.cat([p[:, :1] for p in powers], dim=1)  # [n, hops, S]: their centre rows
        n_hops = len(powers)
        h = temporal_conv(x.reshape(n, s * b, t, -1), params["start"].unsqueeze(2))  # [n, S*B, T, R]
        h = h.view(n, s, b, t, self.r)
        skip = 0.0
        for i, dil in enumerate(self.dilations):
            s_in, t_in = h.shape[1], h.shape[3]
            last = i == self.n_layers - 1
            if last:  # only the centre's last step: its last (kt-1)*dil+1 inputs
                h = h[:, :1, :, t_in - dil * (self.kt - 1) - 1:]
                s_in, t_in = 1, h.shape[3]
            w = torch.cat([params[f"l{i}.filter"], params[f"l{i}.gate"]], dim=-1)
            fg = temporal_conv(h.reshape(n, s_in * b, t_in, self.r), w, dil)  # [n, S*B, T', 2D]
            t_out = fg.shape[2]
            filt, gate = fg.chunk(2, dim=-1)
            z = (torch.tanh(filt) * torch.sigmoid(gate)).view(n, s_in, b, t_out, self.d)
            skip = skip + torch.bmm(z[:, 0, :, -1], params[f"l{i}.skip"])  # [n, B, Sk]: centre, last step
            if last:
                break
            flat = z.reshape(n, s_in, b * t_out * self.d)
            s_out = 1 if i == self.n_layers - 2 else s_in  # the last layer reads only the centre node
            mix = hops_centre if s_out == 1 else hops_all
            diffused = torch.bmm(mix, flat).view(n, n_hops, s_out, b * t_out, self.d)
            g = torch.cat([flat[:, :s_out].view(n, 1, s_out, b * t_out, self.d), diffused], dim=1)
            g = g.permute(0, 2, 3, 1, 4).reshape(n, s_out * b * t_out, (n_hops + 1) * self.d)  # [n, M, hops*D]
            g = torch.bmm(g, params[f"l{i}.gconv"])
            h = g.view(n, s_out, b, t_out, self.r) + h[:, :s_out, :, t_in - t_out:]
            h = F.layer_norm(h, (self.r,))
            h = h * params[f"l{i}.norm_w"][:, None, None, None] + params[f"l{i}.norm_b"][:, None, None, None]
        out = F.relu(torch.bmm(F.relu(skip), params["end1"]))
        return torch.bmm(out, params["end2"])


# ------------------------------------------------------------------ reference module
class GWNNet(NodeModule):
    """Graph WaveNet for one node's ego-graph, written like the released ``v_GWN`` (NCHW, every slot)."""

    model: GWN

    def __init__(self, model: GWN) -> None:
        super().__init__(model)
        r, d, sk, e, kt = model.r, model.d, model.sk, model.e, model.kt
        hops = model.order * model.n_supports + 1
        self.start = nn.Conv2d(model.features, r, (1, 1), bias=False)
        self.filters = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.gconvs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i, dil in enumerate(model.dilations):
            self.filters.append(nn.Conv2d(r, d, (1, kt), dilation=dil, bias=False))
            self.gates.append(nn.Conv2d(r, d, (1, kt), dilation=dil, bias=False))
            self.skips.append(nn.Conv2d(d, sk, (1, 1), bias=False))
            if i < model.n_layers - 1:
                self.gconvs.append(nn.Conv2d(hops * d, r, (1, 1), bias=False))
                self.norms.append(nn.LayerNorm(r))
        self.source = nn.Parameter(torch.zeros(model.slots, int(model.size["adaptive_dim"])))
        self.target = nn.Parameter(torch.zeros(int(model.size["adaptive_dim"]), model.slots))
        self.end1 = nn.Conv2d(sk, e, (1, 1), bias=False)
        self.end2 = nn.Conv2d(e, model.config.horizon, (1, 1), bias=False)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, valid: torch.Tensor, tod: torch.Tensor,
                dow: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = select_channels(x, m.n_inputs)  # [B, S, T, C]
        tf = time_features(tod, m.time)[:, None, None, :].expand(*x.shape[:-1], -1)
        x = torch.cat([x, tf], dim=-1).permute(0, 3, 1, 2)  # NCHW: [B, F, S, T]
        t = x.shape[-1]
        x = x[..., t - m.receptive_field:] if t >= m.receptive_field else F.pad(x, (m.receptive_field - t, 0))
        used = adj.shape[-1]
        logits = F.relu(self.source[:used] @ self.target[:, :used]).masked_fill(~valid[None, :], float("-inf"))
        adaptive = torch.softmax(logits, 1)
        adaptive = adaptive * valid[:, None]
        supports = [row_normalize(adj), row_normalize(adj.t()), adaptive]
        x = self.start(x)
        skip = 0
        for i in range(m.n_layers):
            residual = x
            z = torch.tanh(self.filters[i](x)) * torch.sigmoid(self.gates[i](x))
            s = self.skips[i](z)
            skip = s + (skip[..., -s.shape[-1]:] if torch.is_tensor(skip) else 0)
            if i == m.n_layers - 1:
                break
            out = [z]
            for a in supports:
                y = z
                for _ in range(m.order):
                    y = torch.einsum("ncvl,vw->ncwl", y, a)  # Graph WaveNet's nconv
                    out.append(y)
            x = self.gconvs[i](torch.cat(out, dim=1)) + residual[..., -z.shape[-1]:]
            x = self.norms[i](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = F.relu(self.end1(F.relu(skip)))
        return self.end2(x)[:, :, 0, -1]  # [B, horizon] of the centre slot

    def load_node_params(self, params: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.start.weight.copy_(params["start"].t()[:, :, None, None])
            for i in range(self.model.n_layers):
                self.filters[i].weight.copy_(conv_weight(params[f"l{i}.filter"]))
                self.gates[i].weight.copy_(conv_weight(params[f"l{i}.gate"]))
                self.skips[i].weight.copy_(params[f"l{i}.skip"].t()[:, :, None, None])
                if i < self.model.n_layers - 1:
                    self.gconvs[i].weight.copy_(params[f"l{i}.gconv"].t()[:, :, None, None])
                    self.norms[i].weight.copy_(params[f"l{i}.norm_w"])
                    self.norms[i].bias.copy_(params[f"l{i}.norm_b"])
            self.source.copy_(params["adaptive.source"])
            self.target.copy_(params["adaptive.target"])
            self.end1.weight.copy_(params["end1"].t()[:, :, None, None])
            self.end2.weight.copy_(params["end2"].t()[:, :, None, None])

    def node_params(self) -> dict[str, torch.Tensor]:
        def mat(conv: nn.Conv2d) -> torch.Tensor:
            return conv.weight.detach()[:, :, 0, 0].t().contiguous()

        out = {"start": mat(self.start), "adaptive.source": self.source.detach().clone(),
               "adaptive.target": self.target.detach().clone(), "end1": mat(self.end1), "end2": mat(self.end2)}
        for i in range(self.model.n_layers):
            out[f"l{i}.filter"] = spec_weight(self.filters[i])
            out[f"l{i}.gate"] = spec_weight(self.gates[i])
            out[f"l{i}.skip"] = mat(self.skips[i])
            if i < self.model.n_layers - 1:
                out[f"l{i}.gconv"] = mat(self.gconvs[i])
                out[f"l{i}.norm_w"] = self.norms[i].weight.detach().clone()
                out[f"l{i}.norm_b"] = self.norms[i].bias.detach().clone()
        return self.with_context(out)


GWN.module_class = GWNNet
