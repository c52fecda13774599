"""retrieval: each target node starts from the parameters of the source node whose prompt is nearest."""

from __future__ import annotations

import pytest
import torch

from gpdiff.methods import retrieval
from gpdiff.prompts import PromptSet
from tests.methods.conftest import recording_finetune, target_prompts_near

# target node j's prompt sits next to source row ROWS[j]: rows of both cities, one of them twice, in no order
ROWS = [7, 0, 3, 3]


def test_nearest_sources_are_the_rows_the_target_prompts_sit_next_to(method_parts) -> None:
    _, _, _, prompts, target = method_parts
    near = target_prompts_near(prompts, ROWS, target)
    assert retrieval.nearest_sources(prompts, near).tolist() == ROWS
    ranked = retrieval.nearest_sources(prompts, near, k=3)
    assert ranked.shape == (4, 3) and ranked[:, 0].tolist() == ROWS
    assert all(len(set(r)) == 3 for r in ranked.tolist())


def test_each_target_node_starts_from_its_nearest_source_nodes_parameters(method_parts, make_context,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, zoo, prompts, target = method_parts
    seen = recording_finetune(monkeypatch, retrieval)
    result = retrieval.run(make_context(target_prompts=target_prompts_near(prompts, ROWS, target)))
    expected = zoo.params[ROWS]
    assert len(seen) == 1 and torch.equal(seen[0], expected) and torch.equal(result.params, expected)
    assert [zoo.cities[i] for i in ROWS] == ["beta", "alpha", "alpha", "alpha"]
    assert result.notes["retrieved_from"] == {"beta": 0.25, "alpha": 0.75}


def test_nearness_is_measured_on_prompts_z_scored_with_the_sources_statistics_and_parts_weighted_equally() -> None:
    """Two sources: spatial (0, 0) and (1, 1), temporal 0 and 1000 (so each z-scored feature is -+0.71).
    A: raw distance picks row 0 (temporal 400 vs 600), z-scored picks row 1 (spatial 0.9 is next to 1).
    B: spatially halfway, so only the temporal part (900) decides: row 1.
    C: the two spatial columns count as much as the one temporal column; counted twice, row 0 would win."""
    sources = PromptSet(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0], [1000.0]]), ["s0", "s1"],
                        ["src", "src"])
    targets = PromptSet(torch.tensor([[0.9, 0.9], [0.5, 0.5], [0.3, 0.3]]), torch.tensor([[400.0], [900.0], [800.0]]),
                        ["a", "b", "c"], ["tgt"] * 3)
    assert retrieval.nearest_sources(sources, targets).tolist() == [1, 1, 1]
    raw = torch.cdist(torch.cat([targets.spatial, targets.temporal], 1), torch.cat([sources.spatial, sources.temporal], 1))
    assert raw.argmin(1).tolist()[0] == 0  # the case A is there for
