"""Procedural street layout: a seeded set of analytic primitives with materials.

World frame: x along the street (the ego vehicle drives towards +x), y to the left, z up, the
ground is the plane z = 0. Every object is a union of primitives of four shapes: the ground plane,
axis-aligned boxes (buildings, kerbs, sidewalks, car bodies), vertical cylinders (poles, trunks)
and axis-aligned ellipsoids (tree crowns). Cars in traffic move along x at a constant speed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

# Shapes.
PLANE, BOX, CYLINDER, ELLIPSOID = 0, 1, 2, 3

# Materials (what the texture and LiDAR-reflectance functions switch on).
GROUND = 0
SIDEWALK = 1
KERB = 2
FACADE = 3
CORNICE = 4
CAR_BODY = 5
CAR_CABIN = 6
TYRE = 7
METAL = 8
TRUNK = 9
FOLIAGE = 10
SIGN = 11
HEDGE = 12
N_MATERIALS = 13

# Facade styles (params of FACADE primitives: floor height, window spacing, window width, window height).
PLASTER, BRICK, PANEL, OFFICE = 0, 1, 2, 3

# Car paint colours (linear RGB) with their share of a European street's parked cars.
_CAR_PAINTS = np.array([
    [0.65, 0.65, 0.63], [0.02, 0.02, 0.025], [0.22, 0.22, 0.23], [0.45, 0.46, 0.48],
    [0.05, 0.10, 0.32], [0.45, 0.03, 0.03], [0.04, 0.14, 0.07], [0.55, 0.42, 0.20],
    [0.30, 0.30, 0.36], [0.60, 0.25, 0.03]], dtype=np.float32)
_CAR_PAINT_SHARE = np.array([0.24, 0.18, 0.16, 0.14, 0.08, 0.07, 0.04, 0.03, 0.04, 0.02])

_SIGN_COLOURS = [(0.6, 0.02, 0.02), (0.02, 0.12, 0.5), (0.7, 0.6, 0.02), (0.75, 0.75, 0.75)]

# Facade base colours (linear RGB) per style.
_FACADE_COLOURS = {
    PLASTER: np.array([[0.62, 0.55, 0.42], [0.70, 0.68, 0.62], [0.55, 0.36, 0.25], [0.48, 0.52, 0.50],
                       [0.72, 0.60, 0.38], [0.58, 0.50, 0.52], [0.80, 0.78, 0.70]], dtype=np.float32),
    BRICK: np.array([[0.38, 0.14, 0.08], [0.45, 0.22, 0.12], [0.30, 0.15, 0.10], [0.50, 0.35, 0.22]],
                    dtype=np.float32),
    PANEL: np.array([[0.45, 0.45, 0.43], [0.55, 0.53, 0.48], [0.35, 0.37, 0.38]], dtype=np.float32),
    OFFICE: np.array([[0.30, 0.33, 0.36], [0.50, 0.50, 0.50], [0.20, 0.22, 0.25]], dtype=np.float32),
}


@dataclass
class Primitives:
    """Structure of arrays, one row per primitive (row 0 is the ground plane).

    Attributes:
        shape: PLANE/BOX/CYLINDER/ELLIPSOID.
        lo, hi: axis-aligned bounds (for the plane: unused, set to -inf/+inf in x, y and 0 in z).
        center, radii: ellipsoid centre and semi-axes; cylinder axis (x, y), radius in radii[0].
        material: material id; colour: base linear RGB; style: material variant.
        params: four material parameters (facades: floor height, window spacing, window w, h).
        seed: per-primitive random key for texture variation; velocity: speed along x in m/s.
        object_id: the object (car, building, tree) a primitive belongs to.
    """

    shape: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    center: np.ndarray
    radii: np.ndarray
    material: np.ndarray
    colour: np.ndarray
    style: np.ndarray
    params: np.ndarray
    seed: np.ndarray
    velocity: np.ndarray
    object_id: np.ndarray

    def __len__(self) -> int:
        return len(self.shape)

    def moved(self, times: np.ndarray) -> 'Primitives':
        """Copy with each moving primitive advanced to its own time in seconds (scalar or per row)."""
        dx = (self.velocity * np.asarray(times, dtype=np.float64)).astype(np.float32)
        if not np.any(dx):
            return self
        shift = np.zeros((len(self), 3), np.float32)
        shift[:, 0] = dx
        shift[0] = 0.0
        return Primitives(self.shape, self.lo + shift, self.hi + shift, self.center + shift, self.radii,
                          self.material, self.colour, self.style, self.params, self.seed,
                          self.velocity, self.object_id)


@dataclass
class Street:
    """Cross-section of the street and the facade heights along it (for sky occlusion)."""

    lane_width: float
    road_left: float          # y of the left kerb face
    road_right: float         # y of the right kerb face (negative)
    kerb_height: float
    x_min: float
    x_max: float
    intersections: List[Tuple[float, float]]   # (x centre, width) of cross streets
    profile_step: float = 1.0
    # Per side (0 left, 1 right), per profile_step of x from x_min: facade |y| and height (0 = open).
    facade_y: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.float32))
    facade_h: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.float32))

    def on_road(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where (x, y) lies on asphalt: between the kerbs or inside a cross street."""
        inside = (y < self.road_left) & (y > self.road_right)
        for xc, width in self.intersections:
            inside |= np.abs(x - xc) < width / 2
        return inside

    def facades_at(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Facade distance |y| and height on each side at x: two arrays of shape (2, len(x))."""
        idx = np.clip(((x - self.x_min) / self.profile_step).astype(np.int64), 0, self.facade_y.shape[1] - 1)
        return self.facade_y[:, idx], self.facade_h[:, idx]


@dataclass
class Scene:
    """A street with its primitives, sun and weather, generated once per sequence."""

    prims: Primitives
    street: Street
    sun: np.ndarray          # unit vector towards the sun
    cloudiness: float        # 0 clear .. 1 overcast
    ego_lane_y: float
    seed: int


@dataclass(frozen=True)
class SceneConfig:
    """Layout parameters.

    Attributes:
        x_min, x_max: street extent in metres (the drive must stay well inside it).
        traffic_duration_s: how long moving cars must keep appearing for.
        ego_speed: the mean speed of the ego vehicle, used to place a lead car that keeps pace.
    """

    x_min: float = -140.0
    x_max: float = 400.0
    traffic_duration_s: float = 30.0
    ego_speed: float = 7.5


class _Builder:
    """Accumulates primitives row by row, then freezes them into :class:`Primitives`."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.rows: List[tuple] = []
        self.objects = 0
        # Row 0: the ground plane.
        self._add(PLANE, (-np.inf, -np.inf, -np.inf), (np.inf, np.inf, 0.0), (0, 0, 0), (0, 0, 0),
                  GROUND, (0.1, 0.1, 0.1), 0, (0, 0, 0, 0), 0.0, self.new_object())

    def new_object(self) -> int:
        self.objects += 1
        return self.objects - 1

    def _add(self, shape, lo, hi, center, radii, material, colour, style, params, velocity, obj):
        self.rows.append((shape, lo, hi, center, radii, material, colour, style, params,
                          int(self.rng.integers(0, 2**31 - 1)), velocity, obj))

    def box(self, lo, hi, material, colour, obj, style=0, params=(0, 0, 0, 0), velocity=0.0):
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        self._add(BOX, lo, hi, (lo + hi) / 2, (hi - lo) / 2, material, colour, style, params, velocity, obj)

    def cylinder(self, x, y, radius, z0, z1, material, colour, obj):
        self._add(CYLINDER, (x - radius, y - radius, z0), (x + radius, y + radius, z1),
                  (x, y, (z0 + z1) / 2), (radius, radius, (z1 - z0) / 2), material, colour, 0,
                  (0, 0, 0, 0), 0.0, obj)

    def ellipsoid(self, center, radii, material, colour, obj):
        c, r = np.asarray(center, float), np.asarray(radii, float)
        self._add(ELLIPSOID, c - r, c + r, c, r, material, colour, 0, (0, 0, 0, 0), 0.0, obj)

    def freeze(self) -> Primitives:
        cols = list(zip(*self.rows))
        f32 = lambda i: np.asarray(cols[i], np.float32)  # noqa: E731
        return Primitives(
            shape=np.asarray(cols[0], np.int8), lo=f32(1), hi=f32(2), center=f32(3), radii=f32(4),
            material=np.asarray(cols[5], np.int16), colour=f32(6), style=np.asarray(cols[7], np.int16),
            params=f32(8), seed=np.asarray(cols[9], np.int64), velocity=f32(10),
            object_id=np.asarray(cols[11], np.int32))


def _free(x0: float, x1: float, street: Street, margin: float) -> bool:
    """True if [x0, x1] stays clear of every cross street by ``margin`` metres."""
    return all(x1 <= xc - w / 2 - margin or x0 >= xc + w / 2 + margin for xc, w in street.intersections)


def _add_car(b: _Builder, x: float, y: float, heading: float, velocity: float, paint: np.ndarray) -> None:
    """A car as body, cabin and four wheels; ``heading`` +1 faces +x, -1 faces -x."""
    rng = b.rng
    obj = b.new_object()
    van = rng.random() < 0.1
    length = rng.uniform(4.6, 5.3) if van else rng.uniform(3.8, 4.9)
    width = rng.uniform(1.72, 1.95)
    body_top = rng.uniform(1.0, 1.15) if van else rng.uniform(0.85, 1.0)
    roof = rng.uniform(1.9, 2.2) if van else rng.uniform(1.38, 1.55)
    hl, hw = length / 2, width / 2
    # params: heading, car length, body top; the texture draws lights and plates from them.
    params = (heading, length, body_top, 1.0 if van else 0.0)
    b.box((x - hl, y - hw, 0.28), (x + hl, y + hw, body_top), CAR_BODY, paint, obj, params=params,
          velocity=velocity)
    if van:
        # The cabin runs from the rear to just behind a short bonnet.
        c_mid, cabin_len = x - heading * 0.4, length - 1.0
    else:
        c_mid, cabin_len = x - heading * length * rng.uniform(0.02, 0.08), length * rng.uniform(0.48, 0.58)
    c0, c1 = c_mid - cabin_len / 2, c_mid + cabin_len / 2
    b.box((c0, y - hw + 0.08, body_top), (c1, y + hw - 0.08, roof), CAR_CABIN, paint, obj,
          params=(heading, c1 - c0, roof - body_top, 0.0), velocity=velocity)
    # Bumpers stick out a few centimetres at both ends; mirrors stick out at the front of the cabin.
    trim = paint if rng.random() < 0.5 else np.array([0.035, 0.035, 0.035])
    for end in (-1, 1):
        xb = x + end * hl
        xs = sorted((xb - end * 0.15, xb + end * 0.06))
        b.box((xs[0], y - hw + 0.03, 0.22), (xs[1], y + hw - 0.03, 0.52), METAL, trim, obj, velocity=velocity)
    x_front = c1 if heading > 0 else c0
    for side in (-1, 1):
        ys = sorted((y + side * hw, y + side * (hw + 0.16)))
        b.box((x_front - 0.2 if heading > 0 else x_front + 0.05, ys[0], body_top + 0.02),
              (x_front - 0.05 if heading > 0 else x_front + 0.2, ys[1], body_top + 0.17), METAL, paint, obj,
              velocity=velocity)
    wheel_r = 0.32
    for wx in (x - hl + 0.75, x + hl - 0.8):
        for wy in (y - hw + 0.12, y + hw - 0.12):
            b.box((wx - wheel_r, wy - 0.11, 0.0), (wx + wheel_r, wy + 0.11, 2 * wheel_r), TYRE,
                  (0.02, 0.02, 0.02), obj, velocity=velocity)


def _paint(rng: np.random.Generator) -> np.ndarray:
    base = _CAR_PAINTS[rng.choice(len(_CAR_PAINTS), p=_CAR_PAINT_SHARE / _CAR_PAINT_SHARE.sum())]
    return np.clip(base * rng.uniform(0.85, 1.15, 3), 0.005, 0.9)


def _facade_look(rng: np.random.Generator) -> dict:
    """Style, storeys, colour and window grid of one building."""
    style = int(rng.choice([PLASTER, BRICK, PANEL, OFFICE], p=[0.45, 0.25, 0.18, 0.12]))
    floor_h = rng.uniform(2.9, 3.6) if style != OFFICE else rng.uniform(3.4, 4.0)
    height = int(rng.integers(2, 8)) * floor_h + rng.uniform(0.4, 1.2)
    palette = _FACADE_COLOURS[style]
    colour = np.clip(palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.15, 3), 0.02, 0.9)
    spacing = rng.uniform(2.4, 4.0) if style != OFFICE else rng.uniform(1.4, 2.0)
    win_w = spacing * (rng.uniform(0.35, 0.55) if style != OFFICE else rng.uniform(0.8, 0.92))
    win_h = floor_h * (rng.uniform(0.42, 0.6) if style != OFFICE else rng.uniform(0.6, 0.75))
    return dict(style=style, height=height, colour=colour, params=(floor_h, spacing, win_w, win_h))


def _add_building(b: _Builder, lo, hi, look: dict, cornice_axis: int, cornice_sign: int) -> None:
    """A facade block and its cornice, overhanging on the street side (axis 0 or 1, sign +-1)."""
    obj = b.new_object()
    lo, hi = np.array(lo, float), np.array(hi, float)
    hi[2] = look['height']
    b.box(lo, hi, FACADE, look['colour'], obj, style=look['style'], params=look['params'])
    clo, chi = lo.copy(), hi.copy()
    clo[2] = hi[2] - 0.35
    if cornice_sign > 0:
        chi[cornice_axis] += 0.3
    else:
        clo[cornice_axis] -= 0.3
    b.box(clo, chi, CORNICE, np.clip(look['colour'] * 1.25 + 0.05, 0, 0.9), obj)


def _add_buildings(b: _Builder, street: Street, side: int, sidewalk_edge: float) -> None:
    """Facades along one side (+1 left, -1 right) from x_min to x_max, and the facade profile."""
    rng = b.rng
    x = street.x_min
    profile_y, profile_h = street.facade_y[0 if side > 0 else 1], street.facade_h[0 if side > 0 else 1]
    while x < street.x_max:
        width = rng.uniform(8.0, 30.0)
        x0, x1 = x, x + width
        if not _free(x0, x1, street, 2.0):
            # Jump past the cross street.
            xc, w = next((xc, w) for xc, w in street.intersections
                         if x1 >= xc - w / 2 - 2.0 and x0 <= xc + w / 2 + 2.0)
            x = xc + w / 2 + 2.0
            continue
        look = _facade_look(rng)
        setback = rng.uniform(0.0, 1.0) if rng.random() < 0.8 else rng.uniform(2.5, 5.0)
        y_face = sidewalk_edge + setback
        depth = rng.uniform(10.0, 18.0)
        ys = sorted((side * y_face, side * (y_face + depth)))
        _add_building(b, (x0, ys[0], 0.0), (x1, ys[1], 0.0), look, 1, -side)
        if setback > 2.0:
            # Front garden hedge.
            yh = sorted((side * (sidewalk_edge + 0.2), side * (sidewalk_edge + 0.9)))
            b.box((x0 + 0.5, yh[0], 0.0), (x1 - 0.5, yh[1], rng.uniform(0.8, 1.4)), HEDGE,
                  np.array([0.05, 0.13, 0.03]) * rng.uniform(0.8, 1.2, 3), b.new_object())
        i0 = int((x0 - street.x_min) / street.profile_step)
        i1 = int((x1 - street.x_min) / street.profile_step)
        profile_y[i0:i1 + 1], profile_h[i0:i1 + 1] = y_face, look['height']
        gap = rng.uniform(2.0, 6.0) if rng.random() < 0.25 else 0.0
        if gap > 0.0:
            # A taller building further back shows through the alley.
            back = _facade_look(rng)
            back['height'] = max(back['height'], look['height'] + rng.uniform(0, 6))
            ys = sorted((side * (y_face + depth + 4.0), side * (y_face + depth + 16.0)))
            _add_building(b, (x1 - 4.0, ys[0], 0.0), (x1 + gap + 4.0, ys[1], 0.0), back, 1, -side)
        x = x1 + gap


def _add_cross_streets(b: _Builder, street: Street, side: int, sidewalk_edge: float, colour) -> None:
    """Sidewalks and buildings lining each cross street on one side, closed by a far block."""
    rng = b.rng
    far = 110.0
    for xc, w in street.intersections:
        for end in (-1, 1):
            kerb = xc + end * w / 2
            xs = sorted((kerb, kerb + end * 2.5))
            ys = sorted((side * (sidewalk_edge + 8.0), side * far))
            b.box((xs[0], ys[0], 0.0), (xs[1], ys[1], street.kerb_height - 0.01), SIDEWALK, colour,
                  b.new_object(), style=int(rng.integers(0, 3)), params=(rng.uniform(0.3, 0.6), 0, 0, 0))
            y = sidewalk_edge + 20.0
            while y < far - 8.0:
                length = rng.uniform(10.0, 30.0)
                face = kerb + end * (2.5 + rng.uniform(0.0, 1.0))
                xs = sorted((face, face + end * rng.uniform(12.0, 18.0)))
                ys = sorted((side * y, side * min(y + length, far)))
                _add_building(b, (xs[0], ys[0], 0.0), (xs[1], ys[1], 0.0), _facade_look(rng), 0, -end)
                y += length
        ys = sorted((side * (far + 2.0), side * (far + 14.0)))
        _add_building(b, (xc - w / 2 - 20.0, ys[0], 0.0), (xc + w / 2 + 20.0, ys[1], 0.0), _facade_look(rng),
                      1, -side)


def _add_sidewalks(b: _Builder, street: Street, side: int, width: float, colour) -> None:
    """Raised sidewalk slabs and kerb stones in segments of at most 10 m, interrupted at cross streets."""
    edge = street.road_left if side > 0 else -street.road_right
    h = street.kerb_height
    x = street.x_min
    while x < street.x_max:
        x1 = min(x + 10.0, street.x_max)
        blocked = [(xc, w) for xc, w in street.intersections if x1 > xc - w / 2 and x < xc + w / 2]
        if blocked:
            xc, w = blocked[0]
            if x < xc - w / 2:
                x1 = xc - w / 2
            else:
                x = xc + w / 2
                continue
        obj = b.new_object()
        yk = sorted((side * edge, side * (edge + 0.15)))
        b.box((x, yk[0], 0.0), (x1, yk[1], h), KERB, (0.42, 0.42, 0.40), obj)
        ys = sorted((side * (edge + 0.15), side * (edge + width + 8.0)))
        b.box((x, ys[0], 0.0), (x1, ys[1], h - 0.01), SIDEWALK, colour, obj, style=int(b.rng.integers(0, 3)),
              params=(b.rng.uniform(0.3, 0.6), 0, 0, 0))
        x = x1


def _add_street_furniture(b: _Builder, street: Street, side: int, kerb_edge: float) -> None:
    """Street lights, signs and trees on the sidewalk of one side."""
    rng = b.rng
    x = street.x_min + rng.uniform(0, 20)
    while x < street.x_max:
        if _free(x - 1, x + 1, street, 1.0):
            obj = b.new_object()
            y = side * (kerb_edge + 0.5)
            top = rng.uniform(6.5, 8.0)
            b.cylinder(x, y, 0.09, 0.0, top, METAL, (0.32, 0.33, 0.33), obj)
            arm = sorted((y, y - side * 1.8))
            b.box((x - 0.05, arm[0], top - 0.1), (x + 0.05, arm[1], top), METAL, (0.32, 0.33, 0.33), obj)
            yl = y - side * 1.8
            b.box((x - 0.3, yl - 0.15, top - 0.22), (x + 0.3, yl + 0.15, top - 0.05), METAL,
                  (0.5, 0.5, 0.48), obj)
        x += rng.uniform(24.0, 36.0)
    x = street.x_min + rng.uniform(0, 30)
    while x < street.x_max:
        if _free(x - 1, x + 1, street, 1.0):
            obj = b.new_object()
            y = side * (kerb_edge + 0.35)
            b.cylinder(x, y, 0.035, 0.0, 2.7, METAL, (0.5, 0.5, 0.5), obj)
            colour = _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))]
            b.box((x - 0.03, y - 0.3, 2.1), (x + 0.03, y + 0.3, 2.7), SIGN, colour, obj,
                  style=int(rng.integers(0, 3)))
        x += rng.uniform(30.0, 80.0)
    x = street.x_min
    while x < street.x_max:
        stretch = rng.uniform(30.0, 80.0)
        if rng.random() < 0.55:
            tx = x + rng.uniform(2, 8)
            while tx < x + stretch:
                if _free(tx - 3, tx + 3, street, 1.0):
                    _add_tree(b, tx, side * (kerb_edge + rng.uniform(0.9, 1.4)))
                tx += rng.uniform(7.0, 13.0)
        x += stretch


def _add_tree(b: _Builder, x: float, y: float) -> None:
    """A trunk under a crown of three to five overlapping ellipsoids (an irregular outline)."""
    rng = b.rng
    obj = b.new_object()
    trunk_h = rng.uniform(2.2, 3.4)
    b.cylinder(x, y, rng.uniform(0.11, 0.2), 0.0, trunk_h + 0.8, TRUNK,
               np.array([0.12, 0.08, 0.05]) * rng.uniform(0.8, 1.2), obj)
    rxy, rz = rng.uniform(1.3, 2.4), rng.uniform(1.7, 3.0)
    green = np.array([0.045, 0.085, 0.025]) * rng.uniform(0.75, 1.25, 3)
    centre = np.array([x, y, trunk_h + rz * 0.8])
    b.ellipsoid(centre, (rxy, rxy * rng.uniform(0.85, 1.15), rz), FOLIAGE, green, obj)
    for _ in range(int(rng.integers(2, 5))):
        offset = rng.normal(0.0, 1.0, 3) * np.array([rxy * 0.45, rxy * 0.45, rz * 0.35])
        scale = rng.uniform(0.45, 0.75)
        b.ellipsoid(centre + offset, (rxy * scale, rxy * scale * rng.uniform(0.8, 1.2), rz * scale), FOLIAGE,
                    green * rng.uniform(0.85, 1.15, 3), obj)


def _add_traffic(b: _Builder, street: Street, config: SceneConfig, ego_lane_y: float, ego_x0: float) -> None:
    """Parked cars on both parking lanes, oncoming traffic, and a lead and a following car."""
    rng = b.rng
    lane = street.lane_width
    for side, edge in ((+1, street.road_left), (-1, street.road_right)):
        y = edge - side * 1.05
        x = street.x_min
        while x < street.x_max:
            if rng.random() < 0.3:
                x += rng.uniform(4.0, 12.0)
                continue
            if _free(x - 3, x + 3, street, 3.0):
                _add_car(b, x, y + rng.uniform(-0.15, 0.15), -side, 0.0, _paint(rng))
            x += rng.uniform(5.0, 7.5)
    # Oncoming cars in the left lane, spaced so they keep coming for the whole drive.
    x = street.x_min
    far_end = street.x_max + 12.0 * config.traffic_duration_s
    while x < far_end:
        x += rng.uniform(25.0, 70.0)
        _add_car(b, x, lane / 2 + rng.uniform(-0.2, 0.2), -1, -rng.uniform(6.0, 12.0), _paint(rng))
    lead_speed = config.ego_speed * rng.uniform(0.97, 1.03)
    _add_car(b, ego_x0 + rng.uniform(12.0, 28.0), ego_lane_y + rng.uniform(-0.15, 0.15), 1, lead_speed,
             _paint(rng))
    _add_car(b, ego_x0 - rng.uniform(10.0, 20.0), ego_lane_y, 1, config.ego_speed, _paint(rng))


def generate_scene(seed: int, config: SceneConfig = SceneConfig(), ego_x0: float = 0.0) -> Scene:
    """Build a street for ``seed``: layout, buildings, sidewalks, furniture, trees and traffic."""
    rng = np.random.default_rng(seed)
    lane = rng.uniform(3.2, 3.7)
    park_left, park_right = rng.uniform(2.0, 2.4), rng.uniform(2.0, 2.4)
    intersections = []
    x = config.x_min + rng.uniform(40.0, 120.0)
    while x < config.x_max - 20.0:
        if abs(x - ego_x0) > 25.0:
            intersections.append((float(x), float(rng.uniform(8.0, 14.0))))
        x += rng.uniform(90.0, 170.0)
    n_profile = int((config.x_max - config.x_min) / 1.0) + 2
    street = Street(lane_width=lane, road_left=lane + park_left, road_right=-(lane + park_right),
                    kerb_height=float(rng.uniform(0.11, 0.16)), x_min=config.x_min, x_max=config.x_max,
                    intersections=intersections, facade_y=np.full((2, n_profile), 60.0, np.float32),
                    facade_h=np.zeros((2, n_profile), np.float32))
    b = _Builder(rng)
    sidewalk_colour = np.array([0.36, 0.34, 0.31]) * rng.uniform(0.85, 1.15, 3)
    for side, edge in ((+1, street.road_left), (-1, -street.road_right)):
        width = rng.uniform(2.5, 4.5)
        _add_sidewalks(b, street, side, width, sidewalk_colour)
        _add_buildings(b, street, side, edge + 0.15 + width)
        _add_cross_streets(b, street, side, edge + 0.15 + width, sidewalk_colour)
        _add_street_furniture(b, street, side, edge + 0.15)
    ego_lane_y = -lane / 2
    _add_traffic(b, street, config, ego_lane_y, ego_x0)
    # Sun: 25-60 degrees high, from any direction.
    elev, azim = np.radians(rng.uniform(25.0, 60.0)), rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    return Scene(prims=b.freeze(), street=street, sun=sun.astype(np.float32),
                 cloudiness=float(rng.uniform(0.1, 0.7)), ego_lane_y=float(ego_lane_y), seed=seed)
