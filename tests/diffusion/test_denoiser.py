"""The denoiser and its conditioning on the two prompts."""

from __future__ import annotations

import pytest
import torch

from gpdiff.diffusion import CONDITIONING, Denoiser, DenoiserConfig, DiffusionConfig, TokenShape
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import Tokenizer
from tests.conftest import SPEC, tiny_config

# diffusers' DPM-Solver++ calls np.array on a tensor in a way numpy 2 deprecates (not ours to fix)
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.usefixtures("one_thread")]


def randomize(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every weight a random value (zero-initialised layers would hide the prompts at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def denoiser(condition: str, n_layers: int = 2) -> tuple[Denoiser, torch.Tensor]:
    tok = Tokenizer(SPEC, 8)
    cfg = DenoiserConfig(d_model=16, n_layers=n_layers, n_heads=2, condition=condition)
    net = Denoiser(cfg, TokenShape(tok.n_tokens, 8, 5, 7), tok.spatial_mask()).eval()
    randomize(net)
    return net, tok.spatial_mask()


def inputs(b: int = 3, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    n_tok = Tokenizer(SPEC, 8).n_tokens
    return (torch.randn(b, n_tok, 8, generator=g), torch.randint(0, 500, (b,), generator=g),
            torch.randn(b, 5, generator=g), torch.randn(b, 7, generator=g))


# ----------------------------------------------------------------------------- denoiser
@pytest.mark.parametrize("condition", sorted(CONDITIONING))
def test_output_shape_and_dependence_on_both_prompts(condition: str) -> None:
    net, _ = denoiser(condition)
    x, t, s, p = inputs()
    with torch.no_grad():
        out = net(x, t, s, p)
        assert out.shape == x.shape
        assert not torch.allclose(out, net(x, t, s + 1.0, p), atol=1e-4), "spatial prompt ignored"
        assert not torch.allclose(out, net(x, t, s, p + 1.0), atol=1e-4), "temporal prompt ignored"
        assert not torch.allclose(out, net(x, t, s, p, torch.ones(3, dtype=torch.bool)), atol=1e-4)
        assert not torch.allclose(out, net(x, (t + 50) % 500, s, p), atol=1e-4), "step ignored"


def test_pre_inductive_spatial_prompt_reaches_other_tokens_only_through_attention() -> None:
    x, t, s, p = inputs()
    s2 = s + 1.0
    # at the input: only the tokens of spatial-role tensors change
    net, spatial = denoiser("pre_inductive")
    assert 0 < int(spatial.sum()) < spatial.numel()
    with torch.no_grad():
        h1, _ = net.embed(x, t, s, p)
        h2, _ = net.embed(x, t, s2, p)
    changed = (h1 - h2).abs().amax(dim=(0, 2)) > 1e-6
    assert torch.equal(changed, spatial)
    # through the blocks: the other tokens change too ...
    with torch.no_grad():
        d = (net(x, t, s, p) - net(x, t, s2, p)).abs().amax(dim=(0, 2))
    assert (d[~spatial] > 1e-4).all()
    # ... but not once attention is switched off: it is the only path between tokens
    for block in net.blocks:
        block.attn.forward = lambda h, context=None: torch.zeros_like(h)  # type: ignore[method-assign]
    with torch.no_grad():
        d = (net(x, t, s, p) - net(x, t, s2, p)).abs().amax(dim=(0, 2))
    assert (d[~spatial] < 1e-6).all() and (d[spatial] > 1e-4).all()


def test_adanorm_starts_with_identity_blocks() -> None:
    tok = Tokenizer(SPEC, 8)
    cfg = DenoiserConfig(d_model=16, n_layers=2, n_heads=2, condition="adanorm")
    net = Denoiser(cfg, TokenShape(tok.n_tokens, 8, 5, 7), tok.spatial_mask()).eval()
    for lin in net.cond.mod:  # type: ignore[attr-defined]
        assert not lin.weight.any() and not lin.bias.any()
    x, t, s, p = inputs()
    with torch.no_grad():
        h, cond = net.embed(x, t, s, p)
        expected = net.head(net.ln_f(h)) + net.skip(cond.step)[:, :, None] * x
        assert torch.allclose(net(x, t, s, p), expected, atol=1e-6)


def test_unknown_condition_and_bad_sizes() -> None:
    with pytest.raises(GpdiffError, match="unknown conditioning strategy 'pre_inductiv'.*pre_inductive"):
        DiffusionConfig.from_dict({"denoiser": {"condition": "pre_inductiv"}})
    with pytest.raises(GpdiffError, match="unknown denoiser preset"):
        DiffusionConfig.from_preset("huge")
    with pytest.raises(GpdiffError, match="divisible"):
        DenoiserConfig(d_model=30, n_heads=4)
    with pytest.raises(GpdiffError, match="n_heads must be at least 1"):
        DenoiserConfig(n_heads=0)
    with pytest.raises(GpdiffError, match="spatial_dim must be at least 1"):
        TokenShape(4, 8, 0, 7)
    with pytest.raises(GpdiffError, match="cfg_dropout"):
        tiny_config(cfg_dropout=1.0)
    tok = Tokenizer(SPEC, 8)
    assert DenoiserConfig(token_dim=8).resolve_token_dim(SPEC) == 8
    assert DenoiserConfig(max_tokens=5).resolve_token_dim(SPEC) == 32  # 16 would give 7 tokens, 32 gives 5
    with pytest.raises(ValueError, match="spatial_mask"):
        Denoiser(DenoiserConfig(d_model=16, n_heads=2), TokenShape(tok.n_tokens + 1, 8, 5, 7), tok.spatial_mask())
