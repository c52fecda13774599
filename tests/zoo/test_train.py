"""Zoo training: outputs, determinism, resume, frozen nodes, bad input; the anchored zoo, several members per
node from perturbed anchors, and trainable tensor subsets."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gpdiff.data.city import City
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import WindowConfig
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors, read_yaml
from gpdiff.zoo.anchor import AnchorConfig, fit_anchor
from gpdiff.zoo.checkpoint import CHECKPOINT
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.train import ZooConfig, load_zoo
from gpdiff.zoo.train import train_zoo as _train_zoo

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = {"steps_per_epoch": 3, "batch_size": 16, "val_windows": 16, "node_chunk": 4}
WINDOW = WindowConfig(n_neighbors=3)


FAST_ANCHOR = AnchorConfig(max_steps=20, eval_every=5, nodes_per_step=8, batch_size=8, val_nodes=16)


def train_zoo(cities: list[City], config: ZooConfig, out: Path, seed: int = 0, model: str = "stid") -> ParamCollection:
    """The zoo of base model ``model``, with a small anchor trained first when ``config.init`` is ``anchor`` (the
    default)."""
    arch = BaseModelConfig(model)
    anchor = (fit_anchor(cities, FAST_ANCHOR, model=arch, window=WINDOW, seed=seed, device="cpu", progress=False,
                         workdir=out) if config.init == "anchor" else None)
    return _train_zoo(cities, config, model=arch, window=WINDOW, workdir=out, seed=seed, device="cpu", progress=False,
                      anchor=anchor)


@pytest.fixture(scope="module")
def cities(two_source_cities) -> list[City]:
    return two_source_cities


ZOO_FAST = {"steps_per_epoch": 3, "batch_size": 16, "val_windows": 16, "node_chunk": 4, "max_epochs": 3}
SMALL = AnchorConfig(max_steps=30, eval_every=5, nodes_per_step=8, batch_size=8, val_nodes=16, patience=10)


def test_train_outputs(cities, tmp_path):
    cfg = ZooConfig(max_epochs=3, **FAST)
    col = train_zoo(cities, cfg, tmp_path)
    assert col.params.shape == (11, col.params.shape[1])
    assert col.cities == ["alpha"] * 6 + ["beta"] * 5
    assert col.node_ids[:2] == ["n0", "n1"] and col.model == BaseModelConfig().name == "stid"
    assert set(col.metrics) >= {"val_mae", "naive_mae", "val_loss", "best_epoch", "epochs"}
    assert all(torch.isfinite(v).all() for v in col.metrics.values())
    saved = load_zoo(tmp_path)
    assert torch.equal(saved.params, col.params) and saved.spec == col.spec
    assert read_yaml(tmp_path / "config.yaml")["cities"] == ["alpha", "beta"]
    # the collection holds the best parameters of the checkpoint
    tensors, _ = load_tensors(tmp_path / CHECKPOINT)
    assert all(torch.equal(v, tensors[f"best.{k}"]) for k, v in col.as_dict().items())


def test_deterministic(cities, tmp_path):
    cfg = ZooConfig(max_epochs=2, **FAST)
    a = train_zoo(cities, cfg, tmp_path / "a")
    b = train_zoo(cities, cfg, tmp_path / "b")
    assert torch.equal(a.params, b.params)
    c = train_zoo(cities, ZooConfig(max_epochs=2, **FAST), tmp_path / "c", seed=1)
    assert not torch.equal(a.params, c.params)


def test_resume_continues_exactly(cities, tmp_path):
    cfg = {"patience": 1, **FAST}
    full = train_zoo(cities, ZooConfig(max_epochs=4, **cfg), tmp_path / "full")
    train_zoo(cities, ZooConfig(max_epochs=2, **cfg), tmp_path / "split")
    before, meta = load_tensors(tmp_path / "split" / CHECKPOINT)
    assert meta["epoch"] == 2
    resumed = train_zoo(cities, ZooConfig(max_epochs=4, **cfg), tmp_path / "split")
    after, meta = load_tensors(tmp_path / "split" / CHECKPOINT)
    assert meta["epoch"] == 4 or not after["active"].any()
    assert torch.equal(resumed.params, full.params)  # same numbers as an uninterrupted run
    stopped = ~before["active"].bool()
    assert stopped.any(), "patience=1 should stop some node within two epochs"
    for key in before:
        if key.split(".")[0] in ("params", "best", "exp_avg", "exp_avg_sq"):
            assert torch.equal(before[key][stopped], after[key][stopped]), key  # frozen nodes did not move
    assert torch.equal(before["best_val"][stopped], after["best_val"][stopped])


def test_resume_with_other_config_fails(cities, tmp_path):
    train_zoo(cities, ZooConfig(max_epochs=1, **FAST), tmp_path)
    with pytest.raises(GpdiffError, match="lr"):
        train_zoo(cities, ZooConfig(max_epochs=1, **{**FAST, "lr": 0.5}), tmp_path)
    with pytest.raises(GpdiffError, match="cities"):
        train_zoo(cities[:1], ZooConfig(max_epochs=1, **FAST), tmp_path)


@pytest.mark.parametrize("name", ["gwn", "stid"])
def test_independent_init_and_other_models(cities, tmp_path, name):
    col = train_zoo(cities, ZooConfig(max_epochs=1, init="independent", **FAST), tmp_path / name, model=name)
    assert col.model == name and torch.isfinite(col.params).all()


def test_city_without_graph(tmp_path):
    city = synthetic_city("lonely", n_nodes=4, days=6)
    city.adjacency[:] = 0
    with pytest.raises(GpdiffError, match="no graph edges.*stid"):
        train_zoo([city], ZooConfig(max_epochs=1, **FAST), tmp_path, model="stgcn")
    col = train_zoo([city], ZooConfig(max_epochs=1, **FAST), tmp_path, model="stid")
    assert len(col) == 4


def test_too_few_validation_windows(tmp_path):
    city = synthetic_city("short", n_nodes=3, days=2)  # 48 steps: a 5-step validation period
    with pytest.raises(GpdiffError, match="val period"):
        train_zoo([city], ZooConfig(max_epochs=1, **FAST), tmp_path)


def test_bad_config():
    with pytest.raises(GpdiffError, match="unknown base model"):
        BaseModelConfig("lstm")
    with pytest.raises(GpdiffError, match="preset"):
        BaseModelConfig(preset="tiny")
    with pytest.raises(GpdiffError, match="unknown ZooConfig field"):  # the base model has a section of its own
        ZooConfig.from_dict({"model": "stid"})
    with pytest.raises(GpdiffError, match="unknown ZooConfig field"):
        ZooConfig.from_dict({"epochs": 3})


# ------------------------------------------------------------------ anchored zoo
def test_anchored_zoo_starts_from_the_anchor_and_l2_init_keeps_it_near(cities, tmp_path: Path) -> None:
    cfg = ZooConfig(**ZOO_FAST)
    anchor = fit_anchor(cities, SMALL, window=WINDOW, workdir=tmp_path / "a", progress=False).params
    with pytest.raises(GpdiffError, match="zoo.init is 'anchor' but the anchor given is none"):
        _train_zoo(cities, cfg, window=WINDOW, workdir=tmp_path / "none", device="cpu", progress=False)
    free = _train_zoo(cities, cfg, window=WINDOW, workdir=tmp_path / "free", device="cpu", progress=False, anchor=anchor)
    pulled = _train_zoo(cities, replace(cfg, l2_init=10.0), window=WINDOW, workdir=tmp_path / "pulled", device="cpu",
                       progress=False, anchor=anchor)
    assert torch.equal(free.anchor, anchor) and torch.equal(ParamCollection.load(tmp_path / "free").anchor, anchor)
    assert free.config["init"] == "anchor"
    # a node that never improved keeps the anchor exactly; the pull shrinks every member's distance to it
    same = free.metrics["best_epoch"] == 0
    assert torch.equal(free.params[same], anchor.expand(int(same.sum()), -1))
    assert pulled.deltas().norm(dim=1).mean() < 0.5 * free.deltas().norm(dim=1).mean()
    shared = _train_zoo(cities, replace(cfg, init="shared_random"), window=WINDOW, workdir=tmp_path / "s", device="cpu",
                       progress=False)
    assert shared.anchor is None
    with pytest.raises(GpdiffError, match="no anchor"):
        shared.deltas()
    with pytest.raises(GpdiffError, match="zoo.init"):
        ZooConfig(init="pretrained")


def test_several_members_per_node_from_perturbed_anchors(cities, tmp_path: Path) -> None:
    cfg = ZooConfig(**ZOO_FAST)
    anchor = fit_anchor(cities, SMALL, window=WINDOW, workdir=tmp_path / "a", progress=False).params
    one = _train_zoo(cities, cfg, window=WINDOW, workdir=tmp_path / "one", device="cpu", progress=False, anchor=anchor)
    three = replace(cfg, members=3, member_noise=0.05)
    zoo = _train_zoo(cities, three, window=WINDOW, workdir=tmp_path / "three", device="cpu", progress=False, anchor=anchor)
    n, p = one.params.shape
    assert zoo.params.shape == (n, p) and zoo.members is not None and zoo.members.shape == (n, 2, p)
    assert zoo.n_members == 3 and one.n_members == 1 and one.all_members() is one
    # member 0 is the one-member zoo's training (chunks hold other nodes, so equal to rounding)
    torch.testing.assert_close(zoo.params, one.params, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(zoo.metrics["val_mae"], one.metrics["val_mae"], atol=1e-3, rtol=1e-4)
    # the other members start elsewhere and end elsewhere, and are scored
    assert (zoo.members - zoo.params.unsqueeze(1)).norm(dim=2).min() > 0
    assert zoo.metrics["members_val_mae"].shape == (n,) and torch.isfinite(zoo.metrics["members_val_mae"]).all()
    again = _train_zoo(cities, three, window=WINDOW, workdir=tmp_path / "again", device="cpu", progress=False, anchor=anchor)
    assert torch.equal(again.members, zoo.members)
    # saved, loaded and selected with its members; all_members is member-major with the keys repeated
    loaded = ParamCollection.load(tmp_path / "three")
    assert torch.equal(loaded.members, zoo.members) and torch.equal(loaded.anchor, anchor)
    rows = loaded.all_members()
    assert rows.params.shape == (3 * n, p) and rows.keys() == loaded.keys() * 3 and rows.members is None
    assert torch.equal(rows.params[n:2 * n], zoo.members[:, 0]) and torch.equal(rows.params[2 * n:], zoo.members[:, 1])
    picked = loaded.take([4, 1])
    assert torch.equal(picked.members, zoo.members[[4, 1]])
    assert picked.node_ids == [loaded.node_ids[4], loaded.node_ids[1]]
    with pytest.raises(GpdiffError, match=r"expected \[11, M - 1, "):
        replace(loaded, members=zoo.members[:3])
    with pytest.raises(GpdiffError, match="members must be at least 1"):
        ZooConfig(members=0)


def test_perturbed_scales_with_the_tensors_rms() -> None:
    from gpdiff.zoo.train import perturbed

    start = torch.full((200, 50), 3.0)
    assert torch.equal(perturbed(start, 0.0, (0, 1, 0)), start)
    draw = perturbed(start, 0.1, (0, 1, 0)) - start
    assert abs(float(draw.std()) - 0.3) < 0.01 and abs(float(draw.mean())) < 0.01
    assert torch.equal(perturbed(start, 0.1, (0, 1, 0)), perturbed(start, 0.1, (0, 1, 0)))
    for other in ((0, 2, 0), (1, 1, 0), (0, 1, 1)):  # another member, seed or tensor: another draw
        assert not torch.equal(perturbed(start, 0.1, (0, 1, 0)), perturbed(start, 0.1, other))


# ------------------------------------------------------------------ subset: members differ in some tensors
def test_trainable_tensors_train_and_the_others_stay_at_the_anchor(cities, tmp_path: Path) -> None:
    cfg, stgcn = ZooConfig(**ZOO_FAST), BaseModelConfig("stgcn")  # its read-out is the one tensor "fc"
    anchor = fit_anchor(cities, SMALL, model=stgcn, window=WINDOW, workdir=tmp_path / "a", progress=False).params
    head = _train_zoo(cities, replace(cfg, trainable=["fc"]), model=stgcn, window=WINDOW, workdir=tmp_path / "head", device="cpu", progress=False,
                     anchor=anchor)
    spec = head.spec
    start = 0
    for s in spec:
        block = head.params[:, start:start + s.numel]
        if s.name == "fc":
            assert not torch.equal(block, anchor[start:start + s.numel].expand_as(block))
        else:
            assert torch.equal(block, anchor[start:start + s.numel].expand_as(block)), s.name
        start += s.numel
    with pytest.raises(GpdiffError, match=r"trainable \['nope\*'\] match.*tc1.conv1"):
        _train_zoo(cities, replace(cfg, trainable=["nope*"]), model=stgcn, window=WINDOW, workdir=tmp_path / "bad", device="cpu", progress=False,
                  anchor=anchor)
