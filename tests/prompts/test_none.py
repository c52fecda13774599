"""The `none` encoders: the ablation without a temporal (or spatial) prompt."""

from gpdiff.prompts import (
    PromptEncoders,
    PromptsConfig,
    fit_prompts,
    source_segment,
)


def test_none_temporal_encoder_is_the_ablation_without_a_temporal_prompt(cities, tmp_path):
    enc = fit_prompts(cities, PromptsConfig("none", "none"), progress=False)
    ps = enc.encode(cities[0], source_segment(cities[0]))
    assert ps.temporal.shape == (cities[0].n_nodes, 32) and bool((ps.temporal == 1).all())
    enc.save(tmp_path / "enc")
    back = PromptEncoders.load(tmp_path / "enc")
    assert back.temporal.kind == "temporal" and back.spatial.kind == "spatial" and back.temporal.name == "none"
