"""Camera rendering: ray-cast the scene, shade it under sun and sky, and run a sensor model.

Light is linear: sun (Lambert, cast shadows from a shadow-ray test), sky (hemisphere light
reduced inside the street canyon and under cars) and a mirror layer that reflects the sky on
glass and car paint. The sensor applies exposure, vignetting, a slight optical blur, a filmic
tone curve, photon and read noise, and 8-bit quantisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from xmodal_compress_ros.data.synthetic import raycast
from xmodal_compress_ros.data.synthetic import scene as S
from xmodal_compress_ros.data.synthetic.textures import Materials, sky_radiance

_SUN = np.array([3.1, 2.95, 2.7], np.float32)        # sun irradiance on a surface facing it
_SKY = np.array([0.42, 0.5, 0.66], np.float32)       # sky irradiance on an open horizontal surface
_BOUNCE = np.array([0.12, 0.12, 0.11], np.float32)   # light reflected by the ground and walls
_MAX_DEPTH = 400.0


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera: intrinsics and its pose relative to the LiDAR.

    Attributes:
        K: 3x3 intrinsics of the rendered (rectified) image.
        width, height: image size.
        T_lidar_cam: 4x4 pose of the camera in the LiDAR frame (camera axes: x right, y down, z forward).
    """

    K: np.ndarray
    width: int
    height: int
    T_lidar_cam: np.ndarray


@dataclass(frozen=True)
class Exposure:
    """Per-frame sensor state: exposure gain and the noise generator seed."""

    gain: float
    noise_seed: Tuple[int, ...]


def _canyon_sky(street: S.Street, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Fraction of the sky a surface sees between the facades on both sides of the street."""
    fy, fh = street.facades_at(p[:, 0])
    y, z = p[:, 1], p[:, 2]
    dist_l = np.maximum(fy[0] - y, 0.3)
    dist_r = np.maximum(fy[1] + y, 0.3)
    # Cosine and sine of the elevation of each side's roof line, seen from the point.
    h_l, h_r = np.maximum(fh[0] - z, 0), np.maximum(fh[1] - z, 0)
    r_l, r_r = np.sqrt(h_l * h_l + dist_l * dist_l), np.sqrt(h_r * h_r + dist_r * dist_r)
    up = (dist_l / r_l + dist_r / r_r) / 2
    # A wall facing +y stands on the right side and looks across at the left side's facades.
    facing_left = np.clip(n[:, 1], 0, 1)
    facing_right = np.clip(-n[:, 1], 0, 1)
    wall = (facing_left * (1 - h_l / r_l) + facing_right * (1 - h_r / r_r)) / 2
    nz = np.clip(n[:, 2], -1, 1)
    horizontal = np.abs(n[:, 1]) < 0.5
    return np.where(horizontal, up * (1 + nz) / 2, wall + 0.15 * up)


def _contact_shadow(prims: S.Primitives, p: np.ndarray, on_ground: np.ndarray) -> np.ndarray:
    """Darkening of the ground under and right next to cars (sky light they block)."""
    factor = np.ones(len(p), np.float32)
    idx = np.flatnonzero(on_ground)
    if len(idx) == 0:
        return factor
    cars = np.flatnonzero(prims.material == S.CAR_BODY)
    order = idx[np.argsort(p[idx, 0])]
    xs = p[order, 0]
    for c in cars:
        lo, hi = prims.lo[c], prims.hi[c]
        a, b = np.searchsorted(xs, lo[0] - 0.6), np.searchsorted(xs, hi[0] + 0.6)
        if b <= a:
            continue
        sub = order[a:b]
        y = p[sub, 1]
        near = (y > lo[1] - 0.6) & (y < hi[1] + 0.6)
        sub = sub[near]
        dx = np.maximum(np.maximum(lo[0] - p[sub, 0], p[sub, 0] - hi[0]), 0)
        dy = np.maximum(np.maximum(lo[1] - p[sub, 1], p[sub, 1] - hi[1]), 0)
        d = np.hypot(dx, dy)
        factor[sub] *= 0.25 + 0.75 * np.clip(d / 0.6, 0, 1) ** 0.7
    return factor


def _leaf_dapple(materials: Materials, p: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Transmission of sunlight through a tree crown: patches of light in the shade."""
    slope = sun[:2] / sun[2]
    q = p[:, :2] - p[:, 2:3] * slope
    g = materials.noise.sample('fbm', q[:, 0], q[:, 1], 0.05, np.full(len(p), 0.05, np.float32))
    return np.clip((g - 0.9) * 0.8, 0.0, 0.7)


def render(scene: S.Scene, prims: S.Primitives, materials: Materials, camera: CameraModel,
           T_world_lidar: np.ndarray, exposure: Exposure) -> Tuple[np.ndarray, np.ndarray]:
    """Render one frame.

    Args:
        prims: the scene's primitives moved to the exposure time.
        T_world_lidar: 4x4 pose of the LiDAR (the vehicle) at the exposure time.
    Returns:
        image: H x W x 3 uint8 RGB.
        depth: H x W float32 depth along the camera's optical axis in metres (inf for the sky).
    """
    T_world_cam = T_world_lidar @ camera.T_lidar_cam
    R, C = T_world_cam[:3, :3], T_world_cam[:3, 3]
    grid = raycast.PinholeGrid(camera.K, camera.width, camera.height, R, C)
    t, prim = raycast.cast(prims, grid, _MAX_DEPTH)
    H, W = t.shape
    dirs = grid.dirs.reshape(-1, 3)
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    flat_t, flat_prim = t.reshape(-1), prim.reshape(-1)
    hit = np.flatnonzero(flat_prim >= 0)
    radiance = np.empty((H * W, 3), np.float32)
    fx = camera.K[0, 0]
    sky = np.flatnonzero(flat_prim < 0)
    radiance[sky] = sky_radiance(unit[sky], scene.sun, scene.cloudiness, materials.noise, 1.0 / fx)
    radiance[hit] = _shade(scene, prims, materials, C, dirs[hit], unit[hit], flat_t[hit], flat_prim[hit], fx)
    image = _sensor(radiance.reshape(H, W, 3), camera, exposure)
    depth = np.where(prim >= 0, t, np.inf).astype(np.float32)
    return image, depth


def _shade(scene, prims, materials, C, dirs, unit, t, prim, fx) -> np.ndarray:
    """Radiance of the surfaces hit along ``dirs`` (unit-depth rays) at parameters ``t``."""
    p = (C + dirs * t[:, None]).astype(np.float32)
    n = raycast.normals(prims, prim, p, unit)
    cos_view = np.abs(raycast.rowdot(n, unit))
    dist = t * np.linalg.norm(dirs, axis=1)
    footprint = (dist / fx / np.maximum(cos_view, 0.15)).astype(np.float32)
    surf = materials.evaluate(prims, prim, p, n, footprint)
    sun = scene.sun.astype(np.float32)
    leafy = np.flatnonzero(surf.leafy)
    if len(leafy):
        # A rough, noisy normal gives foliage its clumpy light and shade.
        jitter = np.stack([materials.noise.sample('fbm', p[leafy, 0] * k + p[leafy, 2], p[leafy, 1] * k,
                                                  0.03, footprint[leafy]) for k in (1.0, 1.3, 0.7)], 1)
        nl = n[leafy] + 0.55 * jitter
        n[leafy] = nl / np.linalg.norm(nl, axis=1, keepdims=True)
    lambert = np.clip(n @ sun, 0.0, 1.0)
    visibility = _sun_visibility(prims, materials, p, n, lambert > 0, sun, C)
    sky_vis = _canyon_sky(scene.street, p, n)
    sky_vis *= _contact_shadow(prims, p, (prim == 0) | ((n[:, 2] > 0.5) & (p[:, 2] < 0.2)))
    if len(leafy):
        _shade_inside_crowns(prims, materials, prim[leafy], p[leafy], footprint[leafy], leafy, sky_vis,
                             visibility)
    irradiance = (_SUN * (lambert * visibility)[:, None] + _SKY * sky_vis[:, None]
                  + _BOUNCE * (0.5 + 0.5 * sky_vis)[:, None])
    colour = surf.albedo * irradiance
    gloss = np.flatnonzero(surf.gloss > 0)
    if len(gloss):
        colour[gloss] = _mirror(scene, materials, unit[gloss], n[gloss], surf.gloss[gloss], colour[gloss],
                                visibility[gloss], fx, sun)
    # Aerial perspective: distant surfaces fade towards the horizon haze.
    haze = (1 - np.exp(-dist / 900.0)).astype(np.float32)[:, None]
    return colour * (1 - haze) + haze * np.array([1.5, 1.6, 1.75], np.float32)


def _sun_visibility(prims, materials, p, n, facing, sun, C) -> np.ndarray:
    """Fraction of the sun each point sees: 0 in cast shadows, dappled under trees, 0 facing away."""
    # Kerbs, sidewalks, wheels, bumpers and mirrors cast no shadow worth a test.
    size = (prims.hi - prims.lo).max(1)
    occluders = np.flatnonzero((prims.shape != S.PLANE) & (prims.material != S.SIDEWALK)
                               & (prims.material != S.KERB) & (prims.material != S.TYRE)
                               & (size >= 0.3) & (prims.hi[:, 2] > 0.6))
    near = occluders[np.linalg.norm(prims.center[occluders, :2] - C[:2], axis=1) < _MAX_DEPTH]
    lit = np.flatnonzero(facing)
    solid, leaves = raycast.sun_occlusion(prims, near, p[lit] + 0.03 * n[lit], sun)
    vis_lit = np.where(solid, 0.0, 1.0).astype(np.float32)
    dappled = leaves & ~solid
    vis_lit[dappled] = _leaf_dapple(materials, p[lit][dappled], sun)
    visibility = np.zeros(len(p), np.float32)
    visibility[lit] = vis_lit
    return visibility


def _shade_inside_crowns(prims, materials, prim, p, footprint, rows, sky_vis, visibility) -> None:
    """Darken foliage points (``rows``) towards the inside and underside of their crown, in place."""
    c, r = prims.center[prim], prims.radii[prim]
    height = np.clip((p[:, 2] - c[:, 2]) / r[:, 2], -1, 1)
    sky_vis[rows] *= 0.45 + 0.4 * (height + 1) / 2
    # Leaf clusters shade each other: sunlit patches among shaded ones.
    clusters = materials.noise.sample('fbm', p[:, 0] + p[:, 1], p[:, 2], 0.08, footprint)
    visibility[rows] *= np.clip(0.45 + 0.45 * clusters, 0.05, 1.0)


def _mirror(scene, materials, view, n, strength, diffuse, sun_vis, fx, sun) -> np.ndarray:
    """Blend a Fresnel-weighted reflection of the sky (and the sun's highlight) over ``diffuse``."""
    cos_i = np.clip(-(view * n).sum(1), 0.0, 1.0)
    fresnel = 0.04 + 0.96 * (1 - cos_i) ** 5
    refl = view + 2 * cos_i[:, None] * n
    refl /= np.linalg.norm(refl, axis=1, keepdims=True)
    env = sky_radiance(refl, scene.sun, scene.cloudiness, materials.noise, 1.0 / fx)
    # Reflections below the horizon see the street: dark and grey.
    below = np.clip(-refl[:, 2] * 4, 0, 1)[:, None]
    env = env * (1 - below) + below * 0.18
    # Facades opposite hide part of the sky in reflections near the horizon.
    env *= (0.55 + 0.45 * np.clip(refl[:, 2] * 3, 0, 1))[:, None]
    highlight = (np.clip(refl @ sun, 0, 1) ** 300 * 40.0 * sun_vis)[:, None]
    w = (fresnel * strength)[:, None]
    return diffuse * (1 - w) + w * env + strength[:, None] * highlight


def _sensor(radiance: np.ndarray, camera: CameraModel, exposure: Exposure) -> np.ndarray:
    """Exposure, vignetting, optical blur, tone curve, noise, 8-bit quantisation."""
    import cv2

    H, W = radiance.shape[:2]
    u = ((np.arange(W, dtype=np.float32) - camera.K[0, 2]) / camera.K[0, 0]) ** 2
    v = ((np.arange(H, dtype=np.float32) - camera.K[1, 2]) / camera.K[1, 1]) ** 2
    r2 = v[:, None] + u[None, :]
    vignette = (1.0 / (1.0 + 0.25 * r2) ** 2)[..., None]
    x = radiance * (vignette * exposure.gain)
    sigma = 0.4 * min(W / 1242.0, H / 375.0) ** 0.5
    x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigmaX=max(sigma, 0.3))
    rng = np.random.default_rng(list(exposure.noise_seed))
    # Photon (signal-dependent) and read noise in linear light, per colour channel.
    noise = rng.standard_normal(x.shape).astype(np.float32)
    x = x + noise * np.sqrt(0.0004 * np.maximum(x, 0) + 0.00001)
    # Filmic tone curve (Narkowicz's ACES fit): a toe that keeps shadows dark, a soft shoulder
    # for the bright sky; then display gamma.
    x = np.maximum(x, 0)
    y = (x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)
    y = np.clip(y, 0, 1) ** (1 / 1.8)
    return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
