"""Vectorised ray casting against the scene's analytic primitives.

Rays come in grids (a pinhole image, a LiDAR's beams x azimuth columns). Each grid can bound, for
an axis-aligned box, the block of rows and columns whose rays may hit it, so every primitive is
tested only against the rays of its own block: the cost is about the image area each primitive
covers, not rays x primitives.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Tuple

import numpy as np

from xmodal_compress_ros.data.synthetic.scene import BOX, CYLINDER, ELLIPSOID, PLANE, Primitives

_EPS = 1e-4
# The 12 edges of a box as pairs of corner indices (corner bit i set = upper bound on axis i).
_EDGES = np.array([(a, a | (1 << k)) for a in range(8) for k in range(3) if not a & (1 << k)])


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """M x 8 x 3 corners of M boxes; bit k of the corner index picks hi on axis k."""
    bits = (np.arange(8)[:, None] >> np.arange(3)[None, :]) & 1
    return np.where(bits[None].astype(bool), hi[:, None, :], lo[:, None, :])


class RayGrid(ABC):
    """An H x W grid of rays: ``origins`` broadcastable to H x W x 3, ``dirs`` H x W x 3, world frame.

    Components are also kept as separate contiguous H x W planes (``o``, ``d``, ``inv``: tuples of
    three), which keeps the per-primitive arithmetic on plain 2-D arrays.
    """

    def __init__(self, origins: np.ndarray, dirs: np.ndarray):
        self.origins = origins.astype(np.float32)
        self.dirs = dirs.astype(np.float32)
        self.o = tuple(np.ascontiguousarray(self.origins[..., k]) for k in range(3))
        self.d = tuple(np.ascontiguousarray(self.dirs[..., k]) for k in range(3))
        with np.errstate(divide='ignore'):
            self.inv = tuple((1.0 / c).astype(np.float32) for c in self.d)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.dirs.shape[:2]

    @abstractmethod
    def blocks(self, lo: np.ndarray, hi: np.ndarray) -> List[List[Tuple[slice, slice]]]:
        """For each of M boxes, the (row slice, column slice) blocks holding every ray that may hit it."""

    def block(self, rows: slice, cols: slice):
        """Origins, directions and inverse directions of a block (origins keep broadcast axes of size 1)."""
        o0 = self.o[0]
        orows = rows if o0.shape[0] > 1 else slice(None)
        ocols = cols if o0.shape[1] > 1 else slice(None)
        return (tuple(c[orows, ocols] for c in self.o), tuple(c[rows, cols] for c in self.d),
                tuple(c[rows, cols] for c in self.inv))


class PinholeGrid(RayGrid):
    """One ray through each pixel centre of a pinhole camera.

    Directions have unit depth in the camera frame, so the ray parameter of a hit is its depth.
    """

    def __init__(self, K: np.ndarray, width: int, height: int, R_world_cam: np.ndarray, centre: np.ndarray):
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
        super().__init__(np.asarray(centre, float).reshape(1, 1, 3), cam @ R_world_cam.T)
        self.K, self.R, self.C = K, R_world_cam, np.asarray(centre, float)
        self.width, self.height = width, height

    def blocks(self, lo, hi):
        near = 0.05
        cam = (box_corners(lo, hi) - self.C) @ self.R        # M x 8 x 3, camera frame
        z = cam[..., 2]
        a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]    # M x 12 x 3
        za, zb = a[..., 2], b[..., 2]
        crosses = (za - near) * (zb - near) < 0
        with np.errstate(divide='ignore', invalid='ignore'):
            s = np.where(crosses, (near - za) / (zb - za), 0.0)
        cut = a + s[..., None] * (b - a)
        pts = np.concatenate([cam, cut], axis=1)
        valid = np.concatenate([z >= near, crosses], axis=1)
        with np.errstate(divide='ignore', invalid='ignore'):
            u = self.K[0, 0] * pts[..., 0] / pts[..., 2] + self.K[0, 2]
            v = self.K[1, 1] * pts[..., 1] / pts[..., 2] + self.K[1, 2]
        inf = np.inf
        u0 = np.where(valid, u, inf).min(1)
        u1 = np.where(valid, u, -inf).max(1)
        v0 = np.where(valid, v, inf).min(1)
        v1 = np.where(valid, v, -inf).max(1)
        out = []
        for i in range(len(lo)):
            if not valid[i].any():
                out.append([])
                continue
            c0, c1 = max(int(np.floor(u0[i])), 0), min(int(np.ceil(u1[i])) + 1, self.width)
            r0, r1 = max(int(np.floor(v0[i])), 0), min(int(np.ceil(v1[i])) + 1, self.height)
            out.append([(slice(r0, r1), slice(c0, c1))] if c1 > c0 and r1 > r0 else [])
        return out


class SphericalGrid(RayGrid):
    """A spinning LiDAR: rows are beams sorted by elevation (highest first), columns are firings.

    Column j fires at azimuth ``pi - 2 pi (j + 0.5) / W`` in the sensor frame (the sweep starts
    facing backwards and turns clockwise seen from above, like a Velodyne). Each column may have
    its own origin, which models the vehicle moving during the sweep.

    Args:
        elevations: beam elevations in radians, sorted descending.
        columns: azimuth steps per revolution.
        R_world_sensor: sensor orientation; origins: W x 3 per-column sensor positions.
    """

    def __init__(self, elevations: np.ndarray, columns: int, R_world_sensor: np.ndarray, origins: np.ndarray):
        az = np.pi - 2 * np.pi * (np.arange(columns) + 0.5) / columns
        el = np.asarray(elevations, np.float64)
        d = np.stack([np.cos(el)[:, None] * np.cos(az)[None, :], np.cos(el)[:, None] * np.sin(az)[None, :],
                      np.repeat(np.sin(el)[:, None], columns, axis=1)], axis=-1)
        super().__init__(np.asarray(origins, float).reshape(1, columns, 3), d @ R_world_sensor.T)
        self.sensor_dirs = d.astype(np.float32)
        self.elevations, self.columns, self.R = el, columns, R_world_sensor
        # The sensor's yaw and tilt, to map world angles to grid indices with a safety margin.
        self.yaw = float(np.arctan2(R_world_sensor[1, 0], R_world_sensor[0, 0]))
        self.tilt = float(np.arccos(np.clip(R_world_sensor[2, 2], -1, 1)))

    def blocks(self, lo, hi):
        o = self.origins[0]
        mid = o[len(o) // 2]
        spread = np.abs(o - mid).max(0)
        rel_lo, rel_hi = lo - mid - spread, hi - mid + spread
        # Horizontal distance from the sensor to the nearest and farthest points of the footprint.
        nx = np.maximum(np.maximum(rel_lo[:, 0], -rel_hi[:, 0]), 0)
        ny = np.maximum(np.maximum(rel_lo[:, 1], -rel_hi[:, 1]), 0)
        r_min = np.hypot(nx, ny)
        r_max = np.hypot(np.maximum(-rel_lo[:, 0], rel_hi[:, 0]), np.maximum(-rel_lo[:, 1], rel_hi[:, 1]))
        el_hi = np.arctan2(rel_hi[:, 2], np.where(rel_hi[:, 2] > 0, r_min, r_max))
        el_lo = np.arctan2(rel_lo[:, 2], np.where(rel_lo[:, 2] < 0, r_min, r_max))
        pad = self.tilt + np.radians(0.3)
        # Rows: elevations are descending.
        neg = -self.elevations
        r0 = np.searchsorted(neg, -(el_hi + pad), side='left')
        r1 = np.searchsorted(neg, -(el_lo - pad), side='right')
        # Azimuth interval of the footprint as seen from outside it (always narrower than pi).
        cx, cy = (rel_lo[:, 0] + rel_hi[:, 0]) / 2, (rel_lo[:, 1] + rel_hi[:, 1]) / 2
        centre_az = np.arctan2(cy, cx)
        xs = np.stack([rel_lo[:, 0], rel_hi[:, 0], rel_lo[:, 0], rel_hi[:, 0]], 1)
        ys = np.stack([rel_lo[:, 1], rel_lo[:, 1], rel_hi[:, 1], rel_hi[:, 1]], 1)
        rel_az = np.angle(np.exp(1j * (np.arctan2(ys, xs) - centre_az[:, None])))
        a_lo, a_hi = centre_az + rel_az.min(1), centre_az + rel_az.max(1)
        W = self.columns
        col_pad = 2 + self.tilt * W / (2 * np.pi)
        j_lo = (np.pi + self.yaw - a_hi) / (2 * np.pi) * W - 0.5 - col_pad
        j_hi = (np.pi + self.yaw - a_lo) / (2 * np.pi) * W - 0.5 + col_pad
        inside = r_min <= 0
        out = []
        for i in range(len(lo)):
            rows = slice(int(r0[i]), int(r1[i]))
            if rows.stop <= rows.start:
                out.append([])
                continue
            if inside[i] or j_hi[i] - j_lo[i] >= W:
                out.append([(rows, slice(0, W))])
                continue
            c0 = int(np.floor(j_lo[i]))
            c1 = int(np.ceil(j_hi[i])) + 1
            shift = (c0 // W) * W
            c0, c1 = c0 - shift, c1 - shift
            blocks = [(rows, slice(c0, min(c1, W)))]
            if c1 > W:
                blocks.append((rows, slice(0, c1 - W)))
            out.append(blocks)
        return out


def _intersect(prims: Primitives, i: int, o, d, inv) -> np.ndarray:
    """Ray parameter of the first hit of primitive i (inf where missed).

    ``o``, ``d``, ``inv``: x, y, z components of origins, directions and 1 / directions, each an
    array or a scalar, all broadcastable together.
    """
    shape = prims.shape[i]
    if shape == BOX:
        lo, hi = prims.lo[i], prims.hi[i]
        t_near = t_far = None
        for k in range(3):
            a = (lo[k] - o[k]) * inv[k]
            b = (hi[k] - o[k]) * inv[k]
            near, far = np.minimum(a, b), np.maximum(a, b)
            t_near = near if t_near is None else np.maximum(t_near, near)
            t_far = far if t_far is None else np.minimum(t_far, far)
        return np.where((t_far >= t_near) & (t_near > _EPS), t_near, np.float32(np.inf))
    c, r = prims.center[i], prims.radii[i]
    if shape == CYLINDER:
        ox, oy = o[0] - c[0], o[1] - c[1]
        dx, dy = d[0], d[1]
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        disc = b * b - a * (ox * ox + oy * oy - r[0] * r[0])
        with np.errstate(invalid='ignore', divide='ignore'):
            t = (-b - np.sqrt(disc)) / a
        z = o[2] + t * d[2]
        side = np.where((disc > 0) & (t > _EPS) & (z >= prims.lo[i, 2]) & (z <= prims.hi[i, 2]), t, np.inf)
        # The top cap, for rays looking down on a pole or trunk.
        with np.errstate(divide='ignore', invalid='ignore'):
            tc = (prims.hi[i, 2] - o[2]) * inv[2]
        hx, hy = ox + tc * dx, oy + tc * dy
        cap = np.where((d[2] < 0) & (tc > _EPS) & (hx * hx + hy * hy <= r[0] * r[0]), tc, np.inf)
        return np.minimum(side, cap)
    if shape == ELLIPSOID:
        oo = [(o[k] - c[k]) / r[k] for k in range(3)]
        dd = [d[k] / r[k] for k in range(3)]
        a = dd[0] * dd[0] + dd[1] * dd[1] + dd[2] * dd[2]
        b = oo[0] * dd[0] + oo[1] * dd[1] + oo[2] * dd[2]
        cc = oo[0] * oo[0] + oo[1] * oo[1] + oo[2] * oo[2] - 1.0
        disc = b * b - a * cc
        with np.errstate(invalid='ignore'):
            t = (-b - np.sqrt(disc)) / a
        return np.where((disc > 0) & (t > _EPS), t, np.inf)
    raise ValueError(f'unknown primitive shape {shape}')


def cast(prims: Primitives, grid: RayGrid, max_t: float) -> Tuple[np.ndarray, np.ndarray]:
    """First hit of every ray of the grid.

    Returns:
        t: H x W float32 ray parameter of the hit (inf where nothing is hit within ``max_t``).
        prim: H x W int32 primitive row (-1 where nothing is hit, 0 for the ground plane).
    """
    H, W = grid.shape
    t = np.full((H, W), np.inf, np.float32)
    prim = np.full((H, W), -1, np.int32)
    dz = grid.d[2]
    with np.errstate(divide='ignore', invalid='ignore'):
        tg = -np.broadcast_to(grid.o[2], (H, W)) * grid.inv[2]
    ground = (dz < 0) & (tg < max_t)
    t[ground], prim[ground] = tg[ground], 0
    candidates = np.flatnonzero(prims.shape != PLANE)
    # Drop primitives out of range before the per-primitive bounds.
    centre = grid.origins.reshape(-1, 3).mean(0)
    gap = np.maximum(np.maximum(prims.lo[candidates] - centre, centre - prims.hi[candidates]), 0)
    candidates = candidates[np.linalg.norm(gap, axis=1) < max_t]
    blocks = grid.blocks(prims.lo[candidates], prims.hi[candidates])
    for i, block_list in zip(candidates, blocks):
        for rows, cols in block_list:
            th = _intersect(prims, i, *grid.block(rows, cols))
            tv = t[rows, cols]
            closer = (th < tv) & (th < max_t)
            np.copyto(tv, th, where=closer)
            np.copyto(prim[rows, cols], i, where=closer)
    return t, prim


def rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of two n x 3 arrays."""
    return np.einsum('ij,ij->i', a, b)


def normals(prims: Primitives, ids: np.ndarray, points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Unit surface normals (n x 3) at hit points of primitives ``ids``, facing against ``dirs``."""
    n = np.zeros_like(points)
    n[:, 2] = 1.0
    shape = prims.shape[ids]
    box = np.flatnonzero(shape == BOX)
    if len(box):
        rel = (points[box] - prims.center[ids[box]]) / np.maximum(prims.radii[ids[box]], 1e-6)
        a = np.abs(rel)
        on_x = (a[:, 0] >= a[:, 1]) & (a[:, 0] >= a[:, 2])
        on_y = ~on_x & (a[:, 1] >= a[:, 2])
        nb = np.zeros_like(rel)
        nb[:, 0] = np.where(on_x, np.sign(rel[:, 0]), 0)
        nb[:, 1] = np.where(on_y, np.sign(rel[:, 1]), 0)
        nb[:, 2] = np.where(on_x | on_y, 0, np.sign(rel[:, 2]))
        n[box] = nb
    cyl = np.flatnonzero(shape == CYLINDER)
    if len(cyl):
        rel = points[cyl] - prims.center[ids[cyl]]
        top = points[cyl, 2] >= prims.hi[ids[cyl], 2] - 1e-3
        nc = np.stack([rel[:, 0], rel[:, 1], np.zeros(len(rel), np.float32)], 1)
        nc /= np.sqrt(rowdot(nc, nc))[:, None] + 1e-12
        nc[top] = (0.0, 0.0, 1.0)
        n[cyl] = nc
    ell = np.flatnonzero(shape == ELLIPSOID)
    if len(ell):
        ne = (points[ell] - prims.center[ids[ell]]) / prims.radii[ids[ell]] ** 2
        n[ell] = ne / (np.sqrt(rowdot(ne, ne))[:, None] + 1e-12)
    flip = rowdot(n, dirs) > 0
    n[flip] *= -1
    return n


def sun_occlusion(prims: Primitives, occluders: np.ndarray, points: np.ndarray,
                  sun: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Which points have their path to the sun blocked, by solid primitives or by ellipsoids (foliage).

    Rays towards the sun project to a single point q on the ground plane (along the sun
    direction), and a primitive can only block points whose q falls inside its projected
    footprint, so each occluder is tested against the points of its footprint only.

    Args:
        occluders: primitive rows that cast shadows; points: n x 3 (already offset off their surface);
        sun: unit vector towards the sun, pointing up.
    Returns:
        solid, leafy: boolean arrays of length n.
    """
    solid = np.zeros(len(points), bool)
    leafy = np.zeros(len(points), bool)
    if len(points) == 0 or len(occluders) == 0:
        return solid, leafy
    slope = sun[:2] / sun[2]
    q = points[:, :2] - points[:, 2:3] * slope
    order = np.argsort(q[:, 0], kind='stable')
    qx = q[order, 0]
    corners = box_corners(prims.lo[occluders], prims.hi[occluders])
    fq = corners[..., :2] - corners[..., 2:3] * slope
    fx0, fx1 = fq[..., 0].min(1), fq[..., 0].max(1)
    fy0, fy1 = fq[..., 1].min(1), fq[..., 1].max(1)
    lo_idx = np.searchsorted(qx, fx0, side='left')
    hi_idx = np.searchsorted(qx, fx1, side='right')
    d = tuple(np.float32(c) for c in sun)
    with np.errstate(divide='ignore'):
        inv = tuple(np.float32(1.0) / c for c in d)
    px, py, pz = (np.ascontiguousarray(points[:, k]) for k in range(3))
    for k, i in enumerate(occluders):
        if hi_idx[k] <= lo_idx[k]:
            continue
        idx = order[lo_idx[k]:hi_idx[k]]
        qy = q[idx, 1]
        idx = idx[(qy >= fy0[k]) & (qy <= fy1[k]) & (pz[idx] < prims.hi[i, 2])]
        if len(idx) == 0:
            continue
        hit = np.isfinite(_intersect(prims, i, (px[idx], py[idx], pz[idx]), d, inv))
        if prims.shape[i] == ELLIPSOID:
            leafy[idx[hit]] = True
        else:
            solid[idx[hit]] = True
    return solid, leafy
