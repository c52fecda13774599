"""`gpdiff prompts fit`, `show` and `encode` on the command line."""

from click.testing import CliRunner

from gpdiff.data.synthetic import synthetic_city
from gpdiff.prompts import (
    PromptEncoders,
    PromptSet,
)


# --------------------------------------------------------------------------- command line
def test_cli_fit_show_encode(tmp_path):
    from gpdiff.cli import main

    for name, iv, seed in (("ca", 60, 0), ("cb", 10, 1)):
        synthetic_city(name, n_nodes=5, days=8, interval_minutes=iv, seed=seed).save(tmp_path / f"{name}.city")
    cfg = tmp_path / "p.yaml"
    cfg.write_text("temporal_config:\n  d_model: 16\n  n_heads: 2\n  ff_dim: 32\n  batch_size: 8\n")
    runner = CliRunner()
    out = tmp_path / "prompts"
    r = runner.invoke(main, ["prompts", "fit", "--cities", f"{tmp_path / 'ca.city'},{tmp_path / 'cb.city'}",
                             "--out", str(out), "--max-steps", "3", "--days", "2", "--config", str(cfg),
                             "--seed", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "prompts.safetensors").is_file() and (out / "temporal" / "config.yaml").is_file()
    fitted = PromptEncoders.load(out)
    assert fitted.temporal.name == "masked_patch" and fitted.temporal.config.max_steps == 3
    assert fitted.temporal.info["seed"] == fitted.spatial.info["seed"] == 2
    r = runner.invoke(main, ["prompts", "show", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "prompts_pca.png").read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(main, ["prompts", "encode", str(out), "--city", str(tmp_path / "cb.city"), "--target-days", "1",
                             "--out", str(tmp_path / "t.safetensors")])
    assert r.exit_code == 0, r.output
    assert PromptSet.load(tmp_path / "t.safetensors").temporal.shape == (5, 32)
    r = runner.invoke(main, ["prompts", "fit", "--cities", str(tmp_path / "ca.city"), "--out", str(out),
                             "--temporal", "nope"])
    assert r.exit_code == 2 and "'nope' is not one of 'masked_patch', 'stats'" in r.output
    r = runner.invoke(main, ["prompts", "fit", "--cities", str(tmp_path / "ca.city"), "--out", str(out),
                             "--temporal", "stats", "--max-steps", "3"])
    assert r.exit_code == 2 and "--max-steps applies to the masked_patch encoder" in r.output
