"""The scoreboard's statistics: the paired test's p-value on a case where it is known."""

from __future__ import annotations

import numpy as np
import pytest

from gpdiff.experiment.scoreboard import paired_test


def test_paired_test_known_p_value():
    """Six nodes, GPD better on every one: the exact two-sided Wilcoxon p is 2 / 2**6."""
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, np.nan])
    b = a + np.array([0.5, 0.1, 0.3, 0.6, 0.2, 0.4, 1.0])
    t = paired_test(a, b, "gpd", "transfer")
    assert t.n == 6 and t.pvalue == pytest.approx(0.03125) and t.median_diff < 0
    assert t.verdict() == "gpd better than transfer on the typical node (6 of 6 nodes lower; p = 0.0312)"
    worse = paired_test(b, a, "gpd", "transfer")
    assert worse.verdict().startswith("gpd worse")
    assert "no significant difference" in paired_test(a[:6], a[:6] + [0.1, -0.1, 0.2, -0.2, 0.3, -0.3]).verdict()
