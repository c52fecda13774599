import numpy as np
import pytest

from gpdiff.evaluation.metrics import masked_metrics


def test_hand_computed_values():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    true = np.array([[2.0, 2.0], [1.0, 8.0]])
    m = masked_metrics(pred, true)
    # step 1 errors: -1, 2 ; step 2 errors: 0, -4
    np.testing.assert_allclose(m.mae, [1.5, 2.0])
    np.testing.assert_allclose(m.rmse, [np.sqrt(2.5), np.sqrt(8.0)])
    np.testing.assert_allclose(m.mape, [(0.5 + 2.0) / 2, (0 + 0.5) / 2])
    assert m.mae_avg == pytest.approx(7 / 4)
    assert m.rmse_avg == pytest.approx(np.sqrt(21 / 4))
    assert m.mape_avg == pytest.approx(3.0 / 4)


def test_masked_and_nan_entries_are_ignored():
    pred = np.array([[1.0, 5.0], [3.0, 100.0]])
    true = np.array([[2.0, np.nan], [1.0, 4.0]])
    mask = np.array([[True, True], [True, False]])
    m = masked_metrics(pred, true, mask)
    np.testing.assert_allclose(m.mae, [1.5, np.nan])
    assert list(m.count) == [2, 0]
    assert m.mae_avg == pytest.approx(1.5)


def test_mape_skips_zero_targets():
    m = masked_metrics(np.array([[1.0, 1.0]]), np.array([[0.0, 2.0]]))
    assert m.mae_avg == pytest.approx(1.0)
    assert m.mape_avg == pytest.approx(0.5)
    assert np.isnan(m.mape[0])


def test_rows_layout():
    rows = masked_metrics(np.zeros((3, 2)), np.ones((3, 2))).rows("x")
    assert [r["horizon"] for r in rows] == ["1", "2", "avg"]
    assert set(rows[0]) == {"method", "horizon", "mae", "rmse", "mape"}
