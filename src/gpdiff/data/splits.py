"""Chronological splits of a city's time axis.

Source cities: train / validation / test fractions, in that order.

Target city (the few-shot setting): the last ``test_fraction`` of the series is the held-out test
period (the same steps whatever the number of few-shot days, so results for 1, 3 or 7 days are
comparable); the ``val_days`` calendar days just before it are the validation slice; the
``days`` calendar days just before that are the only data a method may train on. "Days" are
calendar days at the city's own interval (``days * 1440 / interval_minutes`` steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpdiff.utils.errors import GpdiffError


@dataclass(frozen=True)
class Segment:
    """Half-open step range ``[start, stop)``."""

    start: int
    stop: int

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def as_slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class Split:
    train: Segment
    val: Segment
    test: Segment
    role: str  # "source", "target", or "fit" (a forecaster's: every day but the last trains, no test period)

    def __post_init__(self) -> None:
        segs = (self.train, self.val, self.test)
        for a, b in zip(segs, segs[1:]):
            if a.stop > b.start:
                raise AssertionError(f"overlapping or unordered split segments: {a} {b}")
        if any(len(s) <= 0 for s in segs[: 2 if self.role == "fit" else 3]):
            raise AssertionError(f"empty split segment in {segs}")

    def to_dict(self) -> dict[str, object]:
        return {"role": self.role, **{k: [s.start, s.stop] for k, s in
                                      (("train", self.train), ("val", self.val), ("test", self.test))}}


@dataclass
class SourceSplit:
    """The run config's ``source_split:`` section: the chronological train/val/test fractions of every
    source city (the zoo and the anchor train on ``train``, stop early on ``val``; ``test`` is only
    reported). Raises :class:`GpdiffError` unless the fractions are positive and sum to 1."""

    train: float = 0.7
    val: float = 0.1
    test: float = 0.2

    def __post_init__(self) -> None:
        check_fractions(self.train, self.val, self.test, "source_split: ")

    @classmethod
    def from_record(cls, record: dict) -> SourceSplit:  # type: ignore[type-arg]
        """The split a zoo's config record holds: its ``source_split`` section, or (a zoo trained before the
        section existed) the fractions ``train``, ``val``, ``test`` at its top level; defaults for any absent."""
        section = record.get("source_split")
        return cls(**(section if isinstance(section, dict) else
                      {k: record[k] for k in ("train", "val", "test") if k in record}))

    def of(self, n_steps: int, name: str = "city") -> Split:
        """The split of a source series of ``n_steps`` steps (:func:`source_split`)."""
        return source_split(n_steps, self.train, self.val, self.test, name=name)


def check_fractions(train: float, val: float, test: float, where: str = "") -> None:
    """:class:`GpdiffError` unless the split fractions are positive and sum to 1 (``where``: a prefix)."""
    if not min(train, val, test) > 0 or abs(train + val + test - 1.0) > 1e-6:
        raise GpdiffError(f"{where}split fractions train={train}, val={val}, test={test} must be positive and sum to 1.")


def source_split(n_steps: int, train: float = 0.7, val: float = 0.1, test: float = 0.2,
                 min_steps: int = 1, name: str = "city") -> Split:
    """Train/val/test by fractions of the time axis (chronological)."""
    check_fractions(train, val, test)
    n_train = int(round(n_steps * train))
    n_val = int(round(n_steps * val))
    n_test = n_steps - n_train - n_val
    if min(n_train, n_val, n_test) < min_steps:
        raise GpdiffError(
            f"{name}: {n_steps} steps are too few to split {train}/{val}/{test} with at least "
            f"{min_steps} steps per part (one window); use a longer series or shorter history/horizon."
        )
    return Split(Segment(0, n_train), Segment(n_train, n_train + n_val), Segment(n_train + n_val, n_steps),
                 role="source")


def target_split(n_steps: int, steps_per_day: int, days: float = 3, val_days: float = 1,
                 test_fraction: float = 0.2, window: int = 18, name: str = "target", lag: int = 0) -> Split:
    """Few-shot split: ``days`` of training, ``val_days`` of validation, the last ``test_fraction`` as test.

    ``window`` is history + horizon and ``lag`` the seasonal context's lag in steps: the training
    days must hold at least one full window with its lagged inputs.
    """
    n_train = int(round(days * steps_per_day))
    n_val = int(round(val_days * steps_per_day))
    n_test = int(round(test_fraction * n_steps))
    if n_train < window + lag:
        lagged = f" + the seasonal context's lag {lag}" if lag else ""
        fix = ", or window.context none" if lag else ""
        raise GpdiffError(
            f"{name}: {days} target day(s) = {n_train} steps at this interval, fewer than one window "
            f"needs (history + horizon{lagged} = {window + lag} steps); use --target-days "
            f"{(window + lag) / steps_per_day:.2f} or more, or a shorter history/horizon{fix}."
        )
    if n_val < 1 or n_test < 1:
        raise GpdiffError(f"{name}: validation ({val_days} days) and test ({test_fraction:.0%}) must be non-empty.")
    test_start = n_steps - n_test
    val_start = test_start - n_val
    train_start = val_start - n_train
    if train_start < 0:
        have = n_steps / steps_per_day
        room = val_start / steps_per_day  # few-shot days that fit before validation
        fix = (f"use --target-days {room:.2f} or fewer, or a longer series" if val_start >= window + lag else
               f"even the shortest few-shot period, one window ({(window + lag) / steps_per_day:.2f} days), does "
               f"not fit: use a series of at least {(n_val + window + lag) / (1 - test_fraction) / steps_per_day:.1f} "
               "days, or fewer validation days")
        raise GpdiffError(
            f"{name}: the series has {have:.1f} days; {days} few-shot + {val_days} validation days + "
            f"the last {test_fraction:.0%} as test need more. So {fix}."
        )
    return Split(Segment(train_start, val_start), Segment(val_start, test_start), Segment(test_start, n_steps),
                 role="target")


def fit_split(n_steps: int, steps_per_day: int, val_days: float = 1, window: int = 18, name: str = "city") -> Split:
    """A forecaster's split of all of a city's data (:mod:`gpdiff.forecaster`): the last ``val_days``
    calendar days validate (early stopping, blend weights), every step before them trains, and the
    test period is the empty segment at the end (nothing is held out). Raises :class:`GpdiffError`
    when the days before the validation slice hold no training window of ``window`` steps."""
    n_val = int(round(val_days * steps_per_day))
    if n_val < 1:
        raise GpdiffError(f"{name}: val_days {val_days} is less than one step; use 1 (the default).")
    n_train = n_steps - n_val
    if n_train < window:
        need = (window + n_val) / steps_per_day
        raise GpdiffError(
            f"{name}: {n_steps} steps ({n_steps / steps_per_day:.2f} days) are too few to fit a forecaster: the "
            f"last {val_days:g} day(s) validate and the steps before them must hold one window (history + horizon = "
            f"{window} steps); give at least {need:.2f} days of data ({window + n_val} steps).")
    return Split(Segment(0, n_train), Segment(n_train, n_steps), Segment(n_steps, n_steps), role="fit")
