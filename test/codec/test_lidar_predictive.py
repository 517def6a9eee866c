"""Predictive LiDAR codec: every decoded coordinate within max_error, invalid points counted, bad
payloads refused with PacketError."""
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from xmodal_compress_ros.codec import lidar_predictive
from xmodal_compress_ros.codec.bitstream import (
    LIDAR_CODEC_DRACO, LIDAR_CODEC_PREDICTIVE, pack_lidar_packet, parse_lidar_packet,
)
from xmodal_compress_ros.codec.lidar_codec import (
    LidarCodecConfig, _quantize_intensity, config_from_packet, decode_packet, decode_scan, encode_scan,
)
from xmodal_compress_ros.errors import PacketError, ParameterError

# ../shared/data beside the checkout, or $XMODAL_SHARED_DATA (as test/conftest.py finds it).
_BESIDE = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'
DATA = Path(os.environ.get('XMODAL_SHARED_DATA', _BESIDE))
KITTI_SCANS = [
    DATA / 'kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync/velodyne_points/data/0000000000.bin',
    DATA / 'kitti_object/training/velodyne/000000.bin',
]


def within_bound(encoded, original, max_error, rings=None):
    """Every decoded point is within max_error per coordinate of its original (matched by order)."""
    valid = np.isfinite(original[:, :3]).all(axis=1) & np.any(original[:, :3] != 0, axis=1)
    kept = original[valid]
    assert encoded.num_points == len(kept)
    decoded = encoded.points[:, :3].astype(np.float64)
    # The codec reports its coding order only through lidar_predictive; recover it by re-encoding the
    # same inputs (the intensity too: it weighs in the choice of path for a cloud out of laser order).
    codes = None
    if encoded.config.keep_intensity:
        intensity = np.where(np.isfinite(kept[:, 3]), kept[:, 3], 0).astype(np.float32)
        codes = _quantize_intensity(intensity, encoded.config)[:, 0]
    coded = lidar_predictive.encode(kept[:, :3].astype(np.float32), codes, encoded.config.max_error,
                                    None if rings is None else rings[valid])
    np.testing.assert_array_equal(coded.xyz, encoded.points[:, :3])
    matched = kept[:, :3].astype(np.float64)[coded.order]
    return np.abs(decoded - matched).max(initial=0.0) <= max_error


def round_trip(points, config, rings=None):
    encoded = encode_scan(points, config, rings=rings)
    packet = parse_lidar_packet(pack_lidar_packet(encoded.to_packet(3, 4, 'lidar')))
    assert packet.codec_id == LIDAR_CODEC_PREDICTIVE
    np.testing.assert_array_equal(decode_packet(packet), encoded.points)
    assert config_from_packet(packet).max_error == config.max_error
    return encoded


def spinning_scan(lasers=32, columns=900, seed=0):
    """A driver-ordered spinning scan (column by column, every laser per column) and its rings."""
    rng = np.random.default_rng(seed)
    elevation = np.radians(np.linspace(-25, 3, lasers))[None, :]
    azimuth = (np.arange(columns) * 2 * np.pi / columns)[:, None] + rng.normal(0, 1e-4, (columns, lasers))
    distance = 5 + 30 * (1 + np.sin(3 * azimuth)) / 2 + rng.normal(0, 0.02, (columns, lasers))
    points = np.stack([distance * np.cos(elevation) * np.cos(azimuth),
                       distance * np.cos(elevation) * np.sin(azimuth),
                       distance * np.sin(elevation) + 0 * azimuth,
                       rng.integers(0, 256, (columns, lasers)) / 255.0], axis=-1)
    rings = np.broadcast_to(np.arange(lasers)[None, :], (columns, lasers))
    return points.reshape(-1, 4).astype(np.float32), rings.reshape(-1).astype(np.uint16)


@pytest.mark.parametrize('path', KITTI_SCANS, ids=lambda p: p.parent.parent.name)
@pytest.mark.parametrize('max_error', [0.002, 0.01, 0.02])
def test_kitti_scans_round_trip_within_the_bound(path, max_error):
    if not path.exists():
        pytest.skip('KITTI data absent (../shared/data)')
    points = np.fromfile(path, '<f4').reshape(-1, 4)
    config = LidarCodecConfig(max_error=max_error)
    encoded = round_trip(points, config)
    assert lidar_predictive.read_info(encoded.payload).mode == 'spinning'
    assert within_bound(encoded, points, max_error)
    # Intensity is lossless at 8 bits: the same multiset of codes comes back.
    codes = np.rint(np.clip(points[:, 3].astype(np.float64), 0, 1) * 255)
    decoded = np.rint(encoded.points[:, 3].astype(np.float64) * 255)
    np.testing.assert_array_equal(np.sort(decoded), np.sort(codes))
    assert len(encoded.payload) * 8 / len(points) < 24  # zstd lossless: about 75


def test_ring_field_orders_a_driver_scan():
    points, rings = spinning_scan()
    config = LidarCodecConfig(max_error=0.01)
    encoded = round_trip(points, config, rings=rings)
    assert lidar_predictive.read_info(encoded.payload).mode == 'spinning'
    coded = lidar_predictive.encode(points[:, :3], None, 0.01, rings=rings)
    decoded = coded.xyz.astype(np.float64)
    assert np.abs(decoded - points[coded.order, :3]).max() <= 0.01
    # Without the ring field the column-by-column order hides the lasers: the encoder finds them from
    # the elevation, for about the same bits.
    unringed = lidar_predictive.encode(points[:, :3], None, 0.01)
    assert unringed.mode == 'spinning'
    assert len(unringed.payload) < 1.02 * len(coded.payload)


def test_a_scan_cut_to_a_cameras_view_keeps_its_lasers(monkeypatch):
    """Cut to a sector (frustum_only's cut), a laser-major scan's sweeps never reach the azimuth's
    wrap: each one starts where the azimuth steps back, and the lasers are coded apart."""
    from xmodal_compress_ros.codec.lidar_codec import _synthetic_scan

    points, _ = _synthetic_scan(lasers=16, firings=720)
    points = points[np.abs(np.arctan2(points[:, 1], points[:, 0])) < np.pi / 4]
    xyz = np.ascontiguousarray(points[:, :3])
    order, counts = lidar_predictive._laser_order(xyz, None)
    assert order is None and len(counts) == 16 and counts.sum() == len(xyz)
    encoded = round_trip(points, LidarCodecConfig(max_error=0.01))
    assert within_bound(encoded, points, 0.01)
    monkeypatch.setattr(lidar_predictive, 'SWEEP_BREAK_RADIANS', np.inf)  # one laser, as before
    assert len(lidar_predictive._laser_order(xyz, None)[1]) == 1
    assert len(encoded.payload) < 0.9 * len(encode_scan(points, LidarCodecConfig(max_error=0.01)).payload)


def test_lasers_hidden_by_the_order_are_found_from_the_elevation(monkeypatch):
    """A driver scan without its ring field, column by column or shuffled (as a voxel filter leaves
    it), is coded laser by laser, from elevation bands, within the bound and in far fewer bits than
    the grid path the order alone would leave it to."""
    points, rings = spinning_scan()
    shuffled = points[np.random.default_rng(5).permutation(len(points))]
    config = LidarCodecConfig(max_error=0.01)
    with_rings = lidar_predictive.encode(points[:, :3], None, 0.01, rings=rings)
    for cloud in (points, shuffled):
        encoded = round_trip(cloud, config)
        assert lidar_predictive.read_info(encoded.payload).mode == 'spinning'
        assert within_bound(encoded, cloud, 0.01)
        assert len(encoded.payload) < 1.05 * len(encode_scan(points, config, rings=rings).payload)
    banded = lidar_predictive.encode(shuffled[:, :3], None, 0.01)
    monkeypatch.setattr(lidar_predictive, '_elevation_rings', lambda xyz: None)
    grid = lidar_predictive.encode(shuffled[:, :3], None, 0.01)
    assert grid.mode == 'grid'
    assert len(banded.payload) < 0.8 * len(grid.payload)
    assert len(banded.payload) < 1.02 * len(with_rings.payload)


def test_bands_that_code_worse_than_the_grid_leave_the_cloud_to_the_grid(monkeypatch):
    """The encoder keeps the smaller of the two: elevation bands that are no lasers at all (here
    random ones) lose to the grid, whose decoded points then fill the caller's rows."""
    points, _ = spinning_scan()
    rng = np.random.default_rng(6)
    shuffled = points[rng.permutation(len(points))]
    monkeypatch.setattr(lidar_predictive, '_elevation_rings',
                        lambda xyz: rng.integers(0, 32, len(xyz)))
    config = LidarCodecConfig(max_error=0.01)
    encoded = round_trip(shuffled, config)
    assert lidar_predictive.read_info(encoded.payload).mode == 'grid'
    assert within_bound(encoded, shuffled, 0.01)


def test_bands_stand_where_the_grid_cannot_code_the_cloud(monkeypatch):
    """The grid is tried beside the bands only to keep the smaller: where it refuses the cloud, the
    bands are sent; where there are no bands either, the grid's error is the answer."""
    points, _ = spinning_scan()
    shuffled = points[np.random.default_rng(7).permutation(len(points)), :3]

    def refuse(*args, **kwargs):
        raise ParameterError('no grid')

    monkeypatch.setattr(lidar_predictive, '_encode_grid', refuse)
    assert lidar_predictive.encode(shuffled, None, 0.01).mode == 'spinning'
    monkeypatch.setattr(lidar_predictive, '_elevation_rings', lambda xyz: None)
    with pytest.raises(ParameterError, match='no grid'):
        lidar_predictive.encode(shuffled, None, 0.01)


@pytest.mark.parametrize('path', KITTI_SCANS, ids=lambda p: p.parent.parent.name)
def test_a_shuffled_kitti_scan_codes_nearly_as_in_laser_order(path, monkeypatch):
    if not path.exists():
        pytest.skip('KITTI data absent (../shared/data)')
    points = np.fromfile(path, '<f4').reshape(-1, 4)
    shuffled = points[np.random.default_rng(2).permutation(len(points))]
    config = LidarCodecConfig(max_error=0.01)
    encoded = round_trip(shuffled, config)
    assert lidar_predictive.read_info(encoded.payload).mode == 'spinning'
    assert within_bound(encoded, shuffled, 0.01)
    in_order = len(encode_scan(points, config).payload)
    assert len(encoded.payload) < 1.1 * in_order
    monkeypatch.setattr(lidar_predictive, '_elevation_rings', lambda xyz: None)
    assert len(encoded.payload) < 0.75 * len(encode_scan(shuffled, config).payload)


def test_grid_order_is_numpys_lexsort_of_the_cells():
    """The grid path's radix order of packed cells, ties in input order, and numpy's lexsort where the
    cells' spans do not pack into 63 bits."""
    rng = np.random.default_rng(3)
    cases = [rng.integers(-50, 50, (4000, 3)), rng.integers(-(1 << 20), 1 << 20, (3000, 3)),
             np.repeat(rng.integers(0, 4, (50, 3)), 7, axis=0)[rng.permutation(350)],
             rng.integers(-(1 << 40), 1 << 40, (500, 3)), np.zeros((1, 3), np.int64)]
    for cells in cases:
        cells = cells.astype(np.int64)
        np.testing.assert_array_equal(lidar_predictive._grid_order(cells),
                                      np.lexsort((cells[:, 2], cells[:, 1], cells[:, 0])))


def test_rings_out_of_azimuth_order_are_sorted_as_numpys_lexsort():
    rng = np.random.default_rng(4)
    xyz = rng.normal(size=(5000, 3)).astype(np.float32)
    xyz[100:200] = xyz[0]  # equal azimuths keep their order
    rings = rng.integers(0, 40, len(xyz))
    order, counts = lidar_predictive._laser_order(xyz, rings)
    azimuth = np.arctan2(xyz[:, 1].astype(np.float64), xyz[:, 0].astype(np.float64))
    np.testing.assert_array_equal(order, np.lexsort((azimuth, rings)))
    np.testing.assert_array_equal(counts, np.bincount(rings, minlength=40))


def test_solid_state_cloud_takes_the_grid_path_within_the_bound():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.uniform([1, -10, -3], [60, 10, 3], (3000, 3)),
                             rng.uniform(0, 1, (3000, 1))], axis=1).astype(np.float32)
    for max_error in (0.002, 0.05):
        encoded = round_trip(points, LidarCodecConfig(max_error=max_error))
        assert lidar_predictive.read_info(encoded.payload).mode == 'grid'
        assert within_bound(encoded, points, max_error)


def test_step_kinds_decide_as_exact_arctangents():
    """The laser layout asks of each azimuth step its sign and whether it exceeds pi: the cross
    products answer as the differences of libm's arctangents do, on random points, on and near the
    axes (signed zeros), on diametrically opposite pairs (steps of about pi), on pairs turned by
    1e-12 .. 1e-6 rad or a coordinate's ulp (steps of about 0), and on float32 coordinates as scans
    give them."""
    rng = np.random.default_rng(7)
    signed = [0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 2.5, -3.0]
    corners = np.array(list(itertools.product(signed, signed)))
    angles = rng.uniform(-np.pi, np.pi, 2000)
    opposite = np.stack([np.cos(angles), np.sin(angles)], axis=1).repeat(2, axis=0)
    opposite[1::2] *= -1
    turned = angles.repeat(2)
    turned[1::2] += rng.choice([-1, 1], 2000) * 10.0 ** rng.uniform(-12, -6, 2000)
    near = np.stack([np.cos(turned), np.sin(turned)], axis=1) * rng.uniform(0.5, 80, (4000, 1))
    nudged = near.copy()  # turned by an ulp of a coordinate: the arctangents may not tell them apart
    nudged[1::2, 1] = np.nextafter(nudged[::2, 1], rng.choice([-np.inf, np.inf], 2000))
    nudged[1::2, 0] = nudged[::2, 0]
    clouds = [rng.normal(size=(20000, 2)) * 30, corners[rng.permutation(len(corners))], opposite, near,
              nudged, rng.normal(size=(2000, 2)) * 1e-20,
              (rng.normal(size=(20000, 2)) * 30).astype(np.float32)]
    for cloud in clouds:
        x, y = np.ascontiguousarray(cloud[:, 0]), np.ascontiguousarray(cloud[:, 1])
        kinds = lidar_predictive._step_kinds(x, y)
        exact = np.diff([math.atan2(b, a) for a, b in zip(x.astype(np.float64), y.astype(np.float64))])
        wrap = np.abs(exact) > np.pi
        np.testing.assert_array_equal(kinds == lidar_predictive.STEP_WRAP, wrap)
        np.testing.assert_array_equal(kinds == lidar_predictive.STEP_FORWARD, ~wrap & (exact > 0))
        np.testing.assert_array_equal(kinds == lidar_predictive.STEP_BACKWARD, ~wrap & (exact < 0))
        np.testing.assert_array_equal(kinds == lidar_predictive.STEP_ZERO, exact == 0)


def test_firing_step_sample_is_numpys():
    """The firing step's sample (compiled) gives numpy's searchsorted results and libm's arctangents
    (Python's math.atan2; numpy's arctan2 may take another implementation on some CPUs), with lasers
    of no points among the counts (rings a driver did not use) and scans of a few points."""
    rng = np.random.default_rng(9)
    for n, lasers in ((2, 1), (3, 2), (17, 4), (5000, 9), (20000, 64)):
        xyz = (rng.normal(size=(n, 3)) * 20).astype(np.float32)
        counts = rng.multinomial(n, np.full(lasers, 1 / lasers)).astype(np.int64)
        counts[rng.random(lasers) < 0.2] = 0
        counts[-1] += n - counts.sum()
        same, azimuths = lidar_predictive._sampled_azimuths(xyz, counts)
        sample = np.arange(0, n - 1, 1 + n // 4096)
        ends = np.stack((sample, sample + 1))
        laser = np.searchsorted(np.cumsum(counts), ends, side='right')
        np.testing.assert_array_equal(same, laser[0] == laser[1])
        xy = xyz[ends, :2].astype(np.float64)
        libm = np.vectorize(math.atan2)(xy[..., 1], xy[..., 0]).reshape(2, len(sample))
        np.testing.assert_array_equal(azimuths, libm)


def test_fast_azimuth_is_within_its_error():
    """The fast arctangent (the nearest azimuth of a point the prediction misses) stays within
    AZIMUTH_APPROXIMATION_ERROR of libm's, on random points and near the axes."""
    rng = np.random.default_rng(8)
    signed = [0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 2.5, -3.0]
    points = np.concatenate([rng.normal(size=(20000, 2)) * 30, rng.normal(size=(2000, 2)) * 1e-20,
                             np.array(list(itertools.product(signed, signed)))])
    finite = (points[:, 0] != 0) | (points[:, 1] != 0)
    approximate = np.array([lidar_predictive._approximate_azimuth(a, b) for a, b in points])
    exact = np.array([math.atan2(b, a) for a, b in points])
    assert np.abs(approximate - exact)[finite].max() <= lidar_predictive.AZIMUTH_APPROXIMATION_ERROR


def test_fast_azimuth_rounds_as_libm():
    """The encoder's nearest azimuth step comes from the fast arctangent except near half steps: it
    rounds as libm's does, for points placed within 1e-12 .. 1e-6 rad of a half step, random points
    and the signed zeros, at the turns of 2 mm, 1 cm and 2 cm bounds and a coarse one."""
    rng = np.random.default_rng(11)
    signed = [0.0, -0.0, 1.0, -1.0, 1e-300]
    corners = np.array(list(itertools.product(signed, signed)))
    for turn in (8, 5032, 18852, 94248):
        per_radian = turn / (2.0 * math.pi)
        margin = lidar_predictive._rounding_margin(turn)
        halves = (rng.integers(-turn // 2, turn // 2, 3000) + 0.5) / per_radian
        near = halves + rng.choice([-1, 1], 3000) * 10.0 ** rng.uniform(-12, -6, 3000)
        radius = rng.uniform(0.5, 120, 3000)
        points = np.concatenate([np.stack([radius * np.cos(near), radius * np.sin(near)], axis=1),
                                 rng.normal(size=(3000, 2)) * 40, corners])
        for x, y in points:
            fast = lidar_predictive._rounding_azimuth(x, y, per_radian, margin)
            assert round(fast * per_radian) == round(math.atan2(y, x) * per_radian), (x, y, turn)


def test_elevation_bracket_rounds_as_the_arcsine():
    """A sine inside the bracket of an elevation is one whose arcsine rounds to it: checked on sines
    just inside both ends of the bracket and spread across it, for many turns and elevations."""
    rng = np.random.default_rng(3)
    for turn in (8, 12, 1000, 1 << 16, 3 * (1 << 18), 1 << 30):
        per_radian = turn / (2.0 * math.pi)
        half = math.sin(math.pi / turn), math.cos(math.pi / turn)
        quarter = turn // 4
        elevations = np.unique(np.concatenate([rng.integers(-quarter, quarter + 1, 200), [0, quarter - 1]]))
        for elevation in elevations:
            se, ce = lidar_predictive._sincos_turn(int(elevation), turn)
            low, high = lidar_predictive._sine_bracket(int(elevation), se, ce, *half, turn)
            if low >= high:
                assert ce <= 0.5 or 4 * abs(elevation) >= turn
                continue
            inside = np.concatenate([np.nextafter([low, high], [high, low]), rng.uniform(low, high, 20)])
            nearest = [round(math.asin(sine) * per_radian) for sine in inside]
            assert nearest == [elevation] * len(inside)
        # Most elevations of a laser's cell are bracketed (the arcsine is rarely needed).
        assert lidar_predictive._sine_bracket(1, *lidar_predictive._sincos_turn(1, turn), *half, turn) \
            != (1.0, -1.0)


def test_single_point_and_empty_cloud():
    one = np.array([[1.0, -2.0, 3.0, 0.5]], np.float32)
    encoded = round_trip(one, LidarCodecConfig())
    assert encoded.num_points == 1 and np.abs(encoded.points[0, :3] - one[0, :3]).max() <= 0.01
    assert encoded.points[0, 3] == pytest.approx(round(0.5 * 255) / 255)
    empty = round_trip(np.zeros((0, 4), np.float32), LidarCodecConfig())
    assert empty.num_points == 0 and empty.points.shape == (0, 4)


def test_invalid_points_are_counted_and_recorded():
    points, _ = spinning_scan(8, 200)
    points[::50, 0] = np.nan
    points[7, 2] = np.inf
    points[9, :3] = 0.0  # no return
    encoded = round_trip(points, LidarCodecConfig(max_error=0.02))
    invalid = len(range(0, len(points), 50)) + 2
    assert encoded.invalid_points == invalid and encoded.num_points == len(points) - invalid
    assert lidar_predictive.read_info(encoded.payload).invalid_points == invalid
    all_invalid = round_trip(np.full((5, 4), np.nan, np.float32), LidarCodecConfig())
    assert all_invalid.num_points == 0 and all_invalid.invalid_points == 5


def test_draco_stays_selectable():
    points, _ = spinning_scan(8, 100)
    encoded = encode_scan(points, LidarCodecConfig(codec='draco'))
    packet = parse_lidar_packet(pack_lidar_packet(encoded.to_packet(0, 0, '')))
    assert packet.codec_id == LIDAR_CODEC_DRACO and config_from_packet(packet).codec == 'draco'
    with pytest.raises(ParameterError, match='codec'):
        LidarCodecConfig(codec='zip')
    for bad in (0.0, -1.0, float('nan'), 1e3):
        with pytest.raises(ParameterError, match='max_error'):
            LidarCodecConfig(max_error=bad)


def test_damaged_spinning_payloads_with_noisy_intensity_refuse_or_decode_finite():
    """Flipped bits can decode to any intensity rank, negative ones too: the decoder's contexts must
    still pick rows inside its tables (its kernels index without bounds checks)."""
    points, rings = spinning_scan(8, 300, seed=3)
    codes = np.rint(points[:, 3] * 255).astype(np.int64)
    coded = lidar_predictive.encode(points[:, :3].copy(), codes, 0.01, rings)
    assert coded.mode == 'spinning'
    rng = np.random.default_rng(1)
    decoded = 0
    for _ in range(1500):
        damaged = bytearray(coded.payload)
        for _ in range(rng.integers(1, 4)):
            damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
        try:
            xyz, intensity, _ = lidar_predictive.decode(bytes(damaged), len(points))
        except PacketError:
            continue
        decoded += 1
        assert xyz.shape == (len(points), 3) and np.isfinite(xyz).all() and len(intensity) == len(points)
    assert decoded < 1500


def test_truncated_and_corrupted_payloads_raise_packet_error():
    points, rings = spinning_scan(8, 150)
    config = LidarCodecConfig()
    for encoded in (encode_scan(points, config, rings=rings), encode_scan(points[::-3], config)):
        payload, count = encoded.payload, encoded.num_points
        for cut in range(0, len(payload), max(1, len(payload) // 40)):
            with pytest.raises(PacketError):
                decode_scan(payload[:cut], count, config)
        with pytest.raises(PacketError):
            decode_scan(payload, count + 1, config)
        with pytest.raises(PacketError, match='format version 9.*update the decoder'):
            decode_scan(b'\x09' + payload[1:], count, config)
        for older in (b'\x01', b'\x02'):
            with pytest.raises(PacketError, match=f'format version {older[0]}.*re-encode'):
                decode_scan(older + payload[1:], count, config)
        rng = np.random.default_rng(0)
        for _ in range(40):
            damaged = bytearray(payload)
            damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
            try:
                decoded = decode_scan(bytes(damaged), count, config)
            except PacketError:
                continue
            assert decoded.shape == (count, 4) and np.isfinite(decoded).all()


@settings(max_examples=40, deadline=None)
@given(points=hnp.arrays(np.float32, st.tuples(st.integers(1, 60), st.just(3)),
                         elements=st.floats(-150, 150, width=32)),
       max_error=st.floats(0.001, 0.5),
       scan_order=st.booleans())
def test_property_every_coordinate_within_the_bound(points, max_error, scan_order):
    if scan_order:  # a spinning-like layout: sorted by azimuth
        points = points[np.argsort(np.arctan2(points[:, 1], points[:, 0]), kind='stable')]
    valid = np.any(points != 0, axis=1)
    coded = lidar_predictive.encode(points[valid], None, max_error)
    assert np.abs(coded.xyz.astype(np.float64) - points[valid][coded.order]).max(initial=0) <= max_error
    xyz, intensity, info = lidar_predictive.decode(coded.payload, len(coded.xyz))
    np.testing.assert_array_equal(xyz, coded.xyz)
    assert intensity is None and info.max_error == max_error


def test_wide_intensity_and_unusable_rings():
    points, rings = spinning_scan(8, 200, seed=2)
    config = LidarCodecConfig(intensity_bits=16, intensity_max=1.0)
    encoded = round_trip(points, config, rings=rings)
    codes = np.rint(np.clip(points[:, 3].astype(np.float64), 0, 1) * 65535)
    decoded = np.rint(encoded.points[:, 3].astype(np.float64) * 65535)
    np.testing.assert_array_equal(np.sort(decoded), np.sort(codes))
    # Ring values beyond MAX_LASERS, or not integers: still coded within the bound.
    for bad in (rings.astype(np.int64) + lidar_predictive.MAX_LASERS, rings + 0.5):
        encoded = round_trip(points, LidarCodecConfig(max_error=0.003), rings=bad)
        assert within_bound(encoded, points, 0.003, rings=None if bad.dtype.kind == 'f' else bad)
    with pytest.raises(ParameterError, match='rings'):
        encode_scan(points, LidarCodecConfig(), rings=rings[:-1])


@pytest.mark.parametrize('turn', [4, 8, 12, 20, 4 * 1259, 20060, 94288])
def test_sincos_table_is_sincos_turn_bit_for_bit(turn):
    """The table fills three quarters and half of the first by symmetry: every entry must still be
    the bits :func:`_sincos_turn` gives (the decoder of a payload computes either)."""
    table = lidar_predictive._sincos_table(turn)
    expected = np.array([lidar_predictive._sincos_turn(i, turn) for i in range(turn)])
    assert table.shape == (turn, 2)
    assert np.array_equal(table.view(np.uint64), expected.view(np.uint64))


def test_context_rows_are_the_documented_classes():
    """The contexts are written as sums of comparisons (no branches): each must still pick the row
    its class says (docs/lidar_stream.md, "Prediction and contexts")."""
    lp = lidar_predictive
    sizes = {0: 0, 1: 1, 2: 2, 3: 2, 4: 3, 15: 3, 16: 4, 1000: 4}
    for magnitude, size in sizes.items():
        assert lp._size_class(magnitude) == size and lp._size_class(-magnitude) == size
        assert lp._range_row(False, -magnitude, 0) == lp.ROW_RANGE + size
        assert lp._range_row(False, magnitude, -3) == lp.ROW_RANGE + size + 5
    assert lp._range_row(True, 7, 7) == lp.ROW_RANGE + 10
    near, far = 10.0 / 0.02, 70.0 / 0.02  # ranges in steps of 2 cm
    assert [lp._shape_row(residual, near, 0.02) for residual in (0, -2, 5)] == [
        lp.ROW_SHAPE, lp.ROW_SHAPE + 1, lp.ROW_SHAPE + 2]
    assert lp._shape_row(-1, far, 0.02) == lp.ROW_SHAPE + 4
    previous = 9  # level 8 (ranks 0-6 alone, then 7, 8-9, ...)
    level = lp._intensity_level(previous)
    for before, direction in ((6, 0), (7, 1), (11, 1), (12, 2)):
        for range_residual, jump in ((0, 0), (1, 0), (-1, 0), (2, 1), (-5, 1)):
            assert lp._intensity_row(False, range_residual, previous, before) == (
                lp.ROW_INTENSITY + level + 18 * direction + 54 * jump)
    assert lp._intensity_row(True, 0, previous, previous) == lp.ROW_INTENSITY + 108


_PAYLOADS_OF_A_NOISY_SCAN = '''
import hashlib, sys
import numpy as np
from xmodal_compress_ros.codec import lidar_codec
points, rings = lidar_codec._synthetic_scan(8, 128)
rng = np.random.default_rng(0)
points[:, :3] += rng.normal(0.0, 0.03, points[:, :3].shape).astype(np.float32)
points[:, 3] = rng.integers(0, 100, len(points)) / 100.0
clean, _ = lidar_codec._synthetic_scan(8, 128)
shuffled = clean[rng.permutation(len(clean))]  # its lasers found from the elevation, then sorted
config = lidar_codec.LidarCodecConfig(max_error=0.01)
for scan, given in ((points, None), (points, rings), (shuffled, None)):
    encoded = lidar_codec.encode_scan(scan, config, rings=given)
    decoded = lidar_codec.decode_scan(encoded.payload, encoded.num_points, config)
    print(encoded.payload[1], hashlib.sha256(encoded.payload + decoded.tobytes()).hexdigest())
'''


def test_the_codec_without_numba_writes_and_decodes_the_same_bits():
    """Without numba (plain Python: the kernels' fallback) a noisy scan, with and without rings, and a
    shuffled one code to the same payloads and decode to the same points: the kernels must mean the
    same in both (numpy's bools, for one, add as 'or' where numba's add as integers)."""
    import subprocess
    import sys

    def run(**env):
        result = subprocess.run([sys.executable, '-c', _PAYLOADS_OF_A_NOISY_SCAN], capture_output=True,
                                text=True, env={**os.environ, **env}, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    compiled = run()
    assert len(compiled) == 6 and compiled[4] == str(lidar_predictive.MODE_SPINNING)
    assert run(NUMBA_DISABLE_JIT='1') == compiled
