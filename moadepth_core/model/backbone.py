"""OpenCLIP ViT image tower as a dense feature extractor, with MoA after chosen blocks.

Why a hand-written block loop instead of ``forward_intermediates``: the
adapters sit *between* blocks and change what later blocks see. Position
embeddings are interpolated from the pretrained 7×7 grid so any input whose
sides are multiples of the patch size works (robot cameras are 4:3 or 16:9).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from moadepth_core.config import ModelConfig
from moadepth_core.errors import CheckpointError, MoadepthError, quiet_root_logger
from moadepth_core.model.adapters import MixtureOfAdapters

log = logging.getLogger("moadepth")


@dataclass
class BackboneSource:
    """Where the frozen CLIP weights came from, recorded in checkpoints."""

    pretrained: str  # tag, file path, or "none"
    sha256: str | None = None  # of the weights file, when one was used
    init_seed: int = 0

    def as_dict(self) -> dict:
        return {"pretrained": self.pretrained, "sha256": self.sha256, "init_seed": self.init_seed}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_file_like(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _weights_file(pretrained: str) -> Path:
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise CheckpointError(f"CLIP weights file {path} does not exist")
    return path


def create_clip(cfg: ModelConfig, pretrained: str | None = None) -> tuple[nn.Module, BackboneSource]:
    """Build the full OpenCLIP model: hub tag, local weights file, or seeded random init."""
    pretrained = cfg.pretrained if pretrained is None else pretrained
    kwargs = {"force_quick_gelu": cfg.quick_gelu}
    if pretrained in ("none", "", None):
        with torch.random.fork_rng(devices=[]), quiet_root_logger():
            torch.manual_seed(cfg.init_seed)
            model = open_clip.create_model(cfg.backbone, pretrained=None, **kwargs)
        return model, BackboneSource("none", None, cfg.init_seed)
    if _is_file_like(pretrained) or Path(pretrained).is_file():
        path = _weights_file(pretrained)
        try:
            model = open_clip.create_model(cfg.backbone, pretrained=str(path), **kwargs)
        except Exception as exc:  # open_clip raises many types for a bad file
            raise CheckpointError(f"cannot load CLIP weights from {path}: {exc}") from None
        return model, BackboneSource(str(path.resolve()), _sha256(path), cfg.init_seed)
    try:
        model = open_clip.create_model(cfg.backbone, pretrained=pretrained, **kwargs)
    except Exception as exc:
        raise _tag_error(cfg, pretrained, exc) from None
    return model, BackboneSource(pretrained, None, cfg.init_seed)


def _tag_error(cfg: ModelConfig, tag: str, exc: Exception) -> MoadepthError:
    return MoadepthError(
        f"cannot load the '{tag}' CLIP weights for {cfg.backbone} ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); without internet access pass a local "
        f"weights file (--pretrained PATH, or model.pretrained in the config)")


def create_image_tower(cfg: ModelConfig, pretrained: str | None = None) -> tuple[nn.Module, BackboneSource] | None:
    """The pretrained image tower alone, its weights taken from the weights file as they are; None
    where only :func:`create_clip` can build it (random init, a format open_clip must convert, a
    position grid it must resize), and the caller builds the full model instead.

    Why: the full build allocates and randomly initialises both towers (151M parameters), then
    loads the whole weights file into a second copy and copies it over: two full CLIP models in
    memory (peak ~1.2 GB above the imports) to keep the 88M-parameter image tower. Here the towers
    are built on the meta device (no memory, no init) and the image tower's tensors are the file's
    own, memory-mapped (torch format) or read alone (safetensors); the text tower is never read.
    A network rebuilt from a checkpoint needs no text tower: the scene context is in the checkpoint.
    The values are bit for bit those of the full build (test_network).
    """
    pretrained = cfg.pretrained if pretrained is None else pretrained
    if pretrained in ("none", "", None):
        return None
    if _is_file_like(pretrained) or Path(pretrained).is_file():
        path = _weights_file(pretrained)
        source = BackboneSource(str(path.resolve()), _sha256(path), cfg.init_seed)
    else:
        tag_cfg = open_clip.get_pretrained_cfg(cfg.backbone, pretrained)
        if not tag_cfg:
            return None
        try:
            path = Path(open_clip.download_pretrained(tag_cfg))
        except Exception as exc:  # noqa: BLE001 - the hub client raises many types
            raise _tag_error(cfg, pretrained, exc) from None
        source = BackboneSource(pretrained, None, cfg.init_seed)
    with torch.device("meta"), quiet_root_logger():
        visual = open_clip.create_model(cfg.backbone, pretrained=None, device="meta",
                                        force_quick_gelu=cfg.quick_gelu).visual
    try:
        state = _image_tower_state(path)
        want = visual.state_dict()
        state = {k: v.to(want[k].dtype) if k in want and v.dtype != want[k].dtype else v for k, v in state.items()}
        visual.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, KeyError, ValueError, OSError, pickle.UnpicklingError) as exc:
        log.debug("image tower from %s needs open_clip's full load: %s", path, exc)
        return None
    if any(t.is_meta for t in (*visual.parameters(), *visual.buffers())):
        return None
    return visual, source


def _image_tower_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of a CLIP weights file, keys relative to the tower."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k[7:]: f.get_tensor(k) for k in f.keys() if k.startswith("visual.")}  # noqa: SIM118
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError("not a state dict")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    return {k[7:]: v for k, v in state.items() if k.startswith("visual.")}


class ClipBackbone(nn.Module):
    """ViT image tower → taps (B, D, H/32, W/32) after ``adapter_blocks``, plus gate weights."""

    def __init__(self, visual: nn.Module, cfg: ModelConfig) -> None:
        super().__init__()
        self.visual = visual
        self.patch = visual.conv1.kernel_size[0]
        if tuple(visual.conv1.stride) != tuple(visual.conv1.kernel_size) or any(visual.conv1.padding):
            raise ValueError("patch_tokens needs a non-overlapping, unpadded patch convolution (any ViT does)")
        self.width = visual.conv1.out_channels
        grid = visual.grid_size if hasattr(visual, "grid_size") else None
        n = visual.positional_embedding.shape[0] - 1
        self.pretrained_grid = tuple(grid) if grid is not None else (int(n**0.5),) * 2
        self.tap_blocks = list(cfg.adapter_blocks)
        self.adapters = nn.ModuleDict({
            str(i): MixtureOfAdapters(self.width, cfg.num_experts, cfg.expert_hidden, cfg.gate_hidden,
                                      cfg.gate_temperature)
            for i in cfg.adapter_blocks
        })
        # Drop parts of the tower we never use (pooling, projection): fewer parameters to carry.
        visual.proj = None
        self.num_blocks = len(visual.transformer.resblocks)
        self.fused_attention = all(_is_plain_block(b) for b in visual.transformer.resblocks)

    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """(1 + gh*gw, D) embedding, bicubic-interpolated from the pretrained grid when sizes differ."""
        pos = self.visual.positional_embedding
        if (gh, gw) == self.pretrained_grid:
            return pos
        cls, grid = pos[:1], pos[1:]
        h0, w0 = self.pretrained_grid
        grid = grid.reshape(1, h0, w0, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pos.dtype)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(gh * gw, -1)], dim=0)

    def patch_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(B, gh*gw, D) patch embeddings: ``conv1`` (kernel = stride = patch, no padding) as one matmul.

        Same numbers as calling the convolution, but oneDNN runs this stride-32 bf16 convolution
        ~10x slower than the equivalent (gh*gw, 3*p*p) @ (3*p*p, D) product on CPU (4.8 ms vs
        ~0.5 ms at 224x224), a tenth of the whole forward.
        """
        conv, p = self.visual.conv1, self.patch
        b, c, h, w = x.shape
        gh, gw = h // p, w // p
        x = x[:, :, : gh * p, : gw * p]  # what the convolution does with a remainder: ignore it
        cols = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * p * p)
        tokens = cols @ conv.weight.reshape(conv.out_channels, -1).t()
        if conv.bias is not None:
            tokens = tokens + conv.bias
        return tokens, gh, gw

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        v = self.visual
        x, gh, gw = self.patch_tokens(x)
        b, d = x.shape[0], x.shape[2]
        cls = v.class_embedding.to(x.dtype).expand(b, 1, d)
        x = torch.cat([cls, x], dim=1) + self.position_embedding(gh, gw).to(x.dtype)
        x = v.ln_pre(x)
        taps, gates = [], []
        for i, block in enumerate(v.transformer.resblocks):
            x = _plain_block_forward(block, x) if self.fused_attention else block(x)
            key = str(i)
            if key in self.adapters:
                x, g = self.adapters[key](x)
                gates.append(g)
                taps.append(x[:, 1:].transpose(1, 2).reshape(b, d, gh, gw))
            if i >= max(self.tap_blocks):
                break  # later blocks (none for ViT-B/32 with a tap at 11) would not feed the decoder
        return taps, gates


def _is_plain_block(block: nn.Module) -> bool:
    """An open_clip ``ResidualAttentionBlock`` with batch-first, packed-projection self-attention:
    the block :func:`_plain_block_forward` reproduces."""
    attn = getattr(block, "attn", None)
    return (isinstance(attn, nn.MultiheadAttention) and attn.batch_first and attn._qkv_same_embed_dim
            and attn.in_proj_bias is not None and attn.bias_k is None and not attn.add_zero_attn
            and not hasattr(block, "ln_1_kv")
            and all(hasattr(block, n) for n in ("ln_1", "ln_2", "ls_1", "ls_2", "mlp")))


def _plain_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a plain block, with attention as one qkv product, SDPA and one output product.

    Same maths as ``nn.MultiheadAttention`` (tested to 1e-5), but its ONNX export has a third fewer
    nodes: ONNX Runtime ran the ViT-B/32 graph in 59 ms instead of 61 ms (2 cores), and torch runs
    the same.
    """
    attn = block.attn
    b, t, d = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.reshape(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
    o = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.dropout if attn.training else 0.0)
    o = F.linear(o.transpose(1, 2).reshape(b, t, d), attn.out_proj.weight, attn.out_proj.bias)
    x = x + block.ls_1(o)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def frozen_fingerprint(visual: nn.Module) -> float:
    """A cheap checksum of frozen weights, to catch a checkpoint paired with other CLIP weights."""
    with torch.no_grad():
        parts = [visual.conv1.weight, visual.positional_embedding, visual.transformer.resblocks[0].mlp[0].weight]
        return float(sum(p.double().abs().sum() for p in parts))


def check_input_size(h: int, w: int, patch: int = 32) -> None:
    if h % patch or w % patch or h <= 0 or w <= 0:
        raise MoadepthError(f"input size {h}x{w} is not a positive multiple of the patch size {patch}")
