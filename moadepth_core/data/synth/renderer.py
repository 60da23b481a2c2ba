"""Ray casting a :class:`Scene`: exact depth and a shaded, textured colour image.

Ray directions are built with camera-frame z = 1, so the ray parameter of the first hit *is*
the depth (Z along the optical axis, REP 118), never the ray length.
"""

from __future__ import annotations

import numpy as np

from moadepth_core.data.synth.scene import (
    CHECKER,
    NOISE,
    PLAIN,
    STRIPES,
    WOOD,
    Box,
    Cylinder,
    Material,
    Scene,
)
from moadepth_core.errors import DataError
from moadepth_core.geometry.camera import pixel_ray_planes, project_points
from moadepth_core.geometry.transforms import invert_transform, transform_points


# --------------------------------------------------------------------------------------------------
def _safe_inv(d: np.ndarray) -> np.ndarray:
    """1/d with exact zeros mapped to a huge finite value so slab maths never meets 0 * inf."""
    with np.errstate(divide="ignore"):
        inv = np.float32(1.0) / d
    bad = ~np.isfinite(inv)
    if bad.any():
        inv[bad] = np.float32(1e30)
    return inv


def _project_bbox(lo, hi, T_cam_world: np.ndarray, K: np.ndarray, width: int, height: int):
    """Pixel rectangle (r0, r1, c0, c1) that conservatively covers an AABB, or None if behind.

    Restricting each primitive's intersection to its screen rectangle is what
    makes the renderer fast: most furniture covers a small part of the image.
    """
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pc = transform_points(T_cam_world, corners)
    z = pc[:, 2]
    if np.all(z <= 1e-6):
        return None
    if np.any(z <= 1e-3):  # straddles the camera plane: projection is unbounded, test everything
        return 0, height, 0, width
    u, v = project_points(pc, K)
    c0 = max(int(np.floor(u.min())) - 1, 0)
    c1 = min(int(np.ceil(u.max())) + 2, width)
    r0 = max(int(np.floor(v.min())) - 1, 0)
    r1 = min(int(np.ceil(v.max())) + 2, height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


_NOISE_N = 256
# Lattice values for value noise: fixed (not seed dependent) so textures are a pure function of the
# material; padded by one row/column so the +1 neighbours never need a wrap.
_NOISE_TABLE = np.random.default_rng(20240601).random((_NOISE_N + 1, _NOISE_N + 1), dtype=np.float32)
_NOISE_TABLE[-1, :] = _NOISE_TABLE[0, :]
_NOISE_TABLE[:, -1] = _NOISE_TABLE[:, 0]
_NOISE_FLAT = _NOISE_TABLE.ravel()


def _value_noise(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1] (bilinear on a small lattice table: cache friendly and fast)."""
    u = u + np.float32(phase)
    v = v + np.float32(phase * 0.7)
    iu = np.floor(u)
    iv = np.floor(v)
    fu = u - iu
    fv = v - iv
    fu = fu * fu * (np.float32(3) - np.float32(2) * fu)
    fv = fv * fv * (np.float32(3) - np.float32(2) * fv)
    idx = (iu.astype(np.int32) & (_NOISE_N - 1)) * (_NOISE_N + 1) + (iv.astype(np.int32) & (_NOISE_N - 1))
    n00 = _NOISE_FLAT.take(idx)
    n01 = _NOISE_FLAT.take(idx + 1)
    n10 = _NOISE_FLAT.take(idx + (_NOISE_N + 1))
    n11 = _NOISE_FLAT.take(idx + (_NOISE_N + 2))
    a = n00 + (n10 - n00) * fu
    b = n01 + (n11 - n01) * fu
    return a + (b - a) * fv


def _pattern(mat: Material, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Blend weight in [0, 1] between the material's two colours at surface coordinates (u, v).

    Contrast fades where a pixel's footprint approaches the feature size, a
    cheap stand-in for mip-mapping that keeps distant checkers from aliasing.
    """
    s = np.float32(mat.scale)
    fade = np.clip(1.0 - footprint * (2.0 / s), 0.0, 1.0).astype(np.float32)
    if mat.pattern == PLAIN:
        return np.float32(0.3) * _value_noise(u * 2.0, v * 2.0, mat.phase)
    if mat.pattern == CHECKER:
        p = ((np.floor(u / s) + np.floor(v / s)) % 2).astype(np.float32)
    elif mat.pattern == STRIPES:
        p = (0.5 + 0.5 * np.sin(u * np.float32(2 * np.pi) / s)).astype(np.float32)
        p = np.clip((p - 0.5) * 3 + 0.5, 0, 1)
    elif mat.pattern == NOISE:
        p = 0.65 * _value_noise(u / s, v / s, mat.phase) + 0.35 * _value_noise(u * 4 / s, v * 4 / s, mat.phase)
    elif mat.pattern == WOOD:
        warp = _value_noise(u * 0.8, v * 6.0, mat.phase)
        g = v / s + 2.5 * warp
        p = (g - np.floor(g)) ** 3
        p = 0.7 * p + 0.3 * _value_noise(u * 0.5 / s, v * 8.0, mat.phase + 3.0)
    else:  # TILES
        fu = u / s - np.floor(u / s)
        fv = v / s - np.floor(v / s)
        grout = (np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) < 0.03).astype(np.float32)
        p = np.maximum(0.25 * _value_noise(u / s, v / s, mat.phase), grout)
    p = p.astype(np.float32)
    return 0.5 + (p - 0.5) * fade


def render(
    scene: Scene, pose_T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ray cast ``scene`` from a camera at ``pose_T_world_cam`` (world <- optical frame).

    Returns (rgb HxWx3 uint8, depth HxW float32 metres along the optical axis).
    The camera must be inside the room; every ray then hits something.
    """
    T = np.asarray(pose_T_world_cam, dtype=np.float64)
    R, o = T[:3, :3], T[:3, 3]
    L, W, H = scene.size
    if not (0 < o[0] < L and 0 < o[1] < W and 0 < o[2] < H):
        raise DataError(f"Camera position {o.round(3).tolist()} is outside the room {list(scene.size)}.")
    K = np.asarray(K, dtype=np.float64)
    xc, yc = pixel_ray_planes(K, height, width)
    f32 = np.float32
    # World ray directions with camera z = 1, so the hit parameter t is the depth.
    d = [f32(R[i, 0]) * xc + f32(R[i, 1]) * yc + f32(R[i, 2]) for i in range(3)]
    inv = [_safe_inv(di) for di in d]
    oo = [f32(v) for v in o]

    # Room (seen from inside): exit distance per axis, nearest wins.
    t_best = None
    face = None
    for ax, size in enumerate((L, W, H)):
        pos = d[ax] > 0
        # |1/d| so a ray parallel to a wall (d == 0) gets a huge positive distance, never a negative one
        t_ax = np.where(pos, f32(size) - oo[ax], oo[ax]) * np.abs(inv[ax])
        f_ax = np.where(pos, 2 * ax + 1, 2 * ax).astype(np.int16)
        if t_best is None:
            t_best, face = t_ax, f_ax
        else:
            closer = t_ax < t_best
            t_best = np.where(closer, t_ax, t_best)
            face = np.where(closer, f_ax, face)
    assert t_best is not None and face is not None
    ids = face  # 0..5 room faces; 6 + i for primitive i

    T_cam_world = invert_transform(T)
    prims: list[Box | Cylinder] = [*scene.boxes, *scene.cylinders]
    rects: list[tuple[int, int, int, int] | None] = []
    for pid, prim in enumerate(prims):
        if isinstance(prim, Box):
            lo, hi = prim.lo, prim.hi
        else:
            lo = (prim.x - prim.r, prim.y - prim.r, prim.z0)
            hi = (prim.x + prim.r, prim.y + prim.r, prim.z1)
        rect = _project_bbox(lo, hi, T_cam_world, K, width, height)
        rects.append(rect)
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        sl = (slice(r0, r1), slice(c0, c1))
        tb = t_best[sl]
        if isinstance(prim, Box):
            tn = tf = None
            for ax in range(3):
                a = (f32(lo[ax]) - oo[ax]) * inv[ax][sl]
                b = (f32(hi[ax]) - oo[ax]) * inv[ax][sl]
                near, far = np.minimum(a, b), np.maximum(a, b)
                tn = near if tn is None else np.maximum(tn, near)
                tf = far if tf is None else np.minimum(tf, far)
            hit = (tn <= tf) & (tn > 0) & (tn < tb)
            t_hit = tn
        else:
            dx, dy, dz = d[0][sl], d[1][sl], d[2][sl]
            ex, ey = oo[0] - f32(prim.x), oo[1] - f32(prim.y)
            a = dx * dx + dy * dy
            b = ex * dx + ey * dy  # half of the usual b
            c = ex * ex + ey * ey - f32(prim.r) ** 2
            disc = b * b - a * c
            with np.errstate(invalid="ignore", divide="ignore"):
                ts = (-b - np.sqrt(np.maximum(disc, 0))) / a
            z = oo[2] + ts * dz
            side = (disc > 0) & (ts > 0) & (z >= prim.z0) & (z <= prim.z1)
            t_hit = np.where(side, ts, np.inf).astype(f32)
            # caps: the camera can look down onto a bin (top) or up at a floating one (bottom)
            for zc in (prim.z1, prim.z0):
                if (zc - oo[2]) * (1 if zc == prim.z1 else -1) >= 0:
                    continue  # camera on the inner side of this cap's plane: cap faces away
                tc = (f32(zc) - oo[2]) * inv[2][sl]
                px, py = ex + tc * dx, ey + tc * dy
                cap = (tc > 0) & (px * px + py * py <= f32(prim.r) ** 2) & (tc < t_hit)
                t_hit = np.where(cap, tc, t_hit)
            hit = t_hit < tb
        if np.any(hit):
            t_best[sl] = np.where(hit, t_hit, tb)
            ids[sl] = np.where(hit, pid + 6, ids[sl])

    depth = t_best.astype(np.float32)
    rgb = _shade(scene, prims, ids, depth, d, oo, float(K[0, 0]))
    return rgb, depth


def _shade(scene: Scene, prims: list, ids: np.ndarray, depth: np.ndarray, d: list[np.ndarray],
           oo: list, fx: float) -> np.ndarray:
    """Texture and light every pixel, one surface at a time, touching each pixel once.

    Pixels are grouped by surface id with one stable counting sort, so each
    surface's normal, texture and Lambert term are computed on just its pixels.
    """
    f32 = np.float32
    height, width = depth.shape
    flat_ids = ids.ravel()
    order = np.argsort(flat_ids, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(flat_ids, minlength=6 + len(prims)))])
    # one gather puts every surface's pixels next to each other; groups are then plain slices
    srt = np.stack([depth.ravel(), d[0].ravel(), d[1].ravel(), d[2].ravel()]).take(order, axis=1)
    out_sorted = np.empty((height * width, 3), dtype=np.float32)
    lpos = [f32(v) for v in scene.light]
    inv_fx = f32(1.0 / fx)
    for gid in range(6 + len(prims)):
        a, b = bounds[gid], bounds[gid + 1]
        if a == b:
            continue
        t, dx, dy, dz = srt[0, a:b], srt[1, a:b], srt[2, a:b], srt[3, a:b]
        x, y, z = oo[0] + t * dx, oo[1] + t * dy, oo[2] + t * dz
        if gid < 6:
            ax = gid // 2
            sign = f32(1.0 if gid % 2 == 0 else -1.0)  # room normals point inward
            nx, ny, nz = [sign if k == ax else f32(0.0) for k in range(3)]
            mat = scene.materials[gid]
            u, v = [(y, z), (y, z), (x, z), (x, z), (x, y), (x, y)][gid]
            if ax < 2:
                u = u + f32(7.0 * gid)  # walls do not share texture phase along the corner
        else:
            prim = prims[gid - 6]
            mat = scene.materials[prim.material]
            if isinstance(prim, Box):
                dist = np.stack([np.abs(x - f32(prim.lo[0])), np.abs(x - f32(prim.hi[0])),
                                 np.abs(y - f32(prim.lo[1])), np.abs(y - f32(prim.hi[1])),
                                 np.abs(z - f32(prim.lo[2])), np.abs(z - f32(prim.hi[2]))])
                f = dist.argmin(axis=0)
                ax = f // 2
                sign = np.where(f % 2 == 0, f32(-1.0), f32(1.0))
                nx = np.where(ax == 0, sign, f32(0.0))
                ny = np.where(ax == 1, sign, f32(0.0))
                nz = np.where(ax == 2, sign, f32(0.0))
                u = np.where(ax == 0, y, x)
                v = np.where(ax == 2, y, z)
            else:
                ex, ey = x - f32(prim.x), y - f32(prim.y)
                on_cap = (np.abs(z - f32(prim.z1)) < 1e-4) | (np.abs(z - f32(prim.z0)) < 1e-4)
                rad = np.maximum(np.sqrt(ex * ex + ey * ey), f32(1e-6))
                nx = np.where(on_cap, f32(0.0), ex / rad)
                ny = np.where(on_cap, f32(0.0), ey / rad)
                nz = np.where(on_cap, np.sign(z - f32((prim.z0 + prim.z1) / 2)), f32(0.0)).astype(f32)
                u = np.where(on_cap, x, np.arctan2(ey, ex) * f32(prim.r))
                v = np.where(on_cap, y, z)
        # pixel footprint on the surface (metres), larger at grazing angles: drives texture fading
        dn = np.sqrt(dx * dx + dy * dy + dz * dz)
        cosv = np.abs(nx * dx + ny * dy + nz * dz) / dn
        foot = t * inv_fx * dn / np.maximum(cosv, f32(0.15))
        w = _pattern(mat, u, v, foot)
        # Lambert from one point light with soft distance falloff, plus ambient
        lx, ly, lz = lpos[0] - x, lpos[1] - y, lpos[2] - z
        dist2 = lx * lx + ly * ly + lz * lz
        ndotl = (nx * lx + ny * ly + nz * lz) / np.sqrt(dist2)
        shade = f32(0.32) + f32(0.85) * np.maximum(ndotl, f32(0.0)) / (f32(1.0) + f32(0.04) * dist2)
        c1 = np.asarray(mat.color1, dtype=np.float32) * f32(255.0)
        c2 = np.asarray(mat.color2, dtype=np.float32) * f32(255.0)
        out_sorted[a:b] = (c1 + (c2 - c1) * w[:, None]) * shade[:, None]
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    np.clip(out + f32(0.5), 0, 255, out=out)
    return out.astype(np.uint8).reshape(height, width, 3)
