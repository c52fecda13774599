"""Temporal prompts: ``masked_patch``, a masked-patch Transformer encoder for a node's most recent days.

Input. A node's last ``days`` days of its target series inside the given segment (a source: the
end of its training period; a target: its few-shot days, so shorter inputs are normal; longer
segments contribute their last ``days`` days). If the node is observed less than ``min_coverage``
of that window (an outage), the window moves back by whole days, never leaving the segment.
Missing values are masked, never imputed into the statistics.

Scaling: per-window standardisation. Every window is centred and scaled by the mean and standard
deviation of its own observed values. A target node has nothing but its few days, so a node
scaler fitted on its "training segment" would be exactly this; doing the same for sources and for
every training crop keeps training and inference identical and makes a prompt a function of the
window alone (no leakage by construction, and cities of any magnitude share the encoder).

Patches by time. The window is resampled onto a grid of ``patch_minutes / patch_points`` minutes
(5 min by default; finer data is averaged over observed values, coarser data is held constant over
its interval), aligned to the window's end and cut into patches of ``patch_minutes`` (1 hour), so
a patch means one hour in every city, whatever its interval (5 min, 10 min, 1 h, ...). Each patch
token carries its values and observation mask; the token's time of day / day of week (sin, cos) and
its distance from the window end (learned) are added.

Training (self-supervised, masked-patch reconstruction in the style of masked autoencoders for
time series): random crops of the source cities' training segments, between ``min_train_patches``
patches and ``days`` days long; a fraction ``mask_ratio`` of the observed patches is replaced by a
learned mask token and the encoder reconstructs their observed values (MSE). The prompt is the mean
and the standard deviation over the patches of the last layer (``2 * d_model`` = 128 by default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from gpdiff.data.city import City
from gpdiff.data.splits import Segment
from gpdiff.prompts.base import PromptEncoder, check_segment
from gpdiff.utils.config import require_at_least_one, require_range
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.lr_schedule import warmup_cosine_scheduler
from gpdiff.utils.progress import progress_bar

MIN_WINDOW_STD = 1e-6
CLIP = 10.0  # standardised values beyond this are clipped (isolated spikes)


# --------------------------------------------------------------------------- windows
@dataclass
class SeriesWindow:
    """The target channel of all nodes over one window each: what a temporal encoder sees."""

    values: np.ndarray  # [N, L] float64, NaN where missing
    mask: np.ndarray  # [N, L] bool
    start_minute: np.ndarray  # [N] minute of the week (Monday 00:00 = 0) of each row's first step
    interval_minutes: int
    starts: np.ndarray  # [N] first step of each row's window in the city
    segment: Segment  # the segment the windows were taken from

    @property
    def length(self) -> int:
        return int(self.values.shape[1])


def minute_of_week(city: City, step: np.ndarray | int) -> np.ndarray:
    """Minute of the week (Monday 00:00 = 0) of ``step``."""
    ts = city.start
    first = ts.day_of_week * 1440 + ts.hour * 60 + ts.minute
    return (first + np.asarray(step, dtype=np.int64) * city.interval_minutes) % (7 * 1440)


def prompt_windows(city: City, segment: Segment, days: float, min_coverage: float = 0.5) -> SeriesWindow:
    """Each node's most recent ``days``-day window inside ``segment`` (all of it if shorter).

    The window ends at the segment's end, or whole days earlier when the node is observed less than
    ``min_coverage`` of that window (a sensor outage); if no window is covered well enough, the
    best-covered one. Windows never leave ``segment``.
    """
    check_segment(city, segment)
    if days <= 0:
        raise GpdiffError(f"the number of prompt days must be positive, got {days}.")
    length = min(len(segment), max(1, round(days * city.steps_per_day)))
    seg_mask = city.mask[segment.as_slice()]
    ends = np.arange(len(segment), length - 1, -city.steps_per_day)  # relative to the segment, most recent first
    cum = np.concatenate([np.zeros((1, city.n_nodes)), np.cumsum(seg_mask, axis=0, dtype=np.float64)])
    cover = (cum[ends] - cum[ends - length]) / length  # [E, N]
    good = cover >= min_coverage
    best = np.where(good.any(axis=0), good.argmax(axis=0), cover.argmax(axis=0))
    starts = segment.start + ends[best] - length
    idx = starts[:, None] + np.arange(length)[None, :]  # [N, L]
    nodes = np.arange(city.n_nodes)[:, None]
    mask = city.mask[idx, nodes]
    vals = city.values[idx, nodes, 0].astype(np.float64)
    vals[~mask] = np.nan
    return SeriesWindow(vals, mask, minute_of_week(city, starts), city.interval_minutes, starts, segment)


def window_notes(city: City, win: SeriesWindow) -> list[str]:
    """Notes on nodes whose window is not the end of the segment."""
    moved = np.flatnonzero(win.starts + win.length != win.segment.stop)
    if not moved.size:
        return []
    shown = ", ".join(city.node_ids[i] for i in moved[:3])
    return [f"{city.name}: {moved.size} node(s) take their temporal prompt from an earlier window of the segment "
            + f"(too few observations at its end), e.g. {shown}"]


def sparse_nodes(city: City, window: SeriesWindow, minimum: int, unit: str) -> np.ndarray:
    """Rows of nodes with fewer than ``minimum`` observed values in ``window``.

    Raises when that is every node: then no prompt can be computed at all.
    """
    count = window.mask.sum(axis=1)
    bad = np.flatnonzero(count < minimum)
    if bad.size == city.n_nodes:
        seg = window.segment
        raise GpdiffError(
            f"{city.name}: no node has {unit} of observed data ({minimum} step(s)) in any {window.length}-step window "
            f"of steps [{seg.start}, {seg.stop}) used for the temporal prompts. Use more days "
            "(--days / --target-days) or a period with data."
        )
    return bad


def fill_sparse(city: City, rows: np.ndarray, prompts: np.ndarray, minimum: int, unit: str) -> list[str]:
    """Give the nodes in ``rows`` the mean prompt of the city's other nodes (in place); the note saying so.

    A node with (almost) nothing observed in its prompt window has no temporal signature of its own;
    the city's average one is the least informative choice that keeps the node in the experiment
    (it is still forecast and scored wherever it has data).
    """
    if not rows.size:
        return []
    keep = np.ones(city.n_nodes, dtype=bool)
    keep[rows] = False
    prompts[rows] = prompts[keep].mean(axis=0)
    ids = ", ".join(city.node_ids[i] for i in rows[:5])
    more = f" and {rows.size - 5} more" if rows.size > 5 else ""
    return [f"{city.name}: {rows.size} node(s) have less than {unit} of observed data ({minimum} step(s)) in their "
            f"temporal prompt window and get the mean temporal prompt of the other nodes (node ids: {ids}{more})"]


@dataclass
class Patches:
    """Standardised patch tokens of a batch of windows."""

    x: np.ndarray  # [B, n, P] float32, standardised values (0 where missing)
    m: np.ndarray  # [B, n, P] bool, observed
    t: np.ndarray  # [B, n, 4] float32: sin/cos time of day, sin/cos day of week of each patch start


def patchify(values: np.ndarray, mask: np.ndarray, start_minute: np.ndarray | int, interval: int,
             patch_minutes: int, patch_points: int, n_patches: int | None = None) -> Patches:
    """Resample windows ``[B, L]`` onto the patch grid, aligned to their end; see the module docstring.

    ``n_patches`` (default: as many whole patches as fit) takes the most recent patches.
    """
    b, length = values.shape
    res = patch_minutes // patch_points
    g = math.gcd(interval, res)
    n_max = (length * interval) // patch_minutes
    n = n_max if n_patches is None else n_patches
    if n < 1 or n > n_max:
        raise GpdiffError(f"a window of {length} steps of {interval} min holds {n_max} whole patch(es) of "
                          f"{patch_minutes} min; {n} requested. Use a longer window.")
    v = np.where(mask, values, 0.0)
    rep = interval // g
    v, mk = np.repeat(v, rep, axis=1), np.repeat(mask, rep, axis=1)  # fine grid of g minutes
    keep = n * patch_minutes // g
    drop = v.shape[1] - keep
    pool = res // g
    v = v[:, drop:].reshape(b, n * patch_points, pool)
    mk = mk[:, drop:].reshape(b, n * patch_points, pool)
    cnt = mk.sum(axis=2)
    cell = np.divide(v.sum(axis=2), cnt, out=np.zeros(cnt.shape), where=cnt > 0)
    obs = cnt > 0
    # per-window standardisation over the observed cells
    k = np.maximum(obs.sum(axis=1, keepdims=True), 1)
    mean = (cell * obs).sum(axis=1, keepdims=True) / k
    std = np.sqrt((((cell - mean) * obs) ** 2).sum(axis=1, keepdims=True) / k)
    std = np.where(std < MIN_WINDOW_STD * np.maximum(np.abs(mean), 1.0), 1.0, std)
    z = np.clip((cell - mean) / std, -CLIP, CLIP) * obs
    first = np.asarray(start_minute, dtype=np.int64).reshape(-1) + drop * g
    minute = first[:, None] + np.arange(n)[None, :] * patch_minutes  # [B or 1, n]
    tod = (minute % 1440) / 1440.0
    dow = ((minute // 1440) % 7) / 7.0
    t = np.stack([np.sin(2 * np.pi * tod), np.cos(2 * np.pi * tod),
                  np.sin(2 * np.pi * dow), np.cos(2 * np.pi * dow)], axis=-1)
    t = np.broadcast_to(t, (b, n, 4))
    return Patches(z.reshape(b, n, patch_points).astype(np.float32), obs.reshape(b, n, patch_points),
                   np.ascontiguousarray(t, dtype=np.float32))


# --------------------------------------------------------------------------- network
@dataclass
class MaskedPatchConfig:
    """Masked-patch Transformer encoder. Prompt width is ``2 * d_model``."""

    RENAMED: ClassVar[dict[str, str]] = {"train_steps": "max_steps"}  # gpdiff 0.1.0 before issue 26
    days: float = 3.0  # input: the most recent ``days`` days (the few-shot length)
    patch_minutes: int = 60  # one token = one hour in every city
    patch_points: int = 12  # values per token (a 5-minute grid)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 128
    mask_ratio: float = 0.4
    max_steps: int = 600  # ~20 s on 2 CPU cores for three bundled flow cities; 1200 measured no better (loco)
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 40
    min_train_patches: int = 6  # shortest training crop (shorter prompts must work)
    short_fraction: float = 0.3  # share of training batches with crops shorter than ``days``
    min_coverage: float = 0.5  # prompt window: the latest one in which the node is observed this often
    threads: int = 1  # torch CPU threads while fitting/encoding (0: leave PyTorch's setting)

    def __post_init__(self) -> None:
        where = "prompts.temporal_config."
        require_at_least_one(self, ("d_model", "n_layers", "n_heads", "ff_dim", "max_steps", "batch_size",
                                    "min_train_patches"), where)
        require_range(self, ("days", "lr"), where, above=0)
        require_range(self, ("weight_decay", "warmup", "threads"), where, at_least=0)
        require_range(self, ("short_fraction",), where, at_least=0, at_most=1)
        require_range(self, ("min_coverage",), where, above=0, at_most=1)
        if self.patch_minutes <= 0 or self.patch_points <= 0 or self.patch_minutes % self.patch_points:
            raise GpdiffError(f"patch_minutes ({self.patch_minutes}) must be a positive multiple of "
                              f"patch_points ({self.patch_points}).")
        if 1440 % self.patch_minutes:
            raise GpdiffError(f"patch_minutes ({self.patch_minutes}) must divide a day (1440).")
        if self.d_model % self.n_heads:
            raise GpdiffError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads}).")
        if not 0 < self.mask_ratio < 1:
            raise GpdiffError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}.")

    @property
    def max_patches(self) -> int:
        return max(1, round(self.days * 1440 / self.patch_minutes))


class MaskedPatchTransformer(nn.Module):
    """Patch tokens -> Transformer encoder -> per-patch states (and reconstructions)."""

    def __init__(self, cfg: MaskedPatchConfig) -> None:
        super().__init__()
        d, p = cfg.d_model, cfg.patch_points
        self.embed = nn.Linear(2 * p, d)
        self.time = nn.Linear(4, d)
        self.pos = nn.Embedding(cfg.max_patches, d)  # index 0 = the most recent patch
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.ff_dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, p)

    def forward(self, x: torch.Tensor, m: torch.Tensor, t: torch.Tensor, hide: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``[B, n, d]`` and the key padding mask ``[B, n]`` (True = patch without observations)."""
        n = x.shape[1]
        mf = m.float()
        tok = self.embed(torch.cat([x * mf, mf], dim=-1))
        if hide is not None:
            tok = torch.where(hide[..., None], self.mask_token.expand_as(tok), tok)
        pos = torch.arange(n - 1, -1, -1, device=x.device)
        tok = tok + self.time(t) + self.pos(pos)[None]
        empty = ~m.any(dim=-1)
        h = self.encoder(tok, src_key_padding_mask=empty)
        return self.norm(h), empty

    @staticmethod
    def pool(h: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        """Mean and standard deviation over the observed patches: ``[B, 2d]``."""
        w = (~empty).float()[..., None]
        k = w.sum(dim=1).clamp_min(1.0)
        mean = (h * w).sum(dim=1) / k
        var = (((h - mean[:, None]) ** 2) * w).sum(dim=1) / k
        return torch.cat([mean, torch.sqrt(var + 1e-8)], dim=-1)


# --------------------------------------------------------------------------- encoder
class MaskedPatchEncoder(PromptEncoder):
    """``masked_patch``: the self-supervised masked-patch Transformer (the default temporal prompt)."""

    kind = "temporal"
    name = "masked_patch"
    config_class = MaskedPatchConfig

    def __init__(self, config: MaskedPatchConfig | None = None) -> None:
        super().__init__(config)
        self.net = MaskedPatchTransformer(self.config)

    @property
    def dim(self) -> int:
        return 2 * self.config.d_model

    def min_observations(self, interval: int) -> int:
        """Observed steps needed for one patch: one patch's worth at the city's interval."""
        return max(1, self.config.patch_minutes // interval)

    # ------------------------------------------------------------------ fit
    def _fit(self, cities: Sequence[City], segments: Sequence[Segment], progress: bool) -> None:
        with torch_threads(self.config.threads):
            self._train(cities, segments, progress)

    def _train(self, cities: Sequence[City], segments: Sequence[Segment], progress: bool) -> None:
        cfg = self.config
        torch.manual_seed(self.seed)
        self.net = MaskedPatchTransformer(cfg)
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        pools = [_CropPool(c, s, cfg) for c, s in zip(cities, segments)]
        cap = min(p.max_patches for p in pools)
        if cap < 2:
            short = min(pools, key=lambda p: p.max_patches)
            raise GpdiffError(f"{short.city.name}: its training segment holds {short.max_patches} patch(es) of "
                              f"{cfg.patch_minutes} min; the encoder needs at least 2 to learn from.")
        full = min(cfg.max_patches, cap)
        weights = np.array([p.n_nodes for p in pools], dtype=np.float64)
        weights /= weights.sum()
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = warmup_cosine_scheduler(opt, cfg.warmup, cfg.max_steps)
        self.net.train()
        losses: list[float] = []
        t0 = time.perf_counter()
        bar = progress_bar(range(cfg.max_steps), desc=f"temporal encoder ({self.name})", disable=not progress,
                           leave=False, unit="step")
        for _ in bar:
            n = full
            if rng.random() < cfg.short_fraction:
                n = int(rng.integers(min(cfg.min_train_patches, full), full + 1))
            counts = rng.multinomial(cfg.batch_size, weights)
            parts = [p.sample(int(k), n, rng) for p, k in zip(pools, counts) if k]
            x = torch.from_numpy(np.concatenate([q.x for q in parts]))
            m = torch.from_numpy(np.concatenate([q.m for q in parts]))
            t = torch.from_numpy(np.concatenate([q.t for q in parts]))
            observed = m.any(dim=-1)
            keep = observed.sum(dim=1) >= 2  # a crop needs a visible and a hidden patch
            if not bool(keep.any()):
                continue
            x, m, t, observed = x[keep], m[keep], t[keep], observed[keep]
            hide = _random_hide(observed, cfg.mask_ratio, gen)
            h, _ = self.net(x, m, t, hide)
            rec = self.net.head(h)
            w = (m & hide[..., None]).float()
            loss = (((rec - x) ** 2) * w).sum() / w.sum().clamp_min(1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if progress:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        self.net.eval()
        tail = losses[-max(1, len(losses) // 10):]
        self.info = {"cities": [c.name for c in cities],
                     "segments": {c.name: [s.start, s.stop] for c, s in zip(cities, segments)},
                     "nodes": int(sum(p.n_nodes for p in pools)), "max_steps": cfg.max_steps,
                     "first_loss": round(float(np.mean(losses[:10])), 4) if losses else None,
                     "final_loss": round(float(np.mean(tail)), 4) if losses else None,
                     "seconds": round(time.perf_counter() - t0, 1)}

    # ------------------------------------------------------------------ encode
    def encode(self, city: City, segment: Segment) -> tuple[np.ndarray, list[str]]:
        with torch_threads(self.config.threads):
            return self._encode(city, segment)

    def _encode(self, city: City, segment: Segment) -> tuple[np.ndarray, list[str]]:
        self._require_fitted()
        cfg = self.config
        win = prompt_windows(city, segment, cfg.days, cfg.min_coverage)
        n_avail = win.length * city.interval_minutes // cfg.patch_minutes
        if n_avail < 1:
            raise GpdiffError(
                f"{city.name}: the prompt segment has {win.length} step(s) of {city.interval_minutes} min, "
                f"shorter than one patch ({cfg.patch_minutes} min); use more days."
            )
        minimum, unit = self.min_observations(city.interval_minutes), f"one {cfg.patch_minutes}-minute patch"
        sparse = sparse_nodes(city, win, minimum, unit)
        n = min(n_avail, cfg.max_patches)
        pt = patchify(win.values, win.mask, win.start_minute, city.interval_minutes, cfg.patch_minutes,
                      cfg.patch_points, n)
        notes = window_notes(city, win)
        if n < cfg.max_patches:
            notes.append(f"temporal prompt for {city.name} from {n} patch(es) of {cfg.patch_minutes} min, "
                         f"shorter than the {cfg.days}-day input")
        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, city.n_nodes, 256):
                sl = slice(i, i + 256)
                h, empty = self.net(torch.from_numpy(pt.x[sl]), torch.from_numpy(pt.m[sl]),
                                    torch.from_numpy(pt.t[sl]))
                out.append(self.net.pool(h, empty))
        prompts = torch.cat(out).numpy().astype(np.float32)
        notes += fill_sparse(city, sparse, prompts, minimum, unit)
        return prompts, notes

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.net = MaskedPatchTransformer(self.config)
        try:
            self.net.load_state_dict(tensors)
        except RuntimeError as exc:
            raise GpdiffError(f"the {self.name} encoder weights do not match its config.yaml "
                              f"({str(exc).splitlines()[0]}); refit the encoder.") from None
        self.net.eval()


class _CropPool:
    """Random crops of one city's training segment, patchified."""

    def __init__(self, city: City, segment: Segment, cfg: MaskedPatchConfig) -> None:
        check_segment(city, segment)
        self.city, self.cfg = city, cfg
        self.values = city.values[segment.as_slice(), :, 0].astype(np.float64).T  # [N, L]
        self.mask = city.mask[segment.as_slice()].T.copy()
        self.first_minute = int(minute_of_week(city, segment.start))
        self.interval = city.interval_minutes
        self.n_nodes = city.n_nodes
        self.max_patches = len(segment) * self.interval // cfg.patch_minutes

    def sample(self, count: int, n_patches: int, rng: np.random.Generator) -> Patches:
        steps = -(-n_patches * self.cfg.patch_minutes // self.interval)  # ceil
        length = self.values.shape[1]
        nodes = rng.integers(0, self.n_nodes, size=count)
        ends = rng.integers(steps, length + 1, size=count)
        idx = ends[:, None] - steps + np.arange(steps)[None, :]
        vals, msk = self.values[nodes[:, None], idx], self.mask[nodes[:, None], idx]
        start = (self.first_minute + (ends - steps) * self.interval) % (7 * 1440)
        return patchify(vals, msk, start, self.interval, self.cfg.patch_minutes, self.cfg.patch_points, n_patches)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (``n <= 0``: unchanged), restoring the previous setting.

    The encoder's matrices are 64 wide: intra-op threading gains little and, on a busy machine,
    loses a lot (measured 6x slower with 2 threads than 1 on a shared 2-core box).
    """
    if n <= 0:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _random_hide(observed: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Hide ``ratio`` of each row's observed patches (at least one, never all)."""
    k = observed.sum(dim=1, keepdim=True)
    n_hide = torch.clamp((k.float() * ratio).round().long(), min=1)
    n_hide = torch.minimum(n_hide, k - 1)
    score = torch.rand(observed.shape, generator=gen)
    score = torch.where(observed, score, torch.full_like(score, 2.0))  # unobserved sort last
    rank = score.argsort(dim=1).argsort(dim=1)
    return rank < n_hide
