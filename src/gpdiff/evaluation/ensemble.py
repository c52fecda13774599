"""Ensembles: K members of a method, their mean as the point forecast, their spread calibrated into intervals.

A member is one full run of a method with parameters. For GPD (``gpd``, ``gpd_zero_shot``) member
``k`` starts from its own generation (:func:`member_generations`: the generator's output for seeds
``member_seed(seed, k)`` .., the same ``generate.num_samples`` each, so member 0 is the run's own
generation); for the other fine-tuning methods member ``k`` is the same method fine-tuned with seed
``member_seed(seed, k)`` (a deep ensemble at equal compute, Lakshminarayanan et al., NeurIPS 2017).
Every member gets the same fine-tuning budget, so an ensemble of K costs K fine-tunings.

The *conformalised ensemble* (Romano et al., "Conformalized quantile regression", NeurIPS 2019,
section 6; Angelopoulos & Bates, "A gentle introduction to conformal prediction", 2021, section 2.3,
"conformalizing uncertainty scalars"): on the calibration windows the nonconformity score of node
``n``, window ``b``, step ``h`` is ``|y - mean| / u`` with ``u = max(spread, floor * s_n)`` (the
members' standard deviation, floored at a fraction of the node's scale so that zero spread never
divides by zero), its split conformal quantile ``q[h]`` per level (:func:`gpdiff.evaluation.intervals.calibrate`
on the scores), and the interval of a new forecast is ``mean -+ q[h] * u``. It covers with
probability at least the level whatever the spread means; the spread only decides *where* the
interval is wide. Whether it carries information is measured per node by the Spearman rank
correlation of spread and absolute error over the test windows (scipy).

Scores besides :mod:`gpdiff.evaluation.intervals`': the CRPS of the members' empirical distribution
(``scoringrules.crps_ensemble``, estimator ``nrg``: ``E|X - y| - E|X - X'| / 2``; for identical members
it is the absolute error of their forecast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gpdiff.evaluation import intervals
from gpdiff.utils.errors import GpdiffError

if TYPE_CHECKING:
    from gpdiff.data.windows import CityData
    from gpdiff.diffusion.sample import GenerateConfig
    from gpdiff.diffusion.train import DiffusionModel
    from gpdiff.evaluation.blend import BlendConfig
    from gpdiff.prompts import PromptSet
    from gpdiff.zoo.params import ParamCollection

SEED_STRIDE = 10_000  # member k's seed offset: member_seed(seed, k) never meets another run seed's member 0


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member ``member`` (0: the run's own seed)."""
    return seed + SEED_STRIDE * member


@dataclass
class EnsembleConfig:
    """Ensembles of every method with parameters (run config ``ensemble``).

    ``size`` K: members per method (1: no ensemble, the run as without this section). Each member is a
    full fine-tuning, so a run's fine-tuning time grows K-fold. ``spread_floor``: the conformalised
    ensemble divides by ``max(spread, spread_floor * node scale)``. Raises :class:`GpdiffError` for
    ``size < 1`` or a floor that is not > 0."""

    size: int = 1
    spread_floor: float = 0.01  # only a guard against zero spread: the spread decides the width above it

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise GpdiffError(f"ensemble.size must be a whole number of members >= 1 (1: no ensemble), got "
                              f"{self.size!r}.")
        if not np.isfinite(self.spread_floor) or self.spread_floor <= 0:
            raise GpdiffError(f"ensemble.spread_floor must be > 0 (a fraction of each node's scale, e.g. 0.01), got "
                              f"{self.spread_floor!r}.")

    @property
    def active(self) -> bool:
        return self.size > 1


def ensembled(name: str, has_params: bool) -> bool:
    """Whether method ``name`` gets K members: every method with parameters whose members differ
    (GPD's by their generation, the fine-tuning methods' by their seed); ``transfer_zero_shot`` is the
    anchor as it is, the same for every seed, so it stays one member."""
    from gpdiff.methods import NEEDS_GENERATION, ZERO_SHOT

    return has_params and (name in NEEDS_GENERATION or name not in ZERO_SHOT)


def member_generations(model: DiffusionModel, prompts: PromptSet, generate_config: GenerateConfig, seed: int,
                       size: int, progress: bool = False) -> list[ParamCollection]:
    """The generations of members ``1 .. size - 1`` (``[size - 1]`` ParamCollections): member ``k`` is
    :func:`gpdiff.diffusion.sample.generate` with seed ``member_seed(seed, k)`` and the run's other
    generation settings (member 0 is the run's own generation, seed ``seed``)."""
    from gpdiff.diffusion.sample import generate

    return [generate(model, prompts, generate_config, seed=member_seed(seed, k), progress=progress)
            for k in range(1, size)]


def mean_and_spread(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and spread (population standard deviation over members) of ``members [K, ...]``,
    both ``[...]`` float64. Identical members give their forecast and zero spread."""
    m = np.asarray(members, dtype=np.float64)
    if m.ndim < 1 or m.shape[0] < 1:
        raise GpdiffError(f"an ensemble needs at least one member, got forecasts of shape {m.shape}.")
    d = m - m[0]  # about member 0, so identical members give exactly its forecast and zero spread
    return m[0] + d.mean(0), d.std(0)


def spread_scale(spread: np.ndarray, scale: np.ndarray, floor: float) -> np.ndarray:
    """``max(spread, floor * scale_n)``: the divisor ``u`` ``[N, ...]`` of spreads ``[N, ...]`` with node
    scales ``scale [N]``."""
    s = np.asarray(scale, dtype=np.float64).reshape((-1,) + (1,) * (spread.ndim - 1))
    return np.maximum(spread, floor * np.maximum(s, 1e-12))


def calibrate_ensemble(mean: np.ndarray, spread: np.ndarray, truth: np.ndarray, mask: np.ndarray,
                       scale: np.ndarray, levels: list[float] | tuple[float, ...], floor: float
                       ) -> intervals.Calibration:
    """Conformal quantiles ``[L, H]`` of ``|truth - mean| / max(spread, floor * scale)`` on calibration
    windows (``mean``, ``spread``, ``truth``, ``mask`` ``[N, B, H]``, node scales ``[N]``); the
    calibration of :func:`gpdiff.evaluation.intervals.calibrate` (its notes for a set too short) on those scores."""
    if spread.shape != mean.shape:
        raise GpdiffError(f"ensemble spread {spread.shape} and mean {mean.shape} must have one shape [N, B, H].")
    u = spread_scale(spread, scale, floor)
    scores = np.abs(truth - mean) / u
    return intervals.calibrate_scores(scores, mask, levels)


def ensemble_band(mean: np.ndarray, spread: np.ndarray, scale: np.ndarray, cal: intervals.Calibration,
                  floor: float, kind: str = "speed") -> intervals.Band:
    """The conformalised ensemble's intervals ``mean -+ q[h] * max(spread, floor * scale)`` (``.full()``: bounds
    ``[L, 2, N, B, H]``); NaN where uncalibrated, a ``flow`` city's lower bounds at least 0."""
    q = cal.at_steps(mean.shape[-1])[:, None, None, :]  # [L, 1, 1, H]
    return intervals.Band(mean, q * spread_scale(spread, scale, floor)[None], kind)


def crps_ensemble(members: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CRPS of the members' empirical distribution (``scoringrules.crps_ensemble``) for ``members
    [K, N, B, H]`` against ``truth`` / ``mask`` ``[N, B, H]``: per horizon step ``[H]`` and per node
    ``[N]`` (NaN: nothing observed), over the observed values, original units."""
    import scoringrules as sr

    ok = mask.astype(bool) & np.isfinite(truth)
    y = np.where(ok, truth, 0.0).astype(np.float64)
    c = np.asarray(sr.crps_ensemble(y, np.moveaxis(members.astype(np.float64), 0, -1), estimator="nrg"))
    c = np.where(ok, c, 0.0)
    per_h = c.reshape(-1, c.shape[-1]).sum(0) / np.maximum(ok.reshape(-1, ok.shape[-1]).sum(0), 1)
    n_ok = ok.reshape(ok.shape[0], -1).sum(1)
    per_node = np.where(n_ok > 0, c.reshape(c.shape[0], -1).sum(1) / np.maximum(n_ok, 1), np.nan)
    return per_h, per_node


def spread_error_correlation(spread: np.ndarray, mean: np.ndarray, truth: np.ndarray, mask: np.ndarray
                             ) -> np.ndarray:
    """Per node ``[N]``, the Spearman rank correlation (``scipy.stats.spearmanr``) between the ensemble
    spread and the absolute error of the ensemble mean over its observed test values (windows and
    steps); NaN for a node with fewer than 3 observed values or a constant spread or error."""
    from scipy.stats import spearmanr

    ok = mask.astype(bool) & np.isfinite(truth)
    err = np.abs(truth - mean)
    out = np.full(spread.shape[0], np.nan)
    for n in range(spread.shape[0]):
        s, e = spread[n][ok[n]], err[n][ok[n]]
        if s.size >= 3 and np.ptp(s) > 0 and np.ptp(e) > 0:
            out[n] = float(spearmanr(s, e).statistic)
    return out


@dataclass
class EnsembleOutcome:
    """What a method's ensemble adds to its outcome: K, the conformalised ensemble's interval scores
    (source a), the members' CRPS per step ``[H]`` and per node ``[N]``, the per-node spread-error
    rank correlation ``[N]``, the mean spread (original units) and the share of test values whose spread
    was below the floor (their interval width is the floor's)."""

    size: int
    scores: intervals.IntervalScores
    crps_ensemble: np.ndarray
    node_crps_ensemble: np.ndarray
    spread_error: np.ndarray
    mean_spread: float
    floored: float = 0.0
    notes: list[str] = field(default_factory=list)

    def spread_summary(self) -> str:
        """One line: the median per-node rank correlation, its quartiles, and how many nodes are positive."""
        r = self.spread_error[np.isfinite(self.spread_error)]
        if r.size == 0:
            return "no node with a varying spread and error"
        q1, med, q3 = np.percentile(r, [25, 50, 75])
        return f"median {med:.3f} (quartiles {q1:.3f} .. {q3:.3f}), positive on {(r > 0).sum()} of {r.size} nodes"


def score_ensemble(members_test: np.ndarray, members_val: np.ndarray, truth: np.ndarray, mask: np.ndarray,
                   val_truth: np.ndarray, val_mask: np.ndarray, scale: np.ndarray, levels: list[float],
                   floor: float, kind: str = "speed", daily: intervals.Daily | None = None,
                   widths: list[float] | None = None) -> EnsembleOutcome:
    """The conformalised ensemble of member forecasts ``members_test [K, N, B, H]`` (test windows) and
    ``members_val [K, N, Bv, H]`` (the calibration windows), calibrated on ``val_truth`` / ``val_mask``
    and scored on ``truth`` / ``mask``, with node scales ``scale [N]``. The members are the method's
    final (blended) forecasts; the interval is centred on their feasible mean (the method's point
    forecast), the members' CRPS is that of the feasible members (a ``flow`` member's negatives count as 0).
    ``daily``: recalibrate the test windows' quantiles once a day from their scores ``[N, B, H]``
    (:func:`gpdiff.evaluation.intervals.daily_quantiles` bound to the test windows); ``None``: once.
    ``widths``: the levels whose width and interval score are scored (:func:`~gpdiff.evaluation.intervals.score`)."""
    from gpdiff.data.city import feasible

    mean_v, spread_v = mean_and_spread(members_val)
    cal = calibrate_ensemble(feasible(mean_v, kind), spread_v, val_truth, val_mask, scale, levels, floor)
    mean_t, spread_t = mean_and_spread(members_test)
    point = feasible(mean_t, kind)
    notes = list(cal.notes)
    if daily is None:
        bnds = ensemble_band(point, spread_t, scale, cal, floor, kind)
    else:
        bnds, later = intervals.daily_band(point, spread_scale(spread_t, scale, floor), truth, cal, daily, kind)
        notes += later
    sc = intervals.score(point, bnds, truth, mask, cal.levels, widths)
    crps_h, crps_n = crps_ensemble(feasible(members_test, kind), truth, mask)
    ok = mask.astype(bool) & np.isfinite(truth)
    below = spread_t < floor * np.asarray(scale, dtype=np.float64)[:, None, None]
    return EnsembleOutcome(members_test.shape[0], sc, crps_h, crps_n,
                           spread_error_correlation(spread_t, point, truth, mask),
                           float(spread_t[ok].mean()) if ok.any() else float("nan"),
                           float(below[ok].mean()) if ok.any() else float("nan"), notes)


@dataclass
class Members:
    """A method's ensemble after blending: member forecasts of the test ``[K, N, B, H]`` and validation
    ``[K, N, Bv, H]`` windows, the blend weights ``[H, J]`` fitted for their mean (``None``: no blend),
    the point forecasts (the feasible mean) of both, and the blend's validation MAE alone -> blended."""

    test: np.ndarray
    val: np.ndarray
    point: np.ndarray
    val_point: np.ndarray
    weights: np.ndarray | None = None
    blend_val_mae: tuple[float, float] | None = None
    val_lagged: dict[str, float] = field(default_factory=dict)  # gpdiff.evaluation.blend.lag_share on the validation windows


def combine(test: np.ndarray, val: np.ndarray, data: CityData, config: BlendConfig, kind: str) -> Members:
    """Members' raw forecasts ``test [K, N, B, H]`` / ``val [K, N, Bv, H]`` of ``data``'s test and
    validation windows -> :class:`Members`. With naive forecasts in ``config`` (``blend.naive``) the blend
    weights are fitted on the validation forecasts of the members' *mean* (:func:`gpdiff.evaluation.blend.fit_blend`)
    and applied to every member; the blend is affine with weights summing to 1, so the blended mean is
    the mean of the blended members."""
    from gpdiff.data.city import feasible
    from gpdiff.evaluation import blend

    weights, val_mae, lagged = None, None, {}
    if config.active:
        fitted = blend.fit_blend(val.mean(0, dtype=np.float64).astype(np.float32), data, config)
        weights, val_mae = fitted.weights, (float(fitted.val_mae[0]), float(fitted.val_mae[1]))
        lagged = dict(fitted.val_lagged or {})
        nt = blend.naive_forecasts(data, data.origins("test"), fitted.names)
        nv = blend.naive_forecasts(data, data.origins("val"), fitted.names)
        test = np.stack([blend.apply_weights(m, nt, weights) for m in test])
        val = np.stack([blend.apply_weights(m, nv, weights) for m in val])
    return Members(test, val, feasible(test.mean(0, dtype=np.float64).astype(np.float32), kind),
                   feasible(val.mean(0, dtype=np.float64).astype(np.float32), kind), weights, val_mae, lagged)


ENSEMBLE_SUFFIX = ":ensemble"  # intervals.csv / node_crps.csv rows of a method's conformalised ensemble


def interval_rows(name: str, ens: EnsembleOutcome, levels: list[float]) -> list[dict[str, object]]:
    """``intervals.csv`` rows of method ``name``'s conformalised ensemble (method ``name:ensemble``):
    the :meth:`~gpdiff.evaluation.intervals.IntervalScores.rows` columns plus ``crps_ensemble`` (the members' CRPS)."""
    steps = [str(h + 1) for h in range(ens.crps_ensemble.shape[0])] + ["avg"]
    per = dict(zip(steps, [*map(float, ens.crps_ensemble), float(np.nanmean(ens.crps_ensemble))]))
    return [{**row, "crps_ensemble": per[str(row["horizon"])]}
            for row in ens.scores.rows(name + ENSEMBLE_SUFFIX, levels)]


def report_lines(plain: dict[str, intervals.IntervalScores], ensembles: dict[str, EnsembleOutcome],
                 levels: list[float]) -> list[str]:
    """report.md's ensemble section: per ensembled method, (b) split conformal on the ensemble mean next
    to (a) the conformalised ensemble (coverage and width per level, the interval-implied CRPS), the
    members' CRPS, and whether the spread tracks the error (per-node Spearman correlation)."""
    if not ensembles:
        return []
    k = next(iter(ensembles.values())).size
    head = ("| method | intervals | " + " | ".join(f"coverage {intervals.level_name(v)}% | width "
                                                   f"{intervals.level_name(v)}%" for v in levels)
            + " | CRPS (intervals) | CRPS (members) |")
    lines = ["## Ensembles (test period)", "",
             f"{k} members per method (`ensemble.size`; `gpdiff.evaluation.ensemble`), each a full run of the method (every "
             "fine-tuning with the same budget); the point forecast is their mean. (b) `conformal`: the split "
             "conformal interval of the mean, scaled by the node's scale; (a) `ensemble`: the conformalised ensemble, scaled by the members' spread per node and "
             "step (floored at `ensemble.spread_floor` x the node's scale). CRPS (intervals): from the median and "
             "the interval bounds; CRPS (members): `scoringrules.crps_ensemble` of the members themselves.", "",
             head, "|---" * (2 * len(levels) + 4) + "|"]
    for m, ens in ensembles.items():
        for label, sc, members in (("(b) conformal", plain.get(m), "-"),
                                   ("(a) ensemble", ens.scores, f"{np.nanmean(ens.crps_ensemble):.4g}")):
            if sc is None:
                continue
            cells = sc.table_cells(levels, interval_score=False)
            lines.append(f"| {m} | {label} | " + " | ".join(cells) + f" | {np.nanmean(sc.crps):.4g} | {members} |")
    lines += ["", "Is the spread informative? Per node, the Spearman rank correlation between the members' spread and "
              "the absolute error of their mean over the test windows and steps (> 0: a wider ensemble where the "
              "error is larger):", ""]
    lines += [f"- `{m}`: {ens.spread_summary()}; mean spread {ens.mean_spread:.4g}, {ens.floored:.0%} of the test "
              "values at the floor" for m, ens in ensembles.items()]
    lines += [f"- `{m}`: {note}" for m, ens in ensembles.items() for note in ens.notes]
    return lines + [""]
