"""Looking a city up by name: a truncated city file in the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpdiff.data.city import City
from tests.conftest import run_cli


# ------------------------------------------------------------- a truncated cached city (issue 14, fault 7)
def test_truncated_city_in_the_cache(tmp_path: Path, small_city: City, monkeypatch: pytest.MonkeyPatch) -> None:
    cities = tmp_path / "cache" / "cities"
    cities.mkdir(parents=True)
    small_city.save(cities / "good.city")
    data = small_city.to_bytes()
    (cities / "half.city").write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("GPDIFF_CACHE", str(tmp_path / "cache"))
    r = run_cli("data", "list")
    assert r.exit_code == 0, r.output
    assert "good" in r.output and "hangzhou-metro" in r.output
    broken = [ln for ln in r.output.splitlines() if "half" in ln]
    assert len(broken) == 1 and broken[0].startswith("broken: half:") and "delete it" in broken[0]
    r = run_cli("data", "show", "half")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "half.city is damaged or incomplete" in r.output and "delete it" in r.output
    (cities / "folder.city").mkdir()  # not a city file: not listed at all
    small_city.save(cities / "nyc-taxi.city")  # shadowed by the bundled city of that name: said so
    r = run_cli("data", "list")
    assert r.exit_code == 0 and "folder" not in r.output, r.output
    assert "note: the cached nyc-taxi.city is not used: the bundled nyc-taxi has the same name" in r.output
    r = run_cli("data", "show", "good", "--plot", str(tmp_path / "g.png"))
    assert r.exit_code == 0, r.output
