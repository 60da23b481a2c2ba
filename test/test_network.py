"""The MoA-DepthCLIP network: structure faithful to the paper, shapes, gradients, freezing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from moadepth_core.model.adapters import MixtureOfAdapters, gate_entropy
from moadepth_core.model.head import ContextConcat, bin_edges, depth_to_bin_index
from moadepth_core.model.network import parameter_counts
from model_cache import fresh_model, shared_model


@pytest.mark.parametrize("hw", [(224, 224), (224, 288)])
def test_output_shapes_square_and_4_3(hw):
    model = shared_model()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *hw))
    h, w = hw
    assert out["depth"].shape == (2, 1, h, w)
    assert out["uncertainty"].shape == (2, 1, h, w)
    assert out["bin_probs"].shape == (2, 128, h // 4, w // 4)
    assert out["bin_centers"].shape == (128,)
    assert len(out["gate_weights"]) == 4
    tokens = 1 + (h // 32) * (w // 32)
    assert all(g.shape == (2, tokens, 4) for g in out["gate_weights"])
    d = out["depth"]
    assert torch.isfinite(d).all() and d.min() >= 0.1 and d.max() <= 10.0


def test_input_not_multiple_of_32_is_a_clear_error():
    with pytest.raises(Exception, match="multiple of the patch size"):
        shared_model()(torch.rand(1, 3, 200, 224))


def test_exactly_four_moa_modules_at_paper_blocks():
    model = shared_model()
    adapters = model.backbone.adapters
    assert sorted(int(k) for k in adapters) == [2, 5, 8, 11]
    for moa in adapters.values():
        assert isinstance(moa, MixtureOfAdapters)
        assert len(moa.experts) == 4
        e = moa.experts[0]
        assert (e[0].in_features, e[0].out_features, e[2].out_features) == (768, 64, 768)
        assert isinstance(e[1], torch.nn.GELU)
        g = moa.gate
        assert (g[0].in_features, g[0].out_features, g[2].out_features) == (768, 128, 4)
        assert moa.temperature == 2.0


def test_gate_weights_sum_to_one_and_temperature_sets_sharpness():
    torch.manual_seed(1)
    moa = MixtureOfAdapters(temperature=2.0)
    x = torch.randn(2, 50, 768) * 3
    _, g = moa(x)
    assert torch.allclose(g.sum(-1), torch.ones(2, 50), atol=1e-6)
    moa.temperature = 0.25
    _, sharp = moa(x)
    moa.temperature = 8.0
    _, flat = moa(x)
    assert gate_entropy(sharp) < gate_entropy(g) < gate_entropy(flat) <= math.log(4) + 1e-6


def test_moa_is_residual():
    moa = MixtureOfAdapters()
    for e in moa.experts:
        torch.nn.init.zeros_(e[2].weight)
        torch.nn.init.zeros_(e[2].bias)
    x = torch.randn(1, 5, 768)
    assert torch.equal(moa(x)[0], x)


def test_requires_grad_exactly_on_tuned_blocks_adapters_decoder_heads():
    model = shared_model()
    for name, p in model.named_parameters():
        tuned = any(name.startswith(f"backbone.visual.transformer.resblocks.{i}.") for i in (8, 9, 10, 11))
        ours = not name.startswith("backbone.visual.")
        assert p.requires_grad == (tuned or ours), name
    counts = parameter_counts(model)
    assert counts["adapters"] == 4 * (4 * (768 * 64 + 64 + 64 * 768 + 768) + (768 * 128 + 128 + 128 * 4 + 4))
    assert counts["backbone_tuned"] == 4 * sum(
        p.numel() for p in model.backbone.visual.transformer.resblocks[8].parameters())
    assert counts["trainable"] == counts["backbone_tuned"] + counts["adapters"] + counts["decoder_heads"]


def test_one_optimiser_step_changes_only_trainable_tensors_and_all_get_gradients():
    model = fresh_model(image_size=[64, 96])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = model(torch.rand(2, 3, 64, 96))
    loss = out["depth"].mean() + out["bin_logits"].float().logsumexp(1).mean()
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert changed <= trainable
    assert {k for k in trainable if "adapters" in k} <= changed
    assert any(k.startswith("backbone.visual.transformer.resblocks.11.") for k in changed)


def test_position_embedding_is_the_pretrained_one_at_224_and_interpolated_elsewhere():
    bb = shared_model().backbone
    assert bb.position_embedding(7, 7) is bb.visual.positional_embedding
    pe = bb.position_embedding(7, 9)
    assert pe.shape == (1 + 63, 768)
    assert torch.equal(pe[0], bb.visual.positional_embedding[0])


def test_context_concat_equals_explicit_concatenation():
    torch.manual_seed(0)
    mod = ContextConcat(8, 5)
    f, c = torch.randn(2, 8, 4, 6), torch.randn(5)
    explicit = F.relu(mod.proj(torch.cat([f, c.view(1, 5, 1, 1).expand(2, 5, 4, 6)], dim=1)))
    assert torch.allclose(mod(f, c), explicit, atol=1e-5)


def test_context_vector_is_a_fixed_buffer_from_prompts():
    model = shared_model()
    assert model.context.shape == (512,)
    assert not model.context.requires_grad
    assert "context" in model.trainable_state_dict()  # travels in checkpoints


def test_bins_log_spaced_and_indexing():
    edges = bin_edges(128, 0.1, 10.0, "log")
    ratios = edges[1:] / edges[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    idx = depth_to_bin_index(torch.tensor([0.05, 0.1, 1.05, 9.99, 20.0]), edges)
    assert idx[0] == 0 and idx[-1] == 127 and idx[-2] == 127
    assert edges[idx[2]] <= 1.05 < edges[idx[2] + 1]
    uni = bin_edges(4, 0.0 + 1.0, 5.0, "uniform")
    assert torch.allclose(uni, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=uni.dtype))


@pytest.mark.parametrize("fusion", ["mean", "bins", "regression"])
def test_fixed_fusion_modes(fusion):
    model = fresh_model(image_size=[64, 64], fusion=fusion)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    w = {"mean": 0.5, "bins": 1.0, "regression": 0.0}[fusion]
    low = w * out["bin_depth"] + (1 - w) * out["regression_depth"]
    up = F.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(out["depth"], up, atol=1e-5)


# --------------------------------------------------------------------------- CPU fast paths
# Each is the same mathematics as the textbook form it replaced for speed; these pin that down.

@pytest.mark.parametrize("hw", [(224, 224), (192, 256)])
def test_patch_tokens_are_the_patch_convolution(hw):
    bb = shared_model().backbone
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        tokens, gh, gw = bb.patch_tokens(x)
        ref = bb.visual.conv1(x).flatten(2).transpose(1, 2)
    assert (gh, gw) == (hw[0] // 32, hw[1] // 32)
    torch.testing.assert_close(tokens, ref, rtol=1e-5, atol=1e-5)


def test_mixture_of_adapters_equals_the_stacked_weighted_sum():
    torch.manual_seed(1)
    moa = MixtureOfAdapters(dim=32, num_experts=4, hidden=8, gate_hidden=16, temperature=2.0)
    x = torch.randn(3, 5, 32)
    out, g = moa(x)
    ref = x + (torch.stack([e(x) for e in moa.experts], -1) * g.unsqueeze(-2)).sum(-1)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_bin_moments_and_spread_match_the_centred_definition():
    from moadepth_core.model.head import bin_moments, relative_uncertainty

    torch.manual_seed(2)
    centers = torch.exp(torch.linspace(math.log(0.1), math.log(10.0), 128))
    probs = torch.softmax(torch.randn(2, 128, 6, 7) * 3, dim=1)
    c = centers.view(1, -1, 1, 1)
    mean = (probs * c).sum(1, keepdim=True)
    std = (probs * (c - mean) ** 2).sum(1, keepdim=True).sqrt()
    m1, m2 = bin_moments(probs, centers)
    torch.testing.assert_close(m1, mean, rtol=1e-5, atol=1e-6)
    depth = torch.rand(2, 1, 6, 7) + 0.5
    torch.testing.assert_close(relative_uncertainty(probs, centers, depth), std / depth, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 3.0, 80.0])  # 80: exp(logit) alone would overflow fp32
def test_bin_moments_from_logits_equal_the_softmax_definition(scale):
    from moadepth_core.model.head import bin_moments, bin_moments_from_logits

    torch.manual_seed(3)
    centers = torch.exp(torch.linspace(math.log(0.1), math.log(10.0), 128))
    logits = torch.randn(2, 128, 5, 9) * scale
    probs = torch.softmax(logits, dim=1)
    m1, m2, p = bin_moments_from_logits(logits, centers)
    r1, r2 = bin_moments(probs, centers)
    assert torch.isfinite(m1).all() and torch.isfinite(m2).all()
    torch.testing.assert_close(p, probs, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(m1, r1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m2, r2, rtol=1e-5, atol=1e-6)


def test_plain_block_forward_equals_open_clips_block():
    """The backbone runs open_clip's blocks through its own attention formulation (a leaner ONNX graph):
    it must give the block's own numbers, in eval and through a backward pass."""
    from moadepth_core.model.backbone import _is_plain_block, _plain_block_forward

    model = fresh_model()
    blocks = model.backbone.visual.transformer.resblocks
    assert model.backbone.fused_attention and all(_is_plain_block(b) for b in blocks)
    torch.manual_seed(5)
    x = torch.randn(2, 13, blocks[0].attn.embed_dim, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(_plain_block_forward(blocks[3], x), blocks[3](x), rtol=1e-5, atol=1e-5)
    ours = torch.autograd.grad(_plain_block_forward(blocks[3], x).square().sum(), x)[0]
    theirs = torch.autograd.grad(blocks[3](x).square().sum(), x)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    model.backbone.fused_attention = False  # the plain loop gives the same depth
    img = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(img)["depth"]
        model.backbone.fused_attention = True
        torch.testing.assert_close(model(img)["depth"], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_network_from_a_checkpoint_reads_the_image_tower_alone_and_is_the_saved_one(tmp_path, fmt, monkeypatch):
    """Rebuilt from a checkpoint over a CLIP weights file, the network takes its image tower from the
    file as is (built on the meta device: no random init, no text tower) and is, bit for bit, the
    network that was saved (which was built the full way, text tower and all, for its context)."""
    import open_clip
    from safetensors.torch import save_file

    from moadepth_core.model import network
    from moadepth_core.model.backbone import create_image_tower
    from moadepth_core.model.checkpoint import load_checkpoint, save_checkpoint
    from moadepth_core.model.network import build_model
    from model_cache import random_config

    torch.manual_seed(3)
    clip = open_clip.create_model("ViT-S-32", pretrained=None, force_quick_gelu=True)
    weights = tmp_path / f"clip.{'pt' if fmt == 'torch' else 'safetensors'}"
    if fmt == "torch":
        torch.save(clip.state_dict(), weights)
    else:
        save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    cfg = random_config(backbone="ViT-S-32", image_size=[64, 96], pretrained=str(weights))
    saved = build_model(cfg)  # no context given: the full build, which computes it from the prompts
    torch.testing.assert_close(saved.backbone.visual.conv1.weight, clip.visual.conv1.weight, rtol=0, atol=0)
    save_checkpoint(tmp_path / "ckpt.pt", saved)

    visual, source = create_image_tower(cfg)
    assert not any(t.is_meta for t in (*visual.parameters(), *visual.buffers()))
    assert source.pretrained == str(weights.resolve()) and source.sha256 is not None
    with monkeypatch.context() as m:
        m.setattr(network, "create_clip", lambda *a, **k: pytest.fail("built the full CLIP model"))
        loaded, _ = load_checkpoint(tmp_path / "ckpt.pt")
    want, got = saved.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    assert loaded.fingerprint == saved.fingerprint
    assert create_image_tower(random_config(backbone="ViT-S-32", pretrained="none")) is None  # seeded init


def test_hub_weights_that_cannot_be_fetched_are_one_sentence(monkeypatch):
    """Offline (as on this machine), a checkpoint over hub weights says how to go on, in one sentence.
    The hub client is replaced: fetching is exactly what must not happen here."""
    import open_clip

    from moadepth_core.errors import MoadepthError
    from moadepth_core.model.backbone import create_image_tower
    from model_cache import random_config

    def offline(*_a, **_k):
        raise OSError("Network is unreachable\nsecond line of a long hub error")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(MoadepthError) as err:
        create_image_tower(random_config(backbone="ViT-B-32", pretrained="openai"))
    assert str(err.value) == ("cannot load the 'openai' CLIP weights for ViT-B-32 (OSError: Network is unreachable); "
                              "without internet access pass a local weights file (--pretrained PATH, or "
                              "model.pretrained in the config)")
