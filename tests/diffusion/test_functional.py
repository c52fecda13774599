"""The denoiser's functional loss: clean-sample estimates, scoring zoo rows on their own windows, training."""

from __future__ import annotations

import pytest
import torch

from gpdiff.data.city import City
from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import WindowConfig
from gpdiff.diffusion import DiffusionConfig, NoiseSchedule, ScheduleConfig, fit
from gpdiff.diffusion.functional import FunctionalLoss
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils.config import merge
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import ParamCollection, flatten
from gpdiff.zoo.sourcepool import prepare_cities

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW = WindowConfig(n_neighbors=3)


@pytest.mark.parametrize("kind", ["v_prediction", "epsilon", "sample"])
def test_predict_x0_inverts_the_training_target(kind: str) -> None:
    schedule = NoiseSchedule(ScheduleConfig(prediction_type=kind))
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 4, 5, generator=g), torch.randn(6, 4, 5, generator=g)
    t = torch.tensor([0, 1, 100, 250, 400, 499])
    xt = schedule.add_noise(x0, noise, t)
    got = schedule.predict_x0(schedule.target(x0, noise, t), xt, t)
    torch.testing.assert_close(got, x0, atol=2e-4, rtol=1e-4)
    assert schedule.alpha_bar(t)[0] > schedule.alpha_bar(t)[-1] > 0


@pytest.fixture(scope="module")
def setup(two_source_cities: list[City]):  # type: ignore[no-untyped-def]
    """A zoo of per-node random parameters of STGCN-small over the two tiny source cities, their
    prompts, and the functional loss over the cities' training windows."""
    model = BaseModelConfig().build(WINDOW)
    data = prepare_cities(two_source_cities, WINDOW, SourceSplit(), model, "cpu")
    cities = [c.name for c in two_source_cities for _ in range(c.n_nodes)]
    ids = [str(n) for c in two_source_cities for n in c.node_ids]
    params = flatten(model.init(len(ids), seed=0, shared=False), model.spec())
    zoo = ParamCollection(params, ids, cities, model.name, model.config.to_dict(), model.spec())
    g = torch.Generator().manual_seed(1)
    spatial, temporal = torch.randn(len(ids), 4, generator=g), torch.randn(len(ids), 6, generator=g)
    return model, data, zoo, spatial, temporal, FunctionalLoss(model, data, cities, ids, windows=4)


def test_scores_each_row_on_its_own_node_and_keeps_the_row_order(setup) -> None:  # type: ignore[no-untyped-def]
    model, data, zoo, _, _, functional = setup
    a, b = 0, len(zoo) - 1  # one node of each city: the windows are drawn city by city, whatever the order
    params = zoo.params[[a, b]].clone().requires_grad_()
    fwd = functional(params, torch.tensor([a, b]), torch.Generator().manual_seed(3))
    back = functional(params[[1, 0]], torch.tensor([b, a]), torch.Generator().manual_seed(3))
    assert fwd.shape == (2,) and torch.isfinite(fwd).all() and (fwd > 0).all()
    torch.testing.assert_close(back, fwd[[1, 0]], rtol=0, atol=0)
    fwd.sum().backward()
    assert params.grad is not None and params.grad.abs().sum() > 0
    # another node's parameters score differently on the same node's windows
    other = functional(zoo.params[[a + 1, b]], torch.tensor([a, b]), torch.Generator().manual_seed(3))
    assert other[0] != fwd[0] and other[1] == fwd[1]


def test_rows_must_name_the_data(setup) -> None:  # type: ignore[no-untyped-def]
    model, data, zoo, _, _, _ = setup
    with pytest.raises(GpdiffError, match=r"1 parameter row\(s\) belong to no node of the source cities given "
                       r"\['alpha', 'beta'\]: nowhere/0 \(city not given\); pass the zoo's own cities"):
        FunctionalLoss(model, data, ["nowhere"], ["0"])
    with pytest.raises(GpdiffError, match=r"2 parameter row.*alpha/n999 \(not in that city\), beta/x"):
        FunctionalLoss(model, data, ["alpha", "alpha", "beta"], ["n999", "n0", "x"])
    with pytest.raises(GpdiffError, match="functional_windows must be at least 1"):
        FunctionalLoss(model, data, list(zoo.cities), list(zoo.node_ids), windows=0)


def _config(**kw) -> DiffusionConfig:  # type: ignore[no-untyped-def]
    base = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2}, "max_steps": 12, "batch_size": 6,
            "checkpoint_every": 100}
    return DiffusionConfig.from_dict(merge(base, kw))


def test_training_with_the_functional_loss(setup) -> None:  # type: ignore[no-untyped-def]
    _, _, zoo, spatial, temporal, functional = setup
    with pytest.raises(GpdiffError, match="functional_weight = 1.0 needs the source cities' data"):
        fit(zoo, spatial, temporal, _config(functional_weight=1.0), progress=False, device="cpu")
    with pytest.raises(GpdiffError, match="functional_weight must be >= 0"):
        _config(functional_weight=-1.0)

    def weights(config: DiffusionConfig, with_functional: bool) -> list[torch.Tensor]:
        m = fit(zoo, spatial, temporal, config, progress=False, device="cpu",
                functional=functional if with_functional else None)
        assert m is not None
        return [p.detach().clone() for p in m.denoiser.parameters()]

    plain = weights(_config(), False)
    # weight 0: the functional loss is not computed, whatever is passed
    assert all(torch.equal(x, y) for x, y in zip(plain, weights(_config(), True)))
    on = weights(_config(functional_weight=1.0), True)
    assert all(torch.equal(x, y) for x, y in zip(on, weights(_config(functional_weight=1.0), True)))
    assert not all(torch.equal(x, y) for x, y in zip(plain, on))


def test_for_zoo_rebuilds_the_zoos_windows_and_split(setup, two_source_cities) -> None:  # type: ignore[no-untyped-def]
    model, _, zoo, _, _, functional = setup
    record = {"source_split": vars(SourceSplit()).copy(), "window": vars(WINDOW).copy()}
    recorded = ParamCollection(zoo.params, list(zoo.node_ids), list(zoo.cities), zoo.model, zoo.model_config,
                               zoo.spec, config=record)
    rebuilt = FunctionalLoss.for_zoo(recorded, list(reversed(two_source_cities)), windows=4)
    rows = torch.arange(len(zoo))
    torch.testing.assert_close(rebuilt(zoo.params, rows, torch.Generator().manual_seed(5)),
                               functional(zoo.params, rows, torch.Generator().manual_seed(5)), rtol=0, atol=0)
    with pytest.raises(GpdiffError, match=r"\['beta'\] were not given; pass every city the zoo was trained on"):
        FunctionalLoss.for_zoo(recorded, two_source_cities[:1])
    with pytest.raises(GpdiffError, match="does not record its window shape"):
        FunctionalLoss.for_zoo(zoo, two_source_cities)


def test_for_zoo_covers_every_member(setup, two_source_cities) -> None:  # type: ignore[no-untyped-def]
    _, _, zoo, _, _, functional = setup
    record = {"source_split": vars(SourceSplit()).copy(), "window": vars(WINDOW).copy()}
    members = torch.stack([zoo.params.flip(0), zoo.params.roll(1, 0)], 1)  # [n, 2, P]
    several = ParamCollection(zoo.params, list(zoo.node_ids), list(zoo.cities), zoo.model, zoo.model_config,
                              zoo.spec, config=record, members=members)
    rebuilt = FunctionalLoss.for_zoo(several, two_source_cities, windows=4)
    n = len(zoo)
    assert rebuilt.city_row.shape == (3 * n,)
    rows = torch.arange(n, 2 * n)  # member 1 of every node, scored on that node's own windows
    torch.testing.assert_close(rebuilt(members[:, 0], rows, torch.Generator().manual_seed(2)),
                               functional(members[:, 0], torch.arange(n), torch.Generator().manual_seed(2)),
                               rtol=0, atol=0)


def test_cli_pretrain_with_the_functional_loss(setup, two_source_cities, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from gpdiff.cli import main
    from gpdiff.data.formats.city_folder import write_city_folder
    from gpdiff.diffusion import DiffusionModel
    from gpdiff.prompts import PromptSet

    _, _, zoo, spatial, temporal, _ = setup
    record = {"source_split": vars(SourceSplit()).copy(), "window": vars(WINDOW).copy()}
    ParamCollection(zoo.params, list(zoo.node_ids), list(zoo.cities), zoo.model, zoo.model_config, zoo.spec,
                    config=record).save(tmp_path / "zoo" / "zoo.safetensors")
    PromptSet(spatial, temporal, list(zoo.node_ids), list(zoo.cities)).save(tmp_path / "prompts.safetensors")
    paths = []
    for city in two_source_cities:
        write_city_folder(city, tmp_path / "data" / city.name)
        paths.append(str(tmp_path / "data" / city.name))
    args = ["pretrain", "--zoo", str(tmp_path / "zoo"), "--prompts", str(tmp_path / "prompts.safetensors"),
            "--max-steps", "4", "--d-model", "32", "--layers", "1", "--heads", "2", "--batch-size", "4",
            "--functional-weight", "0.5", "--functional-windows", "2", "--device", "cpu", "--quiet"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "d"), "--cities", ",".join(paths)])
    assert res.exit_code == 0, res.output
    assert DiffusionModel.load(tmp_path / "d", device="cpu").config.functional_weight == 0.5
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "e"), "--cities", paths[0]])
    assert res.exit_code != 0 and "['beta'] were not given" in res.output and "Traceback" not in res.output


def test_the_functional_term_reaches_the_denoiser(setup) -> None:  # type: ignore[no-untyped-def]
    """Backpropagating the functional term alone gives every denoiser layer on its path a gradient."""
    _, _, zoo, spatial, temporal, functional = setup
    model = fit(zoo, spatial, temporal, _config(max_steps=1), progress=False, device="cpu")
    assert model is not None
    schedule = NoiseSchedule(model.config.schedule)
    g = torch.Generator().manual_seed(0)
    rows = torch.arange(6)
    x0 = model.encode(zoo.params[rows])
    t = torch.full((6,), 100)
    xt = schedule.add_noise(x0, torch.randn(x0.shape, generator=g), t)
    net = model.denoiser.train()
    pred = net(xt, t, spatial[rows], temporal[rows])
    functional(model.to_params(schedule.predict_x0(pred, xt, t)), rows, g).sum().backward()
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0
    assert net.tok_emb.weight.grad is not None and net.tok_emb.weight.grad.abs().sum() > 0


def test_epsilon_prediction_is_refused() -> None:
    with pytest.raises(GpdiffError, match="needs v_prediction or sample"):
        _config(functional_weight=0.5, schedule={"prediction_type": "epsilon"})
