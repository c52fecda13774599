"""Source and target splits: chronological, disjoint, the few-shot days counted in calendar days."""
import pytest

from gpdiff.data import source_split, target_split
from gpdiff.utils.errors import GpdiffError


def test_source_split_is_chronological_and_disjoint():
    s = source_split(1000, 0.7, 0.1, 0.2)
    assert (s.train.start, s.train.stop, s.val.stop, s.test.stop) == (0, 700, 800, 1000)
    assert s.train.stop <= s.val.start and s.val.stop <= s.test.start


@pytest.mark.parametrize("days", [1, 2.5, 3, 7])
def test_target_split_counts_calendar_days_at_the_interval(days):
    spd = 288  # 5-minute data
    s = target_split(20 * spd, spd, days=days, val_days=1, test_fraction=0.2, window=18)
    assert len(s.train) == round(days * spd)
    assert len(s.val) == spd
    assert s.test.stop == 20 * spd and len(s.test) == round(0.2 * 20 * spd)
    assert s.train.stop == s.val.start and s.val.stop == s.test.start


def test_target_test_period_does_not_depend_on_days():
    a = target_split(5000, 24, days=1)
    b = target_split(5000, 24, days=7)
    assert a.test == b.test and a.val == b.val


def test_target_split_errors_are_clear():
    with pytest.raises(GpdiffError, match="fewer than one window"):
        target_split(5000, 24, days=0.5, window=18)
    with pytest.raises(GpdiffError, match=r"series has 5.0 days; .* So use --target-days 3.00 or fewer"):
        target_split(24 * 5, 24, days=4)
    target_split(24 * 5, 24, days=3)  # the advice holds
    with pytest.raises(GpdiffError, match=r"series has 2.0 days; .*one window \(0.75 days\), does not fit: use a "
                                          r"series of at least 2.2 days"):
        target_split(24 * 2, 24, days=0.75, window=18)
    target_split(53, 24, days=0.75, window=18)  # 2.2 days
