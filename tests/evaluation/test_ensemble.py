"""Ensembles and the conformalised ensemble (gpdiff.evaluation.ensemble), and the scoreboard's paired CRPS test."""

import numpy as np
import pandas as pd
import pytest

from gpdiff.evaluation.blend import BlendConfig
from gpdiff.evaluation.ensemble import (
    EnsembleConfig,
    calibrate_ensemble,
    crps_ensemble,
    ensemble_band,
    mean_and_spread,
    score_ensemble,
    spread_error_correlation,
)
from gpdiff.evaluation.intervals import bounds, calibrate, score
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.experiment.scoreboard import crps_tests, intervals_markdown
from gpdiff.utils.errors import GpdiffError
from tests.conftest import TINY, tiny_cities


def _heteroscedastic(seed=0, n=20, b=600, h=3, k=8):
    """Truth = mu + sigma * noise with sigma varying by node, window and step; K members drawn from the
    same distribution, so their spread estimates sigma (an informative ensemble)."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(1, 20, n)
    mu = rng.uniform(0, 100, (n, b, h))
    sigma = scale[:, None, None] * rng.uniform(0.2, 3.0, (n, b, h))
    truth = mu + sigma * rng.normal(size=(n, b, h))
    members = mu[None] + sigma[None] * rng.normal(size=(k, n, b, h))
    return members, truth, np.ones_like(truth, bool), scale


def test_identical_members_give_zero_spread_and_one_members_forecast():
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 50, (4, 10, 3))
    mean, spread = mean_and_spread(np.stack([one] * 5))
    np.testing.assert_array_equal(spread, 0.0)
    np.testing.assert_allclose(mean, one, rtol=0, atol=1e-12)
    # at zero spread the conformalised ensemble is the floor's width: split conformal scaled by the node scale
    truth = one + rng.normal(size=one.shape) * 3
    mask, scale = np.ones_like(one, bool), rng.uniform(1, 5, 4)
    cal = calibrate_ensemble(mean, spread, truth, mask, scale, [0.8, 0.95], floor=0.1)
    plain = calibrate(one, truth, mask, scale, [0.8, 0.95])
    np.testing.assert_allclose(cal.quantiles * 0.1, plain.quantiles, rtol=1e-12)
    np.testing.assert_allclose(ensemble_band(mean, spread, scale, cal, 0.1).full(), bounds(one, scale, plain), rtol=1e-10)
    # and the members' CRPS is the absolute error of their one forecast
    per_h, per_node = crps_ensemble(np.stack([one] * 5), truth, mask)
    np.testing.assert_allclose(per_h, np.abs(truth - one).mean(axis=(0, 1)), rtol=1e-10)
    np.testing.assert_allclose(per_node, np.abs(truth - one).mean(axis=(1, 2)), rtol=1e-10)


def test_conformalised_ensemble_coverage_is_nominal_and_its_spread_informative():
    members, truth, mask, scale = _heteroscedastic()
    half = truth.shape[1] // 2
    ens = score_ensemble(members[:, :, half:], members[:, :, :half], truth[:, half:], mask[:, half:],
                         truth[:, :half], mask[:, :half], scale, [0.8, 0.95], floor=0.01)
    n = truth[:, half:].size / truth.shape[-1]  # values per horizon step
    for i, level in enumerate((0.8, 0.95)):
        se = np.sqrt(level * (1 - level) / n)  # binomial sampling error of the coverage
        assert np.all(np.abs(ens.scores.coverage[i] - level) < 4 * se), (level, ens.scores.coverage[i])
    # the spread tracks the error: positive rank correlation on every node, and a better interval score
    # than split conformal intervals of the same mean with one width per node
    assert np.all(ens.spread_error > 0.2)
    mean_v, _ = mean_and_spread(members[:, :, :half])
    mean_t, _ = mean_and_spread(members[:, :, half:])
    plain_cal = calibrate(mean_v, truth[:, :half], mask[:, :half], scale, [0.8, 0.95])
    plain = score(mean_t, bounds(mean_t, scale, plain_cal), truth[:, half:], mask[:, half:], [0.8, 0.95])
    assert np.all(ens.scores.interval_score < 0.95 * plain.interval_score)
    assert np.nanmean(ens.scores.crps) < np.nanmean(plain.crps)


def test_a_daily_schedule_that_keeps_the_validation_quantiles_scores_as_the_one_calibration():
    """score_ensemble's daily path places its quantiles per window on the spread's scale: fed the validation
    quantiles for every window it scores exactly as calibrating once; fed twice them, wider intervals."""
    members, truth, mask, scale = _heteroscedastic()
    half = truth.shape[1] // 2
    args = (members[:, :, half:], members[:, :, :half], truth[:, half:], mask[:, half:], truth[:, :half],
            mask[:, :half], scale, [0.8, 0.95])
    once = score_ensemble(*args, floor=0.01)
    seen = []

    def same(cal, scores, factor=1.0):
        seen.append(scores.shape)
        return factor * np.broadcast_to(cal.quantiles[:, None], (2, scores.shape[1], scores.shape[2])), ["a note"]

    kept = score_ensemble(*args, floor=0.01, daily=same)
    assert seen == [truth[:, half:].shape] and kept.notes == ["a note"]
    for name in ("coverage", "width", "interval_score", "crps"):
        np.testing.assert_allclose(getattr(kept.scores, name), getattr(once.scores, name), rtol=1e-12)
    wider = score_ensemble(*args, floor=0.01, daily=lambda c, sc: same(c, sc, 2.0))
    np.testing.assert_allclose(wider.scores.width, 2 * once.scores.width, rtol=1e-12)


def test_uninformative_spread_still_gets_nominal_coverage():
    """Members whose spread is unrelated to the error: the correlation is near 0, the coverage still holds."""
    members, truth, mask, scale = _heteroscedastic(seed=1)
    rng = np.random.default_rng(5)
    members = members.mean(0)[None] + rng.uniform(0.1, 5, members.shape[1:])[None] * rng.normal(size=members.shape)
    half = truth.shape[1] // 2
    ens = score_ensemble(members[:, :, half:], members[:, :, :half], truth[:, half:], mask[:, half:],
                         truth[:, :half], mask[:, :half], scale, [0.8], floor=0.01)
    n = truth[:, half:].size / truth.shape[-1]
    assert np.all(np.abs(ens.scores.coverage[0] - 0.8) < 4 * np.sqrt(0.16 / n))
    assert abs(float(np.nanmedian(ens.spread_error))) < 0.1


def test_spread_error_correlation_is_spearman_per_node_and_masked():
    spread = np.array([[[1.0, 2.0, 3.0, 4.0]], [[1.0, 1.0, 1.0, 1.0]]])  # [N=2, B=1, H=4]
    mean = np.zeros_like(spread)
    truth = np.array([[[1.0, 4.0, 9.0, -100.0]], [[1.0, 2.0, 3.0, 4.0]]])
    mask = np.array([[[True, True, True, False]], [[True] * 4]])
    r = spread_error_correlation(spread, mean, truth, mask)
    assert r[0] == pytest.approx(1.0)  # the masked value (whose error would break the order) is ignored
    assert np.isnan(r[1])  # a constant spread has no rank correlation


@pytest.mark.parametrize("size", [0, -2])
def test_an_ensemble_of_fewer_than_one_member_is_refused_when_the_config_is_read(size):
    with pytest.raises(GpdiffError, match=r"ensemble.size must be a whole number of members >= 1") as e:
        RunConfig.from_dict({"ensemble": {"size": size}})
    assert "\n" not in str(e.value)
    with pytest.raises(GpdiffError, match="spread_floor must be > 0"):
        EnsembleConfig(size=2, spread_floor=0.0)
    assert RunConfig.from_yaml(None, None, ["ensemble.size=3"]).ensemble.size == 3
    assert RunConfig().ensemble.size == 1  # off by default: a run is what it was


def _iv(crps: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"experiment": "e", "seed": s, "method": m, "level": v, "coverage": 0.8, "width": 1.0,
                          "interval_score": 1.0, "crps": c} for m, c in crps.items() for s in (0, 1)
                         for v in (0.8, 0.95)])


def test_paired_crps_test_against_the_best_baseline():
    rng = np.random.default_rng(0)
    base = rng.uniform(1, 3, 30)
    per_node = {"seasonal_naive": base * 1.5, "transfer": base, "gpd": base * 0.9}
    per_node["gpd"][:3] = base[:3] * 1.05  # worse on 3 of 30 nodes
    nodes = pd.DataFrame([{"experiment": "e", "seed": s, "method": m, "node": f"n{i}", "crps": v[i]}
                          for m, v in per_node.items() for s in (0, 1) for i in range(30)])
    iv = _iv({m: float(v.mean()) for m, v in per_node.items()})
    [(t, ratio)] = crps_tests(iv, nodes)["e"]
    assert (t.a, t.b, t.n, t.lower) == ("gpd", "transfer", 30, 27)
    assert t.pvalue < 1e-4 and t.median_diff < 0 and "gpd better than transfer" in t.verdict()
    assert ratio == pytest.approx(per_node["gpd"].mean() / base.mean())
    md = intervals_markdown(iv, nodes)
    assert "`gpd`'s CRPS / the best baseline's (`transfer`)" in md and "27 of 30 nodes lower" in md
    assert "calibrated on the target's validation day (" in md  # runs from before the column: validation
    assert "on the day before for every later one" in intervals_markdown(iv.assign(calibration="daily"))
    # the conformalised ensemble rows take part: a baseline's ensemble can be the best baseline
    nodes2 = pd.concat([nodes, nodes[nodes["method"] == "transfer"].assign(method="transfer:ensemble",
                                                                           crps=lambda d: d["crps"] * 0.5)])
    iv2 = _iv({**{m: float(v.mean()) for m, v in per_node.items()}, "transfer:ensemble": float(base.mean() * 0.5)})
    [(t2, _)] = crps_tests(iv2, nodes2)["e"]
    assert t2.b == "transfer:ensemble" and "worse" in t2.verdict()


def test_run_with_an_ensemble_end_to_end_and_its_first_member_is_the_run_without(tmp_path):
    data = tiny_cities(tmp_path / "data")
    methods = ["seasonal_naive", "transfer_zero_shot", "target_only", "gpd"]
    base = {**TINY, "target": "alpha", "data_dir": str(data), "methods": methods, "blend": {"naive": ["seasonal_naive"]}}
    from gpdiff.experiment.pipeline import run_pipeline

    cache = tmp_path / "cache"
    one = run_pipeline(RunConfig.from_dict({**base, "out": str(tmp_path / "k1")}), progress=False, log=lambda m: None,
                       cache=cache)
    two = run_pipeline(RunConfig.from_dict({**base, "out": str(tmp_path / "k2"), "ensemble": {"size": 2}}),
                       progress=False, log=lambda m: None, cache=cache)
    # member 0 is the run without an ensemble (its stages reused); the other member is new work
    assert {f"methods/{m}" for m in methods} <= set(two.reused)
    assert {"ensemble/generate", "ensemble/target_only/1", "ensemble/gpd/1"} <= set(two.computed)
    assert not any(s.startswith("ensemble/") for s in one.computed)
    assert "ensemble/transfer_zero_shot/1" not in two.computed  # the same for every seed: one member
    report = (two.out / "report.md").read_text()
    assert "## Ensembles (test period)" in report and "`gpd`: median" in report
    assert "## Ensembles" not in (one.out / "report.md").read_text()
    iv = pd.read_csv(two.out / "intervals.csv", dtype={"horizon": str})
    assert {"gpd:ensemble", "target_only:ensemble"} <= set(iv["method"])
    assert np.isfinite(iv[iv["method"] == "gpd:ensemble"][["coverage", "width", "crps", "crps_ensemble"]]).all().all()
    assert "crps_ensemble" not in pd.read_csv(one.out / "intervals.csv").columns
    crps = pd.read_csv(two.out / "node_crps.csv", index_col="node")
    assert {"gpd", "gpd:ensemble", "seasonal_naive"} <= set(crps.columns) and len(crps) == 6
    # the naive and single-member rows are the same forecasts in both runs; the ensembled ones are the mean
    r1, r2 = (pd.read_csv(r.out / "results.csv", dtype={"horizon": str}).set_index(["method", "horizon"])
              for r in (one, two))
    for m in ("seasonal_naive", "transfer_zero_shot"):
        pd.testing.assert_frame_equal(r1.loc[m], r2.loc[m])
    assert not np.allclose(r1.loc["gpd"]["mae"], r2.loc["gpd"]["mae"])


def test_blending_the_members_blends_their_mean(month_city):
    """The blend weights are fitted for the members' mean and applied to each member: the mean of the
    blended members is the blended mean (the blend is affine with weights summing to 1)."""
    from gpdiff.data.splits import target_split
    from gpdiff.data.windows import CityData
    from gpdiff.evaluation import blend
    from gpdiff.evaluation.ensemble import combine

    split = target_split(month_city.n_steps, 24, 3, 1, 0.2, 15)
    data = CityData(month_city, split, history=12, horizon=3, n_neighbors=2)
    tt, tv = (data.truth(data.origins(s))[0] for s in ("test", "val"))
    rng = np.random.default_rng(0)
    test = np.stack([np.nan_to_num(tt) + rng.normal(0, 20, tt.shape) for _ in range(3)]).astype(np.float32)
    val = np.stack([np.nan_to_num(tv) + rng.normal(0, 20, tv.shape) for _ in range(3)]).astype(np.float32)
    m = combine(test, val, data, BlendConfig(["seasonal_naive"], 0.05), "speed")
    assert 0 < m.weights.min() and m.weights.max() < 1  # a real mixture, not one of the two
    fitted = blend.fit_blend(val.mean(0, dtype=np.float64).astype(np.float32), data,
                             blend.BlendConfig(["seasonal_naive"], 0.05))
    np.testing.assert_array_equal(m.weights, fitted.weights)
    naive = blend.naive_forecasts(data, data.origins("test"), ["seasonal_naive"])
    np.testing.assert_allclose(m.point, blend.apply_weights(test.mean(0, dtype=np.float64), naive, m.weights),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(m.test.mean(0), m.point, rtol=1e-5, atol=1e-4)
    unblended = combine(test, val, data, BlendConfig([], 0.05), "speed")
    assert unblended.weights is None and np.allclose(unblended.point, test.mean(0), atol=1e-5)
