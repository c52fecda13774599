"""The anchor, city-balanced source sampling, the anchored zoo, residual generation and knn_residual."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gpdiff.data.windows import WindowConfig
from gpdiff.diffusion import DiffusionConfig, pretrain
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.methods.knn_residual import KnnResidualConfig, holdout_rows, initial, select
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.anchor import AnchorConfig, fit_anchor, load_anchor, train_anchor
from gpdiff.zoo.params import ParamCollection, Standardizer
from gpdiff.zoo.sourcepool import SourcePool, city_weights, prepare_cities, row_weights
from gpdiff.zoo.train import ZooConfig, source_val_loss, train_zoo

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW = WindowConfig(n_neighbors=3)
FAST = {"steps_per_epoch": 3, "batch_size": 16, "val_windows": 16, "node_chunk": 4, "max_epochs": 3}
SMALL = AnchorConfig(max_steps=30, eval_every=5, nodes_per_step=8, batch_size=8, val_nodes=16, patience=10)


@pytest.fixture(scope="module")
def cities(two_source_cities):
    return two_source_cities


@pytest.fixture(scope="module")
def setup(cities):
    cfg = ZooConfig(**FAST)
    model = cfg.build_model(WINDOW)
    return cfg, model, prepare_cities(cities, WINDOW, cfg, model)


# ------------------------------------------------------------------ balanced sampling
def test_city_weights_and_row_weights_are_exact() -> None:
    np.testing.assert_allclose(city_weights([675, 66, 80], "city"), [1 / 3] * 3)
    np.testing.assert_allclose(city_weights([3, 1], "proportional"), [0.75, 0.25])
    w = row_weights(["a", "a", "a", "b"], "city")
    torch.testing.assert_close(w, torch.tensor([1 / 6, 1 / 6, 1 / 6, 1 / 2], dtype=torch.float64))
    torch.testing.assert_close(row_weights(["a", "a", "b"], "proportional"), torch.full((3,), 1 / 3, dtype=torch.float64))
    with pytest.raises(GpdiffError, match="balance"):
        city_weights([1, 2], "even")


def test_source_pool_draws_cities_by_balance(setup) -> None:
    _, model, data = setup
    for balance, expected in (("city", [0.5, 0.5]), ("proportional", [6 / 11, 5 / 11])):
        pool = SourcePool(data, model.config.in_channels, balance)
        drawn = pool.draw_nodes(4000, torch.Generator().manual_seed(0))
        counts = np.array([sum(int(n.numel()) for c, n in drawn if c == i) for i in range(2)])
        np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.03)


# ------------------------------------------------------------------ anchor
def test_anchor_learns_and_is_deterministic(setup) -> None:
    cfg, model, data = setup
    a, rec = train_anchor(model, data, SMALL, seed=0, progress=False)
    b, _ = train_anchor(model, data, SMALL, seed=0, progress=False)
    assert a.shape == (model.n_params,) and torch.equal(a, b)
    assert rec["history"][0][1] >= rec["val_loss"] and rec["cities"] == {"alpha": 6, "beta": 5}
    init = model.init(1, seed=0, shared=True)
    start = source_val_loss(model, torch.cat([v.reshape(1, -1) for v in init.values()], 1).expand(11, -1), data,
                            [(d.city.name, n) for d in data for n in d.city.node_ids])
    trained = source_val_loss(model, a.expand(11, -1), data, [(d.city.name, n) for d in data for n in d.city.node_ids])
    assert trained.mean() < start.mean()


def test_an_anchor_that_never_beats_its_start_is_its_start(setup) -> None:
    cfg, model, data = setup
    frozen = replace(SMALL, lr=1e-30, max_steps=10, patience=1)  # no step changes any forecast
    params, rec = train_anchor(model, data, frozen, seed=0, progress=False)
    start = torch.cat([v.reshape(1, -1) for v in model.init(1, seed=0, shared=True).values()], 1)[0]
    assert rec["improved"] is False and rec["val_loss"] == rec["initial_val_loss"]
    assert torch.equal(params, start)
    _, learned = train_anchor(model, data, SMALL, seed=0, progress=False)
    assert learned["improved"] is True and learned["val_loss"] < learned["initial_val_loss"]


def test_fit_anchor_reuses_its_folder_and_refuses_other_settings(cities, tmp_path: Path) -> None:
    cfg = ZooConfig(**FAST)
    a = fit_anchor(cities, WINDOW, cfg, SMALL, tmp_path, progress=False)
    stamp = (tmp_path / "anchor.safetensors").stat().st_mtime_ns
    again = fit_anchor(cities, WINDOW, replace(cfg, lr=0.1), SMALL, tmp_path, progress=False)  # lr: not the anchor's
    assert torch.equal(a, again) and (tmp_path / "anchor.safetensors").stat().st_mtime_ns == stamp
    assert torch.equal(load_anchor(tmp_path)[0], a)
    with pytest.raises(GpdiffError, match="other settings or cities"):
        fit_anchor(cities, WINDOW, cfg, replace(SMALL, lr=0.01), tmp_path, progress=False)


# ------------------------------------------------------------------ anchored zoo
def test_anchored_zoo_starts_from_the_anchor_and_l2_init_keeps_it_near(cities, tmp_path: Path) -> None:
    cfg = ZooConfig(**FAST)
    anchor = fit_anchor(cities, WINDOW, cfg, SMALL, tmp_path / "a", progress=False)
    with pytest.raises(GpdiffError, match="zoo.init is 'anchor' but the anchor given is none"):
        train_zoo(cities, WINDOW, cfg, tmp_path / "none", device="cpu", progress=False)
    free = train_zoo(cities, WINDOW, cfg, tmp_path / "free", device="cpu", progress=False, anchor=anchor)
    pulled = train_zoo(cities, WINDOW, replace(cfg, l2_init=10.0), tmp_path / "pulled", device="cpu",
                       progress=False, anchor=anchor)
    assert torch.equal(free.anchor, anchor) and torch.equal(ParamCollection.load(tmp_path / "free").anchor, anchor)
    assert free.config["init"] == "anchor"
    # a node that never improved keeps the anchor exactly; the pull shrinks every member's distance to it
    same = free.metrics["best_epoch"] == 0
    assert torch.equal(free.params[same], anchor.expand(int(same.sum()), -1))
    assert pulled.deltas().norm(dim=1).mean() < 0.5 * free.deltas().norm(dim=1).mean()
    shared = train_zoo(cities, WINDOW, replace(cfg, init="shared_random"), tmp_path / "s", device="cpu",
                       progress=False)
    assert shared.anchor is None
    with pytest.raises(GpdiffError, match="no anchor"):
        shared.deltas()
    with pytest.raises(GpdiffError, match="zoo.init"):
        ZooConfig(init="pretrained")


def test_several_members_per_node_from_perturbed_anchors(cities, tmp_path: Path) -> None:
    cfg = ZooConfig(**FAST)
    anchor = fit_anchor(cities, WINDOW, cfg, SMALL, tmp_path / "a", progress=False)
    one = train_zoo(cities, WINDOW, cfg, tmp_path / "one", device="cpu", progress=False, anchor=anchor)
    three = replace(cfg, members=3, member_noise=0.05)
    zoo = train_zoo(cities, WINDOW, three, tmp_path / "three", device="cpu", progress=False, anchor=anchor)
    n, p = one.params.shape
    assert zoo.params.shape == (n, p) and zoo.members is not None and zoo.members.shape == (n, 2, p)
    assert zoo.n_members == 3 and one.n_members == 1 and one.all_members() is one
    # member 0 is the one-member zoo's training (chunks hold other nodes, so equal to rounding)
    torch.testing.assert_close(zoo.params, one.params, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(zoo.metrics["val_mae"], one.metrics["val_mae"], atol=1e-3, rtol=1e-4)
    # the other members start elsewhere and end elsewhere, and are scored
    assert (zoo.members - zoo.params.unsqueeze(1)).norm(dim=2).min() > 0
    assert zoo.metrics["members_val_mae"].shape == (n,) and torch.isfinite(zoo.metrics["members_val_mae"]).all()
    again = train_zoo(cities, WINDOW, three, tmp_path / "again", device="cpu", progress=False, anchor=anchor)
    assert torch.equal(again.members, zoo.members)
    # saved, loaded and selected with its members; all_members is member-major with the keys repeated
    loaded = ParamCollection.load(tmp_path / "three")
    assert torch.equal(loaded.members, zoo.members) and torch.equal(loaded.anchor, anchor)
    rows = loaded.all_members()
    assert rows.params.shape == (3 * n, p) and rows.keys() == loaded.keys() * 3 and rows.members is None
    assert torch.equal(rows.params[n:2 * n], zoo.members[:, 0]) and torch.equal(rows.params[2 * n:], zoo.members[:, 1])
    picked = loaded.subset([4, 1])
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


def test_the_denoiser_trains_on_every_member() -> None:
    zoo, prompts = _anchored_toy()
    g = torch.Generator().manual_seed(3)
    members = zoo.params.unsqueeze(1) + 0.01 * torch.randn(len(zoo), 2, zoo.params.shape[1], generator=g)
    several = replace(zoo, members=members)
    tiny = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "iters": 3, "batch_size": 8}
    model = pretrain(several, prompts, DiffusionConfig.from_dict(tiny), progress=False, device="cpu")
    assert model.info["n_nodes"] == 3 * len(zoo)
    assert model.info["fingerprint"] != pretrain(zoo, prompts, DiffusionConfig.from_dict(tiny), progress=False,
                                                 device="cpu").info["fingerprint"]


def test_old_settings_name_their_new_place() -> None:
    with pytest.raises(GpdiffError, match="'zoo.shared_init' has moved to 'zoo.init'"):
        RunConfig.from_dict({"zoo": {"shared_init": False}})
    with pytest.raises(GpdiffError, match="set anchor.max_steps instead"):
        RunConfig.from_dict({"methods": {"transfer": {"max_steps": 10}}})
    with pytest.raises(GpdiffError, match="'diffusion.center' has moved to 'diffusion.reference'"):
        RunConfig.from_dict({"diffusion": {"center": True}})


# ------------------------------------------------------------------ residual generation
def test_standardizer_per_coordinate_and_uncentred_round_trip() -> None:
    from gpdiff.models.base import ParamSpec

    spec = [ParamSpec("a", (3, 2), "temporal"), ParamSpec("b", (4,), "temporal")]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 10, generator=g) * torch.linspace(1, 5, 10) + 3
    for per in Standardizer.PER:
        for center in (True, False):
            s = Standardizer.fit(x, spec, per, center)
            torch.testing.assert_close(s.inverse_transform(s.transform(x)), x)
            if not center:
                assert torch.equal(s.inverse_transform(torch.zeros(1, 10)), torch.zeros(1, 10))
    z = Standardizer.fit(x, spec, "coordinate").transform(x)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(10), atol=1e-4, rtol=0)
    still = x.clone()
    still[:, 0] = 3.0  # a coordinate that never moves gets COORD_FLOOR x its tensor's scale, not ~0
    floor = Standardizer.fit(still, spec, "coordinate")
    tensor_scale = float((still[:, :6] - still[:, :6].mean(0)).square().mean().sqrt())
    assert float(floor.std[0]) == pytest.approx(Standardizer.COORD_FLOOR * tensor_scale, rel=1e-5)
    t = Standardizer.fit(x, spec, "tensor").transform(x)
    assert abs(float(t[:, :6].std(unbiased=False)) - 1) < 1e-4 and abs(float(t[:, :6].std(0).std())) > 0.1
    old = {"std_mean": torch.tensor([1.0, 2.0]), "std_std": torch.tensor([3.0, 4.0]), "std_sizes": torch.tensor([6, 4])}
    loaded = Standardizer.from_state(old)  # the per-tensor format written before
    assert loaded.mean.tolist() == [1.0] * 6 + [2.0] * 4 and loaded.std.tolist() == [3.0] * 6 + [4.0] * 4
    with pytest.raises(GpdiffError, match="unknown standardisation"):
        Standardizer.fit(x, spec, "node")


def _anchored_toy() -> tuple[ParamCollection, object]:
    from tests.conftest import toy

    zoo, prompts = toy()
    anchor = torch.linspace(-1, 1, zoo.params.shape[1])
    zoo = replace(zoo, params=anchor + 0.1 * zoo.params, anchor=anchor, cities=["c"] * 30 + ["d"] * 10)
    prompts = replace(prompts, cities=zoo.cities)
    return zoo, prompts


def test_residual_generation_a_zero_sample_is_the_anchor(tmp_path: Path) -> None:
    zoo, prompts = _anchored_toy()
    tiny = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "iters": 5, "batch_size": 8}
    for standardize in Standardizer.PER:
        cfg = DiffusionConfig.from_dict({**tiny, "standardize": standardize})
        model = pretrain(zoo, prompts, cfg, progress=False, device="cpu")
        zero = torch.zeros(1, model.shape.n_tokens, model.shape.token_dim)
        torch.testing.assert_close(model.decode(zero)[0], zoo.anchor, atol=1e-6, rtol=0)
        torch.testing.assert_close(model.decode(model.encode(zoo.params)), zoo.params, atol=1e-5, rtol=0)
    from gpdiff.diffusion import generate

    two = generate(model, prompts, "ddim", 3, seed=5, num_samples=2)
    one = [generate(model, prompts, "ddim", 3, seed=s).params for s in (5, 6)]
    torch.testing.assert_close(two.params, (one[0] + one[1]) / 2)
    assert two.config["generated"]["num_samples"] == 2
    with pytest.raises(GpdiffError, match="num_samples must be at least 1"):
        generate(model, prompts, "ddim", 3, num_samples=0)
    mean = pretrain(zoo, prompts, DiffusionConfig.from_dict({**tiny, "reference": "mean"}), progress=False, device="cpu")
    zero = torch.zeros(1, mean.shape.n_tokens, mean.shape.token_dim)
    torch.testing.assert_close(mean.decode(zero)[0], zoo.params.mean(0), atol=1e-5, rtol=0)
    with pytest.raises(GpdiffError, match="the zoo has no anchor"):
        pretrain(replace(zoo, anchor=None), prompts, DiffusionConfig.from_dict({**tiny, "reference": "anchor"}),
                 progress=False, device="cpu")


# ------------------------------------------------------------------ knn_residual
def test_holdout_rows_cover_every_city() -> None:
    cities = ["a"] * 10 + ["b"] * 3 + ["c"]
    kept, held = holdout_rows(cities, 0.2, seed=0)
    assert sorted(kept.tolist() + held.tolist()) == list(range(14))
    assert [cities[i] for i in held.tolist()].count("a") == 2 and [cities[i] for i in held.tolist()].count("b") == 1
    assert "c" in [cities[i] for i in held.tolist()]  # a one-node city is held out (nothing to keep)
    assert torch.equal(holdout_rows(cities, 0.2, seed=0)[1], held)


def test_knn_residual_selects_on_sources_and_zero_shrinkage_is_the_anchor(cities, tmp_path: Path) -> None:
    from gpdiff.prompts import PromptSet

    cfg = ZooConfig(**FAST)
    anchor = fit_anchor(cities, WINDOW, cfg, SMALL, tmp_path / "a", progress=False)
    zoo = train_zoo(cities, WINDOW, cfg, tmp_path / "z", device="cpu", progress=False, anchor=anchor)
    g = torch.Generator().manual_seed(0)
    prompts = PromptSet(torch.randn(len(zoo), 4, generator=g), torch.randn(len(zoo), 3, generator=g),
                        list(zoo.node_ids), list(zoo.cities), {})
    model = cfg.build_model(WINDOW)
    data = prepare_cities(cities, WINDOW, cfg, model)
    k, s, scores = select(model, zoo, prompts, data, KnnResidualConfig(ks=[1, 2], shrinkages=[0.0, 1.0]), seed=0)
    assert len(scores) == 3  # s = 0 once (the anchor, whatever k), s = 1 for k = 1 and 2
    assert min(r["loss"] for r in scores) == next(r["loss"] for r in scores if (r["k"], r["shrinkage"]) == (k, s))
    assert torch.equal(initial(zoo, prompts, prompts, 2, 0.0), anchor.expand(len(zoo), -1))
    own = initial(zoo, prompts, prompts, 1, 1.0)  # each node's nearest prompt is its own
    torch.testing.assert_close(own, zoo.params)


# ------------------------------------------------------------------ subset: members differ in some tensors
def test_trainable_tensors_train_and_the_others_stay_at_the_anchor(cities, tmp_path: Path) -> None:
    cfg = ZooConfig(model="stgcn", **FAST)  # its read-out is the one tensor "fc"
    anchor = fit_anchor(cities, WINDOW, cfg, SMALL, tmp_path / "a", progress=False)
    head = train_zoo(cities, WINDOW, replace(cfg, trainable=["fc"]), tmp_path / "head", device="cpu", progress=False,
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
        train_zoo(cities, WINDOW, replace(cfg, trainable=["nope*"]), tmp_path / "bad", device="cpu", progress=False,
                  anchor=anchor)


def test_subset_generation_makes_only_the_changed_tensors(tmp_path: Path) -> None:
    from gpdiff.diffusion import generate
    from gpdiff.diffusion.train import DiffusionModel, subset_columns

    zoo, prompts = _anchored_toy()
    names = [s.name for s in zoo.spec]
    frozen = subset_columns(zoo.spec, names[:-1])
    params = zoo.params.clone()
    params[:, frozen] = zoo.anchor[frozen]  # only the last tensor differs from the anchor
    zoo = replace(zoo, params=params)
    tiny = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "iters": 5, "batch_size": 8}
    model = pretrain(zoo, prompts, DiffusionConfig.from_dict(tiny), tmp_path / "d", progress=False, device="cpu")
    assert model.generated == names[-1:] and model.tokenizer.n_params == zoo.spec[-1].numel
    every = pretrain(zoo, prompts, DiffusionConfig.from_dict({**tiny, "subset": "all"}), progress=False, device="cpu")
    assert every.generated == names and every.shape.n_tokens > model.shape.n_tokens
    torch.testing.assert_close(model.decode(model.encode(zoo.params)), zoo.params, atol=1e-5, rtol=0)
    loaded = DiffusionModel.load(tmp_path / "d", "cpu")
    assert loaded.generated == model.generated
    out = generate(loaded, prompts, "ddim", 3, seed=1).params
    assert out.shape == zoo.params.shape and torch.equal(out[:, frozen], zoo.anchor[frozen].expand(len(zoo), -1))
    assert not torch.equal(out[:, -1], zoo.anchor[-1].expand(len(zoo)))
