"""Every fallback a run takes on the target becomes a note naming the nodes (gpdiff.evaluation.fallbacks)."""

from __future__ import annotations

import numpy as np

from gpdiff.data import CityData, target_split
from gpdiff.evaluation.fallbacks import (
    historical_average_notes,
    lag_fallback_note,
    node_list,
    scaler_notes,
    unscored_note,
)
from gpdiff.evaluation.naive import historical_average, weekly_naive


def _data(c, floor: float = 0.05):
    return CityData(c, target_split(c.n_steps, 24, days=3), history=6, horizon=3, n_neighbors=1, min_rel_std=floor)


def test_node_list_names_few_and_counts_many():
    assert node_list(["a", "b"]) == "2 node(s) (a, b)"
    assert node_list([f"s{i}" for i in range(40)]) == "40 node(s) (s0, s1, s2, s3, s4 and 35 more)"


def test_a_clean_city_gets_no_notes(month_city):
    d = _data(month_city)
    o = d.origins("test")
    assert scaler_notes(month_city, d.scaler, 0.05) == [] and historical_average_notes(d) == []
    assert lag_fallback_note(d, o, 1) is None and lag_fallback_note(d, o, 7) is None
    assert unscored_note(month_city, d.truth(o)[1]) is None


def test_scaler_notes_name_unobserved_constant_and_floored_nodes(month_city):
    c = month_city
    few = target_split(c.n_steps, 24, days=3).train.as_slice()
    c.mask[few, 1] = False  # unobserved in the few-shot days
    c.values[few, 2, 0] = 7.0  # constant there
    c.values[few, 3, 0] = c.values[few, 3, 0] * 1e-2  # nearly idle: below 5% of the pooled std
    d = _data(c)
    notes = scaler_notes(c, d.scaler, 0.05)
    assert len(notes) == 3
    unobserved, constant, floored = notes
    assert "1 node(s) (n1)" in unobserved and "pooled mean and std" in unobserved
    assert "1 node(s) (n2)" in constant and "constant" in constant
    assert "1 node(s) (n3)" in floored and "target_scale_floor (0.05)" in floored
    assert not d.scaler.floored[[0, 1, 2]].any()  # each node is named once, under its own reason
    # the note tells the truth: the floored node's std is 5% of the pooled one
    assert np.isclose(d.scaler.std[3, 0], 0.05 * d.scaler.std[1, 0], rtol=1e-4)
    assert scaler_notes(c, _data(c, floor=0.0).scaler, 0.0)[2:] == []  # no floor, nothing floored


def test_naive_fallbacks_name_their_nodes(month_city):
    c = month_city
    d = _data(c)
    o = d.origins("test")
    week_before = o[0] - 7 * 24
    c.mask[week_before:week_before + 5, 2] = False  # the week-old value is missing for node n2
    note = lag_fallback_note(d, o, 7)
    assert note is not None and "value one week earlier" in note and "1 node(s) (n2)" in note
    missing_share = float(note.split("% of the forecasts")[0].rsplit(" ", 1)[-1]) / 100
    pred, avg = weekly_naive(d, o), historical_average(d, o)
    fell_back = (pred == avg) & ~np.isclose(pred, c.values[o[:, None] + np.arange(3) - 7 * 24].transpose(2, 0, 1, 3)[..., 0])
    assert fell_back[[0, 1, 3]].sum() == 0 and np.isclose(missing_share, fell_back.mean(), atol=1e-3)


def test_historical_average_notes_gaps_and_unobserved_nodes(month_city):
    c = month_city
    few = target_split(c.n_steps, 24, days=3).train
    c.mask[few.as_slice(), 0] = False  # no few-shot observation at all
    c.mask[[s for s in range(few.start, few.stop) if s % 24 == 5], 3] = False  # never seen at 05:00
    d = _data(c)
    gaps, never = historical_average_notes(d)
    assert "1 node(s) (n3)" in gaps and "times of day" in gaps
    assert "1 node(s) (n0)" in never and "is 0" in never
    assert (historical_average(d, d.origins("test"))[0] == 0).all()  # what the note says


def test_unscored_nodes_are_named(month_city):
    d = _data(month_city)
    o = d.origins("test")
    mask = d.truth(o)[1].copy()
    mask[[0, 2]] = False
    assert unscored_note(month_city, mask).startswith("2 node(s) (n0, n2) have no observed value in the test")


def test_blend_notes_name_the_lagged_forecasts_that_fell_back(month_city):
    from gpdiff.evaluation.fallbacks import blend_fallback_notes

    c = month_city
    d = _data(c)
    o = d.origins("test")
    assert blend_fallback_notes(d, o, ["weekly_naive", "seasonal_naive"]) == []
    c.mask[o[0] - 24:o[0] - 20, 1] = False  # the day-old value is missing for node n1
    notes = blend_fallback_notes(d, o, ["weekly_naive", "seasonal_naive", "historical_average"])
    assert len(notes) == 1 and notes[0].startswith("blend: in every blend's seasonal_naive, the historical average")
    assert "1 node(s) (n1)" in notes[0]
