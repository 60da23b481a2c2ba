"""Self-supervised loss from view synthesis with known camera motion (Monodepth2, Godard et al. 2019).

Each source frame is warped into the target camera with the predicted target depth and the known
relative pose; the photometric error ``alpha·(1 − SSIM)/2 + (1 − alpha)·|·|`` (alpha = 0.85, SSIM
on 3x3 windows as Monodepth2) is taken per pixel as the minimum over the sources, pixels where an
unwarped source already matches better are auto-masked, and an edge-aware smoothness term on the
mean-normalised inverse depth (weight 1e-3) is added.

Conventions: pixel centres at integers (``geometry.scale_intrinsics``), so pixel ``u`` sits at
``2u/(W−1) − 1`` in ``grid_sample`` coordinates with ``align_corners=True``; sampling is bilinear
with border padding, and pixels that project outside the source image (or behind it) are masked
instead of being compared with the border. Because the poses are metric, the loss is smallest at
the true metric depth (test_photometric.py measures it), so no median scaling is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Monodepth2's SSIM term ``clamp((1 − SSIM)/2, 0, 1)`` per pixel and channel: 3x3 mean pooling over
    reflection-padded images, C1 = 0.01², C2 = 0.03²."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    n = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    d = (mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def photometric_error(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """(B,1,H,W): ``alpha·SSIM term + (1 − alpha)·L1``, each averaged over the colour channels."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    if alpha == 0:
        return l1
    return alpha * ssim_distance(pred, target).mean(1, keepdim=True) + (1 - alpha) * l1


def pixel_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(3, H·W) homogeneous pixel coordinates ``(u, v, 1)``, pixel centres at integers."""
    v, u = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                          indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(h * w, device=device, dtype=dtype)])


def warp(source: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, T_src_tgt: torch.Tensor,
         min_depth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Source image resampled at where each target pixel lands: ``(warped (B,C,H,W), in_view (B,1,H,W))``.

    depth: (B,1,H,W) target depth along the optical axis, metres; K: (B,3,3) pixels of this size;
    T_src_tgt: (B,4,4) maps target-camera points into the source camera. ``in_view`` is False where the
    point lies behind the source camera or projects outside its image (pixel centres 0..W−1, 0..H−1).
    """
    b, _, h, w = depth.shape
    K = K.to(depth.dtype)
    T = T_src_tgt.to(depth.dtype)
    pix = pixel_grid(h, w, depth.device, depth.dtype)  # (3, HW)
    rays = torch.linalg.inv(K) @ pix  # (B,3,HW), z = 1
    pts = rays * depth.reshape(b, 1, h * w)
    pts = T[:, :3, :3] @ pts + T[:, :3, 3:]
    z = pts[:, 2:3]
    proj = K @ pts
    zc = z.clamp_min(min_depth)
    u = proj[:, 0:1] / zc
    v = proj[:, 1:2] / zc
    in_view = (z > min_depth) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    grid = torch.stack([2 * u / (w - 1) - 1, 2 * v / (h - 1) - 1], dim=-1).reshape(b, h, w, 2)
    warped = F.grid_sample(source, grid.to(source.dtype), mode="bilinear", padding_mode="border",
                           align_corners=True)
    return warped, in_view.reshape(b, 1, h, w)


def smoothness(depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of the mean-normalised inverse depth (Monodepth2's ``get_smooth_loss``)."""
    disp = 1.0 / depth.clamp_min(1e-3)
    disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    gdx = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    gdy = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    gix = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    giy = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (gdx * torch.exp(-gix)).mean() + (gdy * torch.exp(-giy)).mean()


def reprojection_terms(depth: torch.Tensor, target: torch.Tensor, sources: torch.Tensor, K: torch.Tensor,
                       T_src_tgt: torch.Tensor, source_valid: torch.Tensor | None = None, *, alpha: float = 0.85,
                       automask: bool = True) -> dict[str, torch.Tensor]:
    """Per-pixel minimum reprojection error over the sources, and where it counts.

    sources: (B,S,3,H,W); T_src_tgt: (B,S,4,4); source_valid: (B,S) bool (an unusable source never wins).
    Returns ``error`` (B,1,H,W, +inf where no source sees the pixel), ``mask`` (B,1,H,W bool: seen by
    a source and, with ``automask``, not matched better by an unwarped source) and ``identity`` (the
    unwarped sources' minimum error).
    """
    b, s = sources.shape[:2]
    inf = torch.tensor(float("inf"), device=depth.device, dtype=depth.dtype)
    if source_valid is None:
        source_valid = torch.ones(b, s, dtype=torch.bool, device=depth.device)
    reproj, ident = [], []
    for j in range(s):
        warped, in_view = warp(sources[:, j], depth, K, T_src_tgt[:, j])
        ok = in_view & source_valid[:, j].view(b, 1, 1, 1)
        reproj.append(torch.where(ok, photometric_error(warped, target, alpha), inf))
        ident.append(torch.where(source_valid[:, j].view(b, 1, 1, 1),
                                 photometric_error(sources[:, j], target, alpha), inf))
    error = torch.cat(reproj, 1).min(1, keepdim=True).values
    identity = torch.cat(ident, 1).min(1, keepdim=True).values
    mask = torch.isfinite(error)
    if automask:
        mask &= error < identity
    return {"error": error, "mask": mask, "identity": identity}


def photometric_loss(depth: torch.Tensor, target: torch.Tensor, sources: torch.Tensor, K: torch.Tensor,
                     T_src_tgt: torch.Tensor, source_valid: torch.Tensor | None = None, *, alpha: float = 0.85,
                     smoothness_weight: float = 1e-3, automask: bool = True) -> dict[str, torch.Tensor]:
    """All terms and their sum (``loss``): ``photometric`` (masked mean of the per-pixel minimum error),
    ``smoothness`` (unweighted) and ``automask_fraction`` (share of pixels that count, for the log).

    depth: (B,1,H,W) predicted target depth, metres; target: (B,3,H,W) in [0, 1] (the un-augmented image);
    the rest as :func:`reprojection_terms`.
    """
    depth = depth.float()
    r = reprojection_terms(depth, target.float(), sources.float(), K.float(), T_src_tgt.float(), source_valid,
                           alpha=alpha, automask=automask)
    mask = r["mask"]
    photo = r["error"][mask].mean() if mask.any() else depth.sum() * 0.0
    smooth = smoothness(depth, target.float())
    return {"loss": photo + smoothness_weight * smooth, "photometric": photo, "smoothness": smooth,
            "automask_fraction": mask.float().mean().detach()}
