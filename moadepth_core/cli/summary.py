"""`moadepth summary`: build the network (no weights needed) and show where its parameters are.

The paper's claim is parameter efficiency; this makes it visible: the
adapters are ~2 M parameters next to a 59 M frozen tower.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from moadepth_core.config import ModelConfig, load_yaml
from moadepth_core.errors import cli_entry
from moadepth_core.model.network import build_model, parameter_counts

PART_LABELS = {
    "backbone_frozen": "CLIP ViT backbone, frozen",
    "backbone_tuned": "CLIP ViT blocks, fine-tuned",
    "adapters": "Mixture-of-Adapters",
    "decoder_heads": "decoder + hybrid head",
}


def summarize(cfg: ModelConfig) -> dict:
    model = build_model(cfg)
    counts = parameter_counts(model)
    return {
        "parameters": counts,
        "tuned_blocks": list(cfg.tuned_blocks),
        "adapters": {
            "blocks": list(cfg.adapter_blocks),
            "modules": len(model.backbone.adapters),
            "experts_per_module": cfg.num_experts,
            "parameters_per_module": sum(p.numel() for p in next(iter(model.backbone.adapters.values()))
                                         .parameters()),
        },
        "num_bins": cfg.num_bins,
        "image_size": list(cfg.image_size),
        "context_dim": int(model.context.numel()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="moadepth summary", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print machine-readable JSON")
    ap.add_argument("--config", help="a training config YAML whose model section to use")
    args = ap.parse_args(argv)
    cfg = load_yaml(args.config).model if args.config else ModelConfig()
    cfg.pretrained = "none"  # counts do not depend on the weights; nothing is downloaded
    info = summarize(cfg)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = info["parameters"]
    print(f"MoA-DepthCLIP ({cfg.backbone}, input {cfg.image_size[0]}x{cfg.image_size[1]}, {cfg.num_bins} bins)")
    for key, label in PART_LABELS.items():
        print(f"  {label:32s} {c[key]:>12,d}  ({100 * c[key] / c['total']:5.1f} %)")
    print(f"  {'total':32s} {c['total']:>12,d}")
    print(f"  {'trainable':32s} {c['trainable']:>12,d}  ({100 * c['trainable'] / c['total']:5.1f} %)")
    a = info["adapters"]
    print(f"  adapters: {a['modules']} modules after blocks {a['blocks']}, {a['experts_per_module']} experts each, "
          f"{a['parameters_per_module']:,d} parameters per module; tuned blocks {info['tuned_blocks']}")
    return 0


main = cli_entry(main, prog="moadepth summary")
