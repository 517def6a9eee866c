"""Procedural materials: albedo, gloss and LiDAR reflectance at surface points, and the sky.

Textures are functions of the world position of a hit, so the same surface looks the same in
every frame and from both sensors. Noise comes from a bank of tileable fractal textures built
once per seed (FFT-filtered white noise) and sampled with a blur level chosen from the pixel
footprint, the cheap equivalent of mip-mapping: distant surfaces do not alias into static.
Periodic patterns (bricks, slabs, windows) are box-filtered analytically for the same reason.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict

import numpy as np

from xmodal_compress_ros.data.synthetic import scene as S

_TILE_BITS = 9
_TILE = 1 << _TILE_BITS
_LEVELS = 7


class NoiseBank:
    """Tileable zero-mean noise textures, each with ``_LEVELS`` pre-blurred versions.

    ``fbm``: natural 1/f fractal; ``grain``: flat-spectrum speckle; ``blotch``: large soft blobs.
    """

    def __init__(self, seed: int):
        rng = np.random.default_rng([seed, 7])
        f = np.fft.fftfreq(_TILE)
        fr = np.hypot(f[:, None], np.fft.rfftfreq(_TILE)[None, :])
        fr[0, 0] = 1.0
        spectra = {'fbm': fr ** -1.0, 'grain': fr ** -0.25, 'blotch': fr ** -1.6}
        self.tex: Dict[str, np.ndarray] = {}
        for name, amp in spectra.items():
            spec = np.fft.rfft2(rng.standard_normal((_TILE, _TILE))) * amp
            spec[0, 0] = 0.0
            scale = 1.0 / np.fft.irfft2(spec, s=(_TILE, _TILE)).std()
            levels = []
            for level in range(_LEVELS):
                sigma = 0.5 * 2 ** level if level else 0.0
                blur = np.exp(-2 * (np.pi * sigma * fr) ** 2)
                levels.append(np.fft.irfft2(spec * blur, s=(_TILE, _TILE)) * scale)
            self.tex[name] = np.stack(levels).astype(np.float32).reshape(-1)

    def sample(self, name: str, u: np.ndarray, v: np.ndarray, texel: float,
               footprint: np.ndarray) -> np.ndarray:
        """Bilinear sample of texture ``name`` at world coordinates (u, v) with ``texel`` metres per texel.

        ``footprint`` is the size in metres one pixel covers there; it picks the blur level.
        """
        tex = self.tex[name]
        scale = np.float32(1.0 / texel)
        level = np.log2(np.maximum(np.asarray(footprint, np.float32) * scale, np.float32(1.0)))
        level = np.minimum(level + np.float32(0.5), np.float32(_LEVELS - 1)).astype(np.int32)
        x = np.asarray(u, np.float32) * scale
        y = np.asarray(v, np.float32) * scale
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        mask = _TILE - 1
        xi = x0.astype(np.int32) & mask
        yi = y0.astype(np.int32) & mask
        r0 = (level << (2 * _TILE_BITS)) + (yi << _TILE_BITS)
        r1 = (level << (2 * _TILE_BITS)) + (((yi + 1) & mask) << _TILE_BITS)
        xj = (xi + 1) & mask
        top = tex.take(r0 + xi)
        top += (tex.take(r0 + xj) - top) * fx
        bottom = tex.take(r1 + xi)
        bottom += (tex.take(r1 + xj) - bottom) * fx
        return top + (bottom - top) * fy


@functools.lru_cache(maxsize=4)
def noise_bank(seed: int) -> NoiseBank:
    """The (read-only) noise bank of a seed, built once per process."""
    return NoiseBank(seed)


def cell_hash(ix: np.ndarray, iy: np.ndarray, seed) -> np.ndarray:
    """Deterministic uniform [0, 1) value per integer cell (ix, iy) and seed."""
    h = (np.asarray(ix, np.int64) * 0x8DA6B343 + np.asarray(iy, np.int64) * 0xD8163841
         + (np.asarray(seed, np.int64) & 0xFFFFF) * 0xCB1AB31F) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0x5BD1E995) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0xFFFFFF).astype(np.float32) / float(1 << 24)


def stripes(coord: np.ndarray, period, width, footprint: np.ndarray, phase=0.0) -> np.ndarray:
    """Anti-aliased mask of lines of ``width`` every ``period`` (line centres at phase + k period).

    Box-filters the edges over the footprint and fades to the mean coverage once a footprint
    spans the period, so far-away patterns average out instead of aliasing.
    """
    d = np.abs(((coord - phase) / period + 0.5) % 1.0 - 0.5) * period
    fp = np.maximum(footprint, 1e-4)
    mask = np.clip((width / 2 - d) / fp + 0.5, 0.0, 1.0)
    fade = np.clip(fp / period, 0.0, 1.0)
    return mask * (1 - fade) + (width / period) * fade


def box_mask(coord: np.ndarray, lo, hi, footprint: np.ndarray) -> np.ndarray:
    """Anti-aliased indicator of lo <= coord <= hi."""
    fp = np.maximum(footprint, 1e-4)
    return np.clip((coord - lo) / fp + 0.5, 0, 1) * np.clip((hi - coord) / fp + 0.5, 0, 1)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass
class Surface:
    """Material properties at n surface points.

    Attributes:
        albedo: n x 3 linear RGB diffuse reflectance.
        gloss: n, strength of the mirror (clear coat, glass) layer, 0..1.
        ir: n, reflectance at the LiDAR wavelength, 0..1.
        glass: n, True where the LiDAR beam mostly passes through or glances off (windows).
        leafy: n, True on foliage (porous to the LiDAR, shaded with a rough normal).
    """

    albedo: np.ndarray
    gloss: np.ndarray
    ir: np.ndarray
    glass: np.ndarray
    leafy: np.ndarray


class Materials:
    """Evaluates every material of a scene at hit points."""

    def __init__(self, scene: S.Scene):
        self.scene = scene
        self.noise = noise_bank(scene.seed)
        rng = np.random.default_rng([scene.seed, 11])
        self.edge_lines = bool(rng.random() < 0.6)
        self.dash = (float(rng.uniform(2.5, 4.0)), float(rng.uniform(5.0, 8.0)))

    def evaluate(self, prims: S.Primitives, prim: np.ndarray, p: np.ndarray, n: np.ndarray,
                 footprint: np.ndarray) -> Surface:
        """Material properties for hits of primitives ``prim`` at points ``p`` with normals ``n``.

        ``prims``: the scene's primitives where they were when hit (moving cars move their
        textures along); ``footprint``: metres one pixel (or beam) covers at each point.
        """
        count = len(prim)
        out = Surface(albedo=np.zeros((count, 3), np.float32), gloss=np.zeros(count, np.float32),
                      ir=np.zeros(count, np.float32), glass=np.zeros(count, bool),
                      leafy=np.zeros(count, bool))
        material = prims.material[prim]
        handlers = {
            S.GROUND: self._ground, S.SIDEWALK: self._sidewalk, S.KERB: self._kerb, S.FACADE: self._facade,
            S.CORNICE: self._plain, S.CAR_BODY: self._car_body, S.CAR_CABIN: self._car_cabin,
            S.TYRE: self._tyre, S.METAL: self._metal, S.TRUNK: self._trunk, S.FOLIAGE: self._foliage,
            S.HEDGE: self._foliage, S.SIGN: self._sign,
        }
        for mat, handler in handlers.items():
            sel = np.flatnonzero(material == mat)
            if len(sel):
                handler(out, sel, prims, prim[sel], p[sel], n[sel], footprint[sel])
        np.clip(out.albedo, 0.0, 0.95, out=out.albedo)
        np.clip(out.ir, 0.0, 1.0, out=out.ir)
        return out

    # -- helpers -----------------------------------------------------------------------------

    def _fbm(self, u, v, texel, fp, name='fbm'):
        return self.noise.sample(name, u, v, texel, fp)

    @staticmethod
    def _face_coords(prim_lo: np.ndarray, p: np.ndarray, n: np.ndarray):
        """2-D coordinates on a box face: (along, up) for walls, (x, y) for tops."""
        along = np.where(np.abs(n[:, 0]) > 0.5, p[:, 1] - prim_lo[:, 1], p[:, 0] - prim_lo[:, 0])
        up = np.where(np.abs(n[:, 2]) > 0.5, p[:, 1], p[:, 2])
        return along, up

    # -- materials ---------------------------------------------------------------------------

    def _ground(self, out, sel, prims, prim, p, n, fp):
        x, y = p[:, 0], p[:, 1]
        street = self.scene.street
        road = street.on_road(x, y)
        grain = self._fbm(x, y, 0.004, fp, 'grain')
        fine = self._fbm(x + 31.0, y, 0.03, fp)
        blotch = self._fbm(x, y + 17.0, 0.25, fp, 'blotch')
        # Asphalt: aggregate speckle, mid-scale wear and repaired patches.
        patch = np.clip((blotch - 1.0) * 3.0, 0, 1)
        lane = street.lane_width
        track = np.zeros_like(x)
        for centre in (-lane / 2, lane / 2):
            for off in (-0.8, 0.8):
                track += np.exp(-((y - centre - off) / 0.35) ** 2)
        grey = 0.07 * (1 + 0.3 * grain + 0.2 * fine + 0.1 * blotch)
        grey = grey * (1 - 0.25 * patch) * (1 - 0.12 * track)
        # Cracks: a contour of mid-scale noise, only where the surface is worn.
        contour = np.abs(self._fbm(x - 11.0, y + 5.0, 0.12, fp))
        worn = np.clip(blotch - 0.3, 0, 1)
        crack = box_mask(contour, -1.0, 0.05, fp * 4.0) * worn
        grey = grey * (1 - 0.45 * crack)
        cover = self._manholes(x, y, fp)
        grey = grey * (1 - cover) + cover * 0.09 * (1 + 0.4 * fine)
        marking = self._markings(x, y, fp)
        wear = np.clip(0.75 + 0.35 * self._fbm(x, y, 0.05, fp), 0.2, 1.0)
        marking *= wear
        asphalt = grey[:, None] * np.array([1.0, 1.0, 1.04], np.float32)
        paint = (0.6 * marking)[:, None] * np.array([1, 1, 0.96], np.float32)
        asphalt = asphalt * (1 - marking[:, None]) + paint
        # Verge beyond the sidewalks: grass and dirt.
        g = np.clip(0.5 + 0.5 * blotch, 0, 1)[:, None]
        verge = (g * np.array([0.07, 0.12, 0.03]) + (1 - g) * np.array([0.14, 0.11, 0.07]))
        verge = verge * (1 + 0.35 * grain + 0.2 * fine)[:, None]
        out.albedo[sel] = np.where(road[:, None], asphalt, verge)
        out.ir[sel] = np.where(road, 0.17 * (1 + 0.3 * fine) + 0.5 * marking, 0.3)

    def _manholes(self, x, y, fp):
        """Round covers at random spots in the lanes: a dark rim around a cast-iron grid."""
        cell = np.floor(x / 17.0)
        present = cell_hash(cell, 1, self.scene.seed) < 0.45
        xc = (cell + 0.25 + 0.5 * cell_hash(cell, 2, self.scene.seed)) * 17.0
        yc = np.where(cell_hash(cell, 3, self.scene.seed) < 0.5, -0.5, 0.5) * self.scene.street.lane_width
        r = np.hypot(x - xc, y - yc)
        disc = box_mask(r, -1.0, 0.32, fp) * present
        grid = np.maximum(stripes(x, 0.08, 0.02, fp), stripes(y, 0.08, 0.02, fp))
        rim = box_mask(r, 0.27, 0.32, fp)
        return disc * np.clip(0.6 + 0.4 * grid + rim, 0, 1)

    def _markings(self, x, y, fp):
        """Centre dashes, optional lane edge lines, zebra crossings and stop lines before crossings."""
        street = self.scene.street
        dash, gap = self.dash
        on_dash = box_mask((x % (dash + gap)), 0.0, dash, fp)
        m = box_mask(y, -0.06, 0.06, fp) * on_dash
        if self.edge_lines:
            lane = street.lane_width
            m = np.maximum(m, box_mask(np.abs(y), lane - 0.06, lane + 0.06, fp))
        for xc, width in street.intersections:
            for sign in (-1.0, 1.0):
                x0 = xc + sign * (width / 2 + 0.8)
                x1 = x0 + sign * 3.5
                in_x = box_mask(x, min(x0, x1), max(x0, x1), fp)
                in_y = box_mask(y, street.road_right + 0.3, street.road_left - 0.3, fp)
                zebra = stripes(y, 1.0, 0.5, fp) * in_x * in_y
                m = np.maximum(m, zebra)
            stop_x = xc - width / 2 - 5.0
            stop = box_mask(x, stop_x - 0.25, stop_x + 0.25, fp) * box_mask(y, street.road_right + 2.2,
                                                                            -0.1, fp)
            m = np.maximum(m, stop)
        return m

    def _sidewalk(self, out, sel, prims, prim, p, n, fp):
        x, y = p[:, 0], p[:, 1]
        top = n[:, 2] > 0.5
        size = np.maximum(prims.params[prim, 0], 0.1)
        style = prims.style[prim]
        # Running-bond pavers (style 1) are half the size and staggered.
        size = np.where(style == 1, size * 0.5, size)
        row = np.floor(y / size)
        xs = x + np.where(style == 1, (row % 2) * size * 0.5, 0.0)
        col = np.floor(xs / size)
        tint = 0.85 + 0.3 * cell_hash(col, row, prims.seed[prim])
        joints = np.maximum(stripes(xs, size, 0.012, fp), stripes(y, size, 0.012, fp))
        joints = np.where(style == 2, 0.0, joints)
        tint = np.where(style == 2, 1.0, tint)
        grain = self._fbm(x, y, 0.006, fp, 'grain')
        dirt = self._fbm(x + 7.0, y, 0.15, fp, 'blotch')
        shade = tint * (1 + 0.15 * grain + 0.08 * dirt) * (1 - 0.55 * joints)
        colour = prims.colour[prim] * np.where((style == 1)[:, None], np.array([1.15, 0.9, 0.8]), 1.0)
        side = (0.38 * (1 + 0.15 * grain))[:, None] * np.ones(3)
        out.albedo[sel] = np.where(top[:, None], colour * shade[:, None], side)
        out.ir[sel] = 0.28 * (1 + 0.2 * grain)

    def _kerb(self, out, sel, prims, prim, p, n, fp):
        x = p[:, 0]
        grain = self._fbm(x, p[:, 1] + p[:, 2], 0.005, fp, 'grain')
        joints = stripes(x, 1.0, 0.015, fp)
        shade = (1 + 0.18 * grain) * (1 - 0.5 * joints)
        out.albedo[sel] = prims.colour[prim] * shade[:, None]
        out.ir[sel] = 0.33

    def _plain(self, out, sel, prims, prim, p, n, fp):
        g = self._fbm(p[:, 0] + p[:, 1], p[:, 2], 0.05, fp)
        out.albedo[sel] = prims.colour[prim] * (1 + 0.06 * g)[:, None]
        out.ir[sel] = 0.15 + 0.3 * _luma(out.albedo[sel])

    def _facade(self, out, sel, prims, prim, p, n, fp):
        lo, hi = prims.lo[prim], prims.hi[prim]
        seed = prims.seed[prim]
        style = prims.style[prim]
        floor_h, spacing, win_w, win_h = (prims.params[prim, k] for k in range(4))
        along, z = self._face_coords(lo, p, n)
        length = np.where(np.abs(n[:, 0]) > 0.5, hi[:, 1] - lo[:, 1], hi[:, 0] - lo[:, 0])
        u = along + np.where(np.abs(n[:, 0]) > 0.5, 0.0, 0.37 * lo[:, 1])
        wall = self._wall(style, prims.colour[prim], seed, u, z, fp, floor_h)
        # Window grid, centred on the face; the side walls have fewer windows.
        n_cols = np.floor((length - 1.0) / spacing)
        start = (length - n_cols * spacing) / 2
        col = np.floor((along - start) / spacing)
        a = along - start - col * spacing - spacing / 2
        floor = np.floor(z / floor_h)
        b = z - floor * floor_h
        sill = (floor_h - win_h) * 0.55
        height = hi[:, 2]
        shop = (cell_hash(seed, 3, 5) < 0.35) & (style != S.BRICK)
        ground = floor == 0
        ww = np.where(ground & shop, spacing * 0.85, win_w)
        b0 = np.where(ground & shop, 0.45, sill)
        b1 = np.where(ground & shop, floor_h - 0.45, sill + win_h)
        side_wall = (np.abs(n[:, 0]) > 0.5) & (cell_hash(col, floor, seed) > 0.35)
        valid = (col >= 0) & (col < n_cols) & (z < height - 1.0) & ~side_wall & (np.abs(n[:, 2]) < 0.5)
        win = box_mask(a, -ww / 2, ww / 2, fp) * box_mask(b, b0, b1, fp) * valid
        frame_w = 0.07
        inner = (box_mask(a, -ww / 2 + frame_w, ww / 2 - frame_w, fp)
                 * box_mask(b, b0 + frame_w, b1 - frame_w, fp))
        mullion = box_mask(a, -0.03, 0.03, fp) * (ww > 1.1)
        glass_m = win * inner * (1 - mullion)
        frame_m = win - glass_m
        h = cell_hash(col + 1000 * floor, seed, 17)
        frame_col = np.where((cell_hash(seed, 9, 9) < 0.6)[:, None], np.array([0.75, 0.74, 0.7]),
                             np.array([0.12, 0.09, 0.07]))
        # Behind the glass: dark rooms, some with light curtains or blinds.
        curtain = (h < 0.3)[:, None]
        interior = np.where(curtain, np.array([0.45, 0.42, 0.36]) * (0.6 + 0.6 * h[:, None]),
                            np.array([0.03, 0.03, 0.035]) * (0.6 + 2.0 * h[:, None]))
        # The lintel shades the top of each recessed window.
        recess = 1 - 0.6 * box_mask(b, b1 - 0.18, b1, fp)
        interior = interior * recess[:, None]
        # Sills below the windows and rain streaks under them on plaster.
        sill_m = box_mask(b, b0 - 0.07, b0, fp) * box_mask(a, -ww / 2 - 0.08, ww / 2 + 0.08, fp) * valid
        albedo = wall * (1 - win)[:, None] + frame_col * frame_m[:, None] + interior * glass_m[:, None]
        albedo = albedo * (1 - sill_m)[:, None] + 0.65 * sill_m[:, None]
        # Shops carry a lettered sign band above their windows; every building has a front door.
        street_face = (np.abs(n[:, 1]) > 0.5) & (z < floor_h)
        band = box_mask(z, floor_h - 0.42, floor_h - 0.08, fp) * shop * street_face
        letters = (cell_hash(np.floor(along / 0.22), np.floor(z / 0.12), seed) < 0.5)
        letters = letters * box_mask(z, floor_h - 0.36, floor_h - 0.14, fp)
        sign_col = np.stack([cell_hash(seed, k, 31) for k in range(3)], 1) * 0.7
        sign = sign_col * (1 - letters)[:, None] + 0.85 * letters[:, None]
        albedo = albedo * (1 - band)[:, None] + sign * band[:, None]
        door_col = np.floor(cell_hash(seed, 5, 7) * np.maximum(n_cols, 1))
        door = (box_mask(a, -0.6, 0.6, fp) * box_mask(z, -1.0, 2.25, fp) * (col == door_col)
                * street_face * (style != S.OFFICE))
        door_paint = np.array([0.10, 0.06, 0.035], np.float32) * (0.6 + cell_hash(seed, 6, 6))[:, None]
        albedo = albedo * (1 - door)[:, None] + door_paint * door[:, None]
        glass_m = glass_m * (1 - door)
        roof = n[:, 2] > 0.5
        albedo[roof] = 0.12
        out.albedo[sel] = albedo
        out.gloss[sel] = glass_m * np.where(curtain[:, 0], 0.6, 1.0)
        out.glass[sel] = glass_m > 0.5
        out.ir[sel] = (0.12 + 0.3 * _luma(albedo)) * (1 - glass_m) + 0.04 * glass_m

    def _wall(self, style, colour, seed, u, z, fp, floor_h):
        """Wall albedo without openings: plaster, brick, concrete panels or office cladding."""
        g = self._fbm(u, z, 0.04, fp)
        grain = self._fbm(u, z, 0.004, fp, 'grain')
        stain = self._fbm(u * 3.0, z * 0.25, 0.05, fp, 'blotch')
        plaster = colour * (1 + 0.1 * g + 0.07 * grain - 0.08 * np.clip(stain, 0, 3))[:, None]
        # Bricks: 24 x 7.5 cm courses in running bond with light mortar.
        course = np.floor(z / 0.075)
        ub = u + (course % 2) * 0.12
        brick_tint = 0.8 + 0.4 * cell_hash(np.floor(ub / 0.24), course, seed)
        mortar = np.maximum(stripes(ub, 0.24, 0.012, fp), stripes(z, 0.075, 0.012, fp))
        brick = colour * (brick_tint * (1 + 0.1 * grain))[:, None]
        brick = brick * (1 - mortar)[:, None] + 0.45 * mortar[:, None]
        # Precast panels: per-panel tint, dark joints.
        pw = 1.2
        panel_tint = 0.9 + 0.2 * cell_hash(np.floor(u / pw), np.floor(z / floor_h), seed)
        pj = np.maximum(stripes(u, pw, 0.025, fp), stripes(z, floor_h, 0.025, fp))
        panel = colour * (panel_tint * (1 + 0.08 * g + 0.08 * grain) * (1 - 0.6 * pj))[:, None]
        office = colour * (1 + 0.03 * g)[:, None]
        wall = np.where((style == S.BRICK)[:, None], brick, plaster)
        wall = np.where((style == S.PANEL)[:, None], panel, wall)
        wall = np.where((style == S.OFFICE)[:, None], office, wall)
        # Plinth: a darker band along the bottom.
        plinth = box_mask(z, -1.0, 0.45, fp)[:, None]
        return wall * (1 - plinth) + plinth * colour * 0.55

    def _car_body(self, out, sel, prims, prim, p, n, fp):
        heading, length, top = prims.params[prim, 0], prims.params[prim, 1], prims.params[prim, 2]
        c = prims.center[prim]
        paint = prims.colour[prim].copy()
        dy = p[:, 1] - c[:, 1]
        hw = prims.radii[prim, 1]
        z = p[:, 2]
        along = (p[:, 0] - c[:, 0]) * heading
        facing = n[:, 0] * heading
        back, front, side = facing < -0.5, facing > 0.5, np.abs(n[:, 1]) > 0.5
        g = self._fbm(p[:, 0] + p[:, 1], z, 0.02, fp)
        albedo = paint * (1 + 0.03 * g)[:, None]
        gloss = np.ones(len(prim), np.float32)
        ir = 0.06 + 0.35 * _luma(paint)
        # Rear: tail lights, number plate, bumper.
        lamp = box_mask(np.abs(dy), hw - 0.4, hw - 0.06, fp) * box_mask(z, top - 0.28, top - 0.08, fp)
        plate = box_mask(dy, -0.26, 0.26, fp) * box_mask(z, 0.45, 0.56, fp)
        glyph = (cell_hash(np.floor(dy / 0.045), np.floor(z / 0.035), prims.seed[prim]) < 0.45)
        glyph_m = glyph * box_mask(dy, -0.2, 0.2, fp) * box_mask(z, 0.47, 0.54, fp)
        bumper = box_mask(z, 0.0, 0.42, fp) * (cell_hash(prims.seed[prim], 1, 1) < 0.5)
        tail = np.array([0.45, 0.015, 0.02], np.float32)
        head = np.array([0.55, 0.55, 0.52], np.float32)
        lamp_col = np.where(back[:, None], tail, head)
        is_end = (back | front)
        lamp = lamp * is_end
        plate = plate * is_end
        grille = box_mask(dy, -0.45, 0.45, fp) * box_mask(z, top - 0.3, top - 0.12, fp) * front
        albedo = albedo * (1 - lamp)[:, None] + lamp_col * lamp[:, None]
        albedo = albedo * (1 - plate)[:, None] + 0.7 * plate[:, None]
        albedo = albedo * (1 - glyph_m * is_end)[:, None] + 0.03 * (glyph_m * is_end)[:, None]
        albedo = albedo * (1 - grille)[:, None] + 0.03 * grille[:, None]
        trim = bumper * (is_end | side)
        albedo = albedo * (1 - 0.85 * trim)[:, None] + (0.04 * trim)[:, None]
        # Sides: door seams, handles, dark sill.
        seams = stripes(along, length * 0.3, 0.012, fp, phase=length * 0.05) * side
        handle = box_mask(z, top - 0.18, top - 0.13, fp) * stripes(along, length * 0.3, 0.16, fp,
                                                                   phase=length * 0.05 - 0.3) * side
        albedo = albedo * (1 - 0.8 * np.maximum(seams, handle))[:, None]
        ir = ir * (1 - plate) + 0.92 * plate
        ir = ir * (1 - lamp) + 0.65 * lamp
        out.albedo[sel] = albedo
        out.gloss[sel] = gloss * (1 - 0.7 * bumper * (is_end | side))
        out.ir[sel] = ir

    def _car_cabin(self, out, sel, prims, prim, p, n, fp):
        lo, hi = prims.lo[prim], prims.hi[prim]
        z = p[:, 2]
        roof = n[:, 2] > 0.5
        end = np.abs(n[:, 0]) > 0.5
        along = np.where(end, p[:, 1] - lo[:, 1], p[:, 0] - lo[:, 0])
        span = np.where(end, hi[:, 1] - lo[:, 1], hi[:, 0] - lo[:, 0])
        pillar = np.where(end, 0.12, 0.1)
        glass_m = (box_mask(along, pillar, span - pillar, fp)
                   * box_mask(z, lo[:, 2] + 0.05, hi[:, 2] - 0.07, fp))
        b_pillar = box_mask(along, span / 2 - 0.05, span / 2 + 0.05, fp) * ~end
        glass_m = glass_m * (1 - b_pillar) * ~roof
        paint = prims.colour[prim]
        glass_col = np.array([0.015, 0.018, 0.02], np.float32)
        out.albedo[sel] = paint * (1 - glass_m)[:, None] + glass_col * glass_m[:, None]
        out.gloss[sel] = 1.0
        out.glass[sel] = glass_m > 0.5
        out.ir[sel] = (0.06 + 0.35 * _luma(paint)) * (1 - glass_m) + 0.05 * glass_m

    def _tyre(self, out, sel, prims, prim, p, n, fp):
        c = prims.center[prim]
        r = np.hypot(p[:, 0] - c[:, 0], p[:, 2] - c[:, 2])
        rim = box_mask(r, -1.0, 0.2, fp) * (np.abs(n[:, 1]) > 0.5)
        spokes = 0.5 + 0.5 * np.cos(5 * np.arctan2(p[:, 2] - c[:, 2], p[:, 0] - c[:, 0]))
        rim_col = 0.35 * (0.6 + 0.4 * spokes) * box_mask(r, 0.06, 1.0, fp) + 0.05
        out.albedo[sel] = (0.025 * (1 - rim) + rim_col * rim)[:, None] * np.ones(3, np.float32)
        out.gloss[sel] = 0.3 * rim
        out.ir[sel] = 0.04 + 0.3 * rim

    def _metal(self, out, sel, prims, prim, p, n, fp):
        g = self._fbm(p[:, 0] + p[:, 1], p[:, 2], 0.03, fp)
        out.albedo[sel] = prims.colour[prim] * (1 + 0.1 * g)[:, None]
        out.gloss[sel] = 0.2
        out.ir[sel] = 0.35

    def _sign(self, out, sel, prims, prim, p, n, fp):
        c = prims.center[prim]
        front = n[:, 0] < -0.5
        r = np.hypot(p[:, 1] - c[:, 1], p[:, 2] - c[:, 2])
        style = prims.style[prim]
        border = np.where(style == 0, box_mask(r, 0.22, 0.3, fp),
                          np.maximum(box_mask(np.abs(p[:, 1] - c[:, 1]), 0.25, 0.3, fp),
                                     box_mask(np.abs(p[:, 2] - c[:, 2]), 0.25, 0.3, fp)))
        face = prims.colour[prim] * (1 - border)[:, None] + 0.8 * border[:, None]
        grey = np.full((len(prim), 3), 0.3, np.float32)
        out.albedo[sel] = np.where(front[:, None], face, grey)
        out.ir[sel] = np.where(front, 0.95, 0.3)

    def _trunk(self, out, sel, prims, prim, p, n, fp):
        c = prims.center[prim]
        ang = np.arctan2(p[:, 1] - c[:, 1], p[:, 0] - c[:, 0]) * 0.2
        bark = self._fbm(ang * 4.0, p[:, 2] * 0.25, 0.01, fp)
        out.albedo[sel] = prims.colour[prim] * np.clip(1 + 0.35 * bark, 0.3, 2)[:, None]
        out.ir[sel] = 0.22

    def _foliage(self, out, sel, prims, prim, p, n, fp):
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        leaves = self._fbm(x + 0.6 * y, z + 0.4 * y, 0.008, fp)
        clumps = self._fbm(y - 0.5 * x, z, 0.06, fp)
        hue = self._fbm(x, y + z, 0.2, fp, 'blotch')
        light = np.clip(0.8 + 0.45 * leaves + 0.3 * clumps, 0.15, 1.6)
        base = prims.colour[prim]
        yellow = np.clip(0.5 + 0.25 * hue, 0, 1)[:, None]
        colour = base * (1 - yellow * 0.5) + yellow * 0.5 * base * np.array([1.6, 1.2, 0.6])
        out.albedo[sel] = colour * light[:, None]
        out.ir[sel] = 0.2 * (1 + 0.3 * leaves)
        out.leafy[sel] = True


def sky_radiance(dirs: np.ndarray, sun: np.ndarray, cloudiness: float, noise: NoiseBank,
                 pixel_angle: float, drift: float = 0.0) -> np.ndarray:
    """Linear radiance (n x 3) of the sky seen along unit directions ``dirs``.

    A gradient from a hazy horizon to a blue zenith, a glow around the sun, and clouds from a
    fractal texture on a plane 1.5 km up (so they shrink and crowd towards the horizon).
    """
    dz = np.clip(dirs[:, 2], 0.0, 1.0)
    elev = np.sqrt(dz)
    horizon = np.array([2.3, 2.4, 2.6], np.float32)
    zenith = np.array([0.45, 0.75, 1.5], np.float32)
    sky = horizon * (1 - elev[:, None]) + zenith * elev[:, None]
    cos_sun = np.clip(dirs @ sun, -1, 1)
    glow = (0.5 * np.exp((cos_sun - 1) * 12.0) + 2.5 * np.exp((cos_sun - 1) * 400.0))
    sky = sky + glow[:, None] * np.array([1.0, 0.95, 0.8], np.float32)
    h = 1500.0 / np.maximum(dz, 0.03)
    u, v = dirs[:, 0] * h + drift, dirs[:, 1] * h
    fp = pixel_angle * h / np.maximum(dz, 0.03)
    density = noise.sample('fbm', u, v, 6.0, fp) + 0.5 * noise.sample('blotch', u, v, 30.0, fp)
    threshold = 1.6 - 2.4 * cloudiness
    cover = np.clip((density - threshold) / 0.9, 0.0, 1.0) * np.clip(dz * 12.0, 0.0, 1.0)
    shade = np.clip(0.7 + 0.25 * noise.sample('fbm', u + 300.0, v, 3.0, fp), 0.4, 1.1)
    cloud = (2.4 * shade)[:, None] * np.array([1.0, 1.0, 1.02], np.float32)
    return sky * (1 - cover[:, None]) + cloud * cover[:, None]
