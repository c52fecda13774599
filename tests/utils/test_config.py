"""Config helpers: the origin of a dotted setting is its longest listed prefix of whole components."""

from __future__ import annotations

from gpdiff.utils.config import origin_of, path_origins


def test_origin_is_the_longest_listed_prefix_of_whole_components():
    origins = {"zoo": "file", "zoo.lr": "--set zoo.lr=1"}
    assert origin_of("zoo.lr", origins) == "--set zoo.lr=1"
    assert origin_of("zoo.lr_decay", origins) == "file"  # zoo.lr is not a prefix of zoo.lr_decay
    assert origin_of("window.history", origins, "default") == "default"
    assert path_origins({"zoo": {"lr": 1, "model": "stid"}, "methods": {"gpd": {}}, "seed": 0}, "x") == {
        "zoo.lr": "x", "zoo.model": "x", "methods.gpd": "x", "seed": "x"}
