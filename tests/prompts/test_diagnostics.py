"""Prompt diagnostics: the rank correlation of prompt and parameter distances, and the transfer check."""

from dataclasses import replace

import numpy as np
import torch

from gpdiff.prompts import (
    source_segment,
)


# --------------------------------------------------------------------------- diagnostics
def _tiny_zoo(cities):
    from gpdiff.models import ModelConfig, get_model
    from gpdiff.zoo.params import ParamCollection, flatten

    model = get_model("stid", ModelConfig(history=12, horizon=6, ego_size=4))
    n = sum(c.n_nodes for c in cities)
    params = flatten(model.init(n, seed=0, shared=False), model.spec())
    ids = [i for c in cities for i in c.node_ids]
    owners = [c.name for c in cities for _ in c.node_ids]
    return ParamCollection(params, ids, owners, model.name, model.config.to_dict(), model.spec(),
                           config={"train": 0.7, "val": 0.1, "test": 0.2, "k": 3})


def test_rank_correlation_and_transfer_check(cities, stats_encoders):
    from gpdiff.prompts.diagnostics import (
        node_identification,
        rank_correlation,
        transfer_check,
    )

    zoo = _tiny_zoo(cities)
    ps = stats_encoders.encode_many(cities, [source_segment(c) for c in cities])
    # prompts that ARE the parameters track parameter distance; shuffled ones do not; constant ones: NaN
    oracle = replace(ps, temporal=zoo.params.clone())
    shuffled = replace(ps, temporal=zoo.params[torch.randperm(len(zoo), generator=torch.Generator().manual_seed(0))])
    rho = rank_correlation(oracle, zoo, parts=("temporal", "spatial"))
    assert rho["temporal"]["all"] > 0.9 and np.isnan(rho["spatial"]["all"])
    assert abs(rank_correlation(shuffled, zoo, parts=("temporal",))["temporal"]["all"]) < 0.3
    res = transfer_check(oracle, zoo, {c.name: c for c in cities}, part="temporal", n_random=2)
    s = res.summary()
    assert s["nodes"] == len(zoo) and np.isfinite([s["own"], s["neighbour"], s["random"]]).all()
    assert all(nb[0] != c for nb, c in zip(res.neighbour_key, res.cities))  # always another city
    assert {r["city"] for r in res.per_city()} == {"hourly", "tenmin"}
    ident = node_identification(stats_encoders.temporal, cities, [source_segment(c) for c in cities], shift_days=2)
    assert set(ident) == {"hourly", "tenmin"} and all(0 <= v <= 1 for v in ident.values())
