"""What a long stage prints: plain lines with percent, elapsed and estimate where there is no
terminal, at an interval; tqdm's bar on a terminal."""

from __future__ import annotations

import io
import re
import sys

from gpdiff.utils.progress import PLAIN_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_a_terminal_is_plain_lines_with_percent_elapsed_and_estimate():
    out = io.StringIO()
    bar = progress_bar(range(4), file=out, mininterval=0, desc="zoo stid/small", unit="epoch")
    for i in bar:
        bar.set_postfix(val_loss=f"{1 / (i + 1):.2f}")
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text and "|" not in text  # no redraws, no bar
    lines = text.splitlines()
    assert lines[0] == "zoo stid/small: 0% (0/4 epoch) elapsed 00:00, about ? left"
    assert re.fullmatch(r"zoo stid/small: 100% \(4/4 epoch\) elapsed 00:0\d, about 00:00 left, val_loss=0\.25",
                        lines[-1]), lines[-1]
    assert all(re.match(r"zoo stid/small: \d+% \(\d/4 epoch\) elapsed \d\d:\d\d, about (\?|\d\d:\d\d) left", ln)
               for ln in lines)


def test_plain_progress_lines_come_at_the_interval_not_at_every_step():
    out = io.StringIO()
    bar = progress_bar(total=200, file=out, desc="pretrain", unit="it")  # default interval: 30 s
    for _ in range(200):
        bar.update(1)
        bar.set_postfix(loss="0.1")  # a new postfix does not force a line
    bar.close()
    assert PLAIN_INTERVAL_S >= 10
    assert [ln.split(" elapsed")[0] for ln in out.getvalue().splitlines()] == [
        "pretrain: 0% (0/200 it)", "pretrain: 100% (200/200 it)"]


def test_progress_on_a_terminal_is_tqdms_bar():
    out = _Terminal()
    for _ in progress_bar(range(3), file=out, desc="reptile"):
        pass
    assert "\r" in out.getvalue() and "reptile" in out.getvalue()


def test_a_training_loop_without_a_terminal_prints_progress_lines(two_source_cities, tmp_path, monkeypatch):
    """The per-node trainer (zoo, fine-tuning) under nohup or CI: its progress reaches a non-terminal
    stderr as plain lines (the CLI no longer turns progress off there)."""
    import gpdiff.utils.progress
    from gpdiff.cli import progress_bars
    from gpdiff.data.splits import source_split
    from gpdiff.data.windows import CityData
    from gpdiff.models import ModelConfig, get_model
    from gpdiff.zoo.nodetrain import NodeTrainConfig, NodeTrainer

    city = two_source_cities[0]
    model = get_model("stid", ModelConfig(history=12, horizon=3, ego_size=4))
    data = CityData(city, source_split(city.n_steps), history=12, horizon=3, n_neighbors=3)
    cfg = NodeTrainConfig(max_epochs=3, patience=5, steps_per_epoch=1, batch_size=4, val_windows=8)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(gpdiff.utils.progress, "PLAIN_INTERVAL_S", 0.0)  # a line at every epoch
    assert progress_bars(quiet=False) and not progress_bars(quiet=True)
    NodeTrainer(model, [data], cfg, model.init(city.n_nodes, seed=0, shared=True), tmp_path, seed=0,
                progress=progress_bars(quiet=False), desc="zoo stid").run()
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue()
    steps = [re.match(r"zoo stid: (\d+)% \((\d)/3 epoch\) elapsed", ln).groups() for ln in lines]
    assert list(dict.fromkeys(steps)) == [("0", "0"), ("33", "1"), ("67", "2"), ("100", "3")]  # closing: 100% again
    assert "training=" in lines[-1] and "val_loss=" in lines[-1]
