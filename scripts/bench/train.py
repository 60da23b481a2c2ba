"""Stage ``train``: training throughput (images/s), batch 8 at 224x224, CPU (and CUDA when present)."""

from __future__ import annotations

import torch

from .common import build_random_model, timed


def stage_train(res: dict, steps: int) -> None:
    from moadepth_core.config import LossConfig
    from moadepth_core.training.losses import depth_loss

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        model = build_random_model((224, 224)).to(dev).train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.rand(8, 3, 224, 224, device=dev)
        y = torch.rand(8, 1, 224, 224, device=dev) * 9 + 0.5
        cfg = LossConfig()

        def step(model=model, opt=opt, x=x, y=y, cfg=cfg) -> None:
            opt.zero_grad(set_to_none=True)
            out = model(x)
            depth_loss(out, y, cfg, model.head.edges)["loss"].backward()
            opt.step()

        sync = torch.cuda.synchronize if dev == "cuda" else None
        ms = timed(step, steps, warmup=1, sync=sync)
        ips = 8 / (ms / 1e3)
        key = "train_images_per_s" if dev == "cpu" else "train_images_per_s_cuda"
        res[key] = round(ips, 2)
        print(f"  train {dev}: batch 8 at 224x224, {ms:.0f} ms/step = {ips:.1f} images/s", flush=True)
        del model, opt

