"""Message <-> NumPy conversions on rclpy messages and on rosbags message dataclasses."""
import array
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from xmodal_compress_ros.errors import ImageFormatError, PointCloudError
from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.ros import conversions as conv

NAMES = ('Image', 'PointCloud2', 'PointField', 'CameraInfo', 'Header', 'Time')
PACKAGES = {'Image': 'sensor_msgs', 'PointCloud2': 'sensor_msgs', 'PointField': 'sensor_msgs',
            'CameraInfo': 'sensor_msgs', 'Header': 'std_msgs', 'Time': 'builtin_interfaces'}


def _rosbags_family():
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {name: store.types[f'{PACKAGES[name]}/msg/{name}'] for name in NAMES}
    # rosbags messages arrive deserialized from CDR: data is a uint8 ndarray.
    return SimpleNamespace(name='rosbags', roundtrip=lambda msg: store.deserialize_cdr(
        store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__), data=lambda raw: np.frombuffer(
        raw, np.uint8).copy(), **types)


def _rclpy_family():
    pytest.importorskip('sensor_msgs.msg')
    import builtin_interfaces.msg
    import sensor_msgs.msg
    import std_msgs.msg
    from rclpy.serialization import deserialize_message, serialize_message

    modules = {'sensor_msgs': sensor_msgs.msg, 'std_msgs': std_msgs.msg,
               'builtin_interfaces': builtin_interfaces.msg}
    types = {name: getattr(modules[PACKAGES[name]], name) for name in NAMES}
    # rclpy messages arrive with data as array.array('B').
    return SimpleNamespace(name='rclpy', roundtrip=lambda msg: deserialize_message(
        serialize_message(msg), type(msg)), data=lambda raw: array.array('B', raw), **types)


@pytest.fixture(params=['rosbags', pytest.param('rclpy', marks=pytest.mark.ros)])
def family(request):
    return _rosbags_family() if request.param == 'rosbags' else _rclpy_family()


def _data_view(msg):
    return msg.data if isinstance(msg.data, np.ndarray) else np.frombuffer(msg.data, np.uint8)


def _random_image(encoding, height=5, width=7, seed=0):
    dtype, channels = conv.IMAGE_ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def _raw_image(family, pixels, encoding, step, bigendian=False):
    """An Image message built by hand from ``pixels`` with rows padded to ``step`` bytes."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<')).reshape(height, -1)
    row_bytes = rows.view(np.uint8)
    padded = np.full((height, step), 0xAB, np.uint8)
    padded[:, :row_bytes.shape[1]] = row_bytes
    return family.Image(header=conv.make_header(msg_type=family.Header), height=height, width=width,
                        encoding=encoding, is_bigendian=int(bigendian), step=step,
                        data=family.data(padded.tobytes()))


# --- stamps -----------------------------------------------------------------------------------

@pytest.mark.parametrize('ns', [0, 1, 1_700_000_000_123_456_789, -1, -1_500_000_000])
def test_stamp_round_trip(family, ns):
    stamp = conv.ns_to_stamp(ns, family.Time)
    assert 0 <= stamp.nanosec < conv.NS_PER_S
    assert conv.stamp_to_ns(stamp) == ns


def test_make_header(family):
    header = conv.make_header(1_234_567_890_5, 'camera', family.Header)
    assert isinstance(header, family.Header)
    assert header.frame_id == 'camera' and conv.stamp_to_ns(header.stamp) == 1_234_567_890_5


# --- images -----------------------------------------------------------------------------------

@pytest.mark.parametrize('encoding', list(conv.IMAGE_ENCODINGS))
def test_image_round_trip_every_encoding(family, encoding):
    pixels = _random_image(encoding)
    header = conv.make_header(42, 'camera', family.Header)
    msg = family.roundtrip(conv.numpy_to_image(pixels, encoding, header=header, msg_type=family.Image))
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * pixels.itemsize * (1 if pixels.ndim == 2 else pixels.shape[2])
    assert conv.stamp_to_ns(msg.header.stamp) == 42 and msg.header.frame_id == 'camera'
    out = conv.image_to_numpy(msg)
    assert out.dtype == pixels.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, pixels)


def test_image_default_class_is_rclpy():
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    msg = conv.numpy_to_image(_random_image('rgb8'), 'rgb8')
    assert isinstance(msg, sensor_msgs.Image) and isinstance(msg.data, array.array)


@pytest.mark.parametrize('encoding', ['rgb8', 'mono8', 'mono16', 'bgra8'])
def test_padded_step_is_a_strided_view(family, encoding):
    pixels = _random_image(encoding, seed=1)
    row_bytes = pixels[0].nbytes
    msg = _raw_image(family, pixels, encoding, step=row_bytes + 6)
    out = conv.image_to_numpy(msg)
    np.testing.assert_array_equal(out, pixels)
    assert np.shares_memory(out, _data_view(msg))


def test_mono16_big_endian_is_swapped(family):
    pixels = _random_image('mono16', seed=2)
    msg = _raw_image(family, pixels, 'mono16', step=7 * 2 + 2, bigendian=True)
    out = conv.image_to_numpy(msg)
    np.testing.assert_array_equal(out, pixels)
    assert out.dtype == np.uint16 and out.dtype.isnative


def test_mono16_native_order_is_not_copied(family):
    pixels = _random_image('mono16', seed=3)
    msg = _raw_image(family, pixels, 'mono16', step=14, bigendian=sys.byteorder == 'big')
    assert np.shares_memory(conv.image_to_numpy(msg), _data_view(msg))


@pytest.mark.parametrize('data_kind', [bytes, bytearray, list, memoryview])
def test_image_data_of_any_buffer_kind(data_kind):
    pixels = _random_image('rgb8', seed=4)
    raw = pixels.tobytes()
    msg = SimpleNamespace(height=5, width=7, encoding='rgb8', is_bigendian=0, step=21,
                          data=list(raw) if data_kind is list else data_kind(raw))
    np.testing.assert_array_equal(conv.image_to_numpy(msg), pixels)


def test_big_endian_input_array_is_stored_native(family):
    pixels = _random_image('mono16', seed=5)
    msg = conv.numpy_to_image(pixels.astype('>u2'), 'mono16', msg_type=family.Image)
    assert msg.is_bigendian == int(sys.byteorder == 'big')
    np.testing.assert_array_equal(conv.image_to_numpy(msg), pixels)


def test_single_channel_accepts_hxwx1(family):
    pixels = _random_image('mono8', seed=6)
    msg = conv.numpy_to_image(pixels[:, :, None], 'mono8', msg_type=family.Image)
    np.testing.assert_array_equal(conv.image_to_numpy(msg), pixels)


@pytest.mark.parametrize('encoding', conv.RGB_CONVERTIBLE)
def test_image_to_rgb(family, encoding):
    pixels = _random_image(encoding, seed=7)
    msg = _raw_image(family, pixels, encoding, step=pixels[0].nbytes + 3)
    rgb = conv.image_to_rgb(msg)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    if encoding == 'rgb8':
        expected = pixels
    elif encoding == 'bgr8':
        expected = pixels[..., ::-1]
    elif encoding == 'rgba8':
        expected = pixels[..., :3]
    elif encoding == 'bgra8':
        expected = pixels[..., [2, 1, 0]]
    elif pixels.dtype == np.uint16:
        expected = np.stack([pixels >> 8] * 3, axis=2)
    else:
        expected = np.stack([pixels] * 3, axis=2)
    np.testing.assert_array_equal(rgb, expected)


def test_image_to_rgb_rejects_undefined_channel_order(family):
    msg = conv.numpy_to_image(_random_image('8UC3'), '8UC3', msg_type=family.Image)
    with pytest.raises(ImageFormatError, match='8UC3'):
        conv.image_to_rgb(msg)


def _bad_image(**changes):
    fields = dict(height=2, width=3, encoding='rgb8', is_bigendian=0, step=9, data=bytes(18))
    fields.update(changes)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize('changes, match', [
    ({'encoding': 'yuv422'}, 'yuv422'),
    ({'step': 8}, 'step 8'),
    ({'data': bytes(17)}, '17 bytes'),
    ({'step': 10}, 'expected step 10'),
    ({'height': 0, 'data': b''}, 'empty'),
    ({'width': 0, 'step': 0}, 'empty'),
])
def test_bad_image_message(changes, match):
    with pytest.raises(ImageFormatError, match=match):
        conv.image_to_numpy(_bad_image(**changes))
    with pytest.raises(ImageFormatError):
        conv.image_to_rgb(_bad_image(**changes))


@pytest.mark.parametrize('array, encoding, match', [
    (np.zeros((2, 3, 3), np.uint8), 'jpeg', 'jpeg'),
    (np.zeros((2, 3, 4), np.uint8), 'rgb8', r'\(H, W, 3\)'),
    (np.zeros((2, 3), np.uint8), 'rgb8', r'\(H, W, 3\)'),
    (np.zeros((2, 3, 3), np.uint8), 'mono8', r'\(H, W\)'),
    (np.zeros((2, 3, 3), np.float32), 'rgb8', 'uint8'),
    (np.zeros((2, 3), np.uint8), 'mono16', 'uint16'),
    (np.zeros((0, 3, 3), np.uint8), 'rgb8', 'empty'),
])
def test_bad_image_array(family, array, encoding, match):
    with pytest.raises(ImageFormatError, match=match):
        conv.numpy_to_image(array, encoding, msg_type=family.Image)


# --- point clouds -----------------------------------------------------------------------------

def _random_points(count, columns, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.normal(0, 20, (count, columns)).astype(np.float32)
    if columns >= 5:
        points[:, 4] = rng.integers(0, 64, count)
    return points


@pytest.mark.parametrize('columns', [3, 4, 5])
def test_pointcloud_round_trip(family, columns):
    points = _random_points(100, columns)
    header = conv.make_header(7, 'lidar', family.Header)
    msg = family.roundtrip(conv.numpy_to_pointcloud2(points, header=header, msg_type=family.PointCloud2))
    names = list(conv.DEFAULT_FIELD_NAMES[:columns])
    assert conv.pointcloud2_fields(msg) == names
    assert msg.is_dense and not msg.is_bigendian and (msg.height, msg.width) == (1, 100)
    assert msg.header.frame_id == 'lidar' and conv.stamp_to_ns(msg.header.stamp) == 7
    np.testing.assert_array_equal(conv.pointcloud2_to_numpy(msg, fields=names), points)


def test_ring_layout_is_uint16_padded_to_20_bytes(family):
    msg = conv.numpy_to_pointcloud2(_random_points(10, 5), msg_type=family.PointCloud2)
    layout = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert layout == [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('intensity', 12, 7, 1),
                      ('ring', 16, 4, 1)]
    assert msg.point_step == 20 and msg.row_step == 200


def test_packed_xyzi_is_read_without_copy(family):
    msg = conv.numpy_to_pointcloud2(_random_points(50, 4), msg_type=family.PointCloud2)
    assert np.shares_memory(conv.pointcloud2_to_numpy(msg), _data_view(msg))


def test_missing_intensity_is_zero_filled(family):
    points = _random_points(20, 3)
    out = conv.pointcloud2_to_numpy(conv.numpy_to_pointcloud2(points, msg_type=family.PointCloud2))
    np.testing.assert_array_equal(out[:, :3], points)
    assert out.shape == (20, 4) and not out[:, 3].any()


def test_non_finite_points_make_cloud_not_dense(family):
    points = _random_points(5, 4)
    points[2, 1] = np.nan
    msg = conv.numpy_to_pointcloud2(points, msg_type=family.PointCloud2)
    assert not msg.is_dense
    np.testing.assert_array_equal(conv.pointcloud2_to_numpy(msg), points)


def test_empty_cloud(family):
    msg = family.roundtrip(conv.numpy_to_pointcloud2(np.zeros((0, 4), np.float32),
                                                     msg_type=family.PointCloud2))
    assert conv.pointcloud2_to_numpy(msg).shape == (0, 4)


def _structured_cloud(family, fields, values, height=1, row_pad=0, bigendian=False, point_step=None):
    """A PointCloud2 built by hand: ``fields`` is [(name, offset, datatype)]; values name -> column."""
    order = '>' if bigendian else '<'
    count = len(next(iter(values.values())))
    dtype = np.dtype({'names': [f[0] for f in fields],
                      'formats': [order + conv.POINTFIELD_DTYPES[f[2]] for f in fields],
                      'offsets': [f[1] for f in fields], 'itemsize': point_step})
    points = np.zeros(count, dtype)
    raw = points.view(np.uint8).reshape(count, -1)
    raw[:] = 0xCD  # garbage in padding bytes must never leak into the output
    for name, column in values.items():
        points[name] = column
    width = count // height
    rows = np.full((height, width * point_step + row_pad), 0xEE, np.uint8)
    rows[:, :width * point_step] = raw.reshape(height, -1)
    return family.PointCloud2(
        header=conv.make_header(msg_type=family.Header), height=height, width=width,
        fields=[family.PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields],
        is_bigendian=bigendian, point_step=point_step, row_step=width * point_step + row_pad,
        data=family.data(rows.tobytes()), is_dense=True)


def _xyzi(count=12, seed=1):
    points = _random_points(count, 4, seed)
    return points, {name: points[:, j] for j, name in enumerate(('x', 'y', 'z', 'intensity'))}


def test_permuted_offsets_and_padding(family):
    points, values = _xyzi()
    fields = [('intensity', 0, 7), ('z', 8, 7), ('x', 16, 7), ('y', 24, 7)]
    msg = family.roundtrip(_structured_cloud(family, fields, values, point_step=32))
    assert conv.pointcloud2_fields(msg) == ['intensity', 'z', 'x', 'y']
    np.testing.assert_array_equal(conv.pointcloud2_to_numpy(msg), points)


def test_float64_x_and_integer_intensity(family):
    points, values = _xyzi()
    values['intensity'] = np.arange(12, dtype=np.int16) - 5
    fields = [('x', 0, 8), ('y', 8, 7), ('z', 12, 7), ('intensity', 16, 3)]
    msg = _structured_cloud(family, fields, values, point_step=18)
    out = conv.pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(out[:, :3], points[:, :3])
    np.testing.assert_array_equal(out[:, 3], np.arange(12) - 5)


def test_big_endian_cloud(family):
    points, values = _xyzi()
    fields = [('x', 0, 7), ('y', 4, 7), ('z', 8, 7), ('intensity', 12, 7)]
    msg = _structured_cloud(family, fields, values, bigendian=True, point_step=16)
    np.testing.assert_array_equal(conv.pointcloud2_to_numpy(msg), points)


def test_organised_cloud_with_row_padding(family):
    points, values = _xyzi(count=12)
    fields = [('x', 0, 7), ('y', 4, 7), ('z', 8, 7), ('intensity', 12, 7)]
    msg = family.roundtrip(_structured_cloud(family, fields, values, height=3, row_pad=5, point_step=16))
    assert (msg.height, msg.width) == (3, 4)
    np.testing.assert_array_equal(conv.pointcloud2_to_numpy(msg), points)


def test_select_and_reorder_fields(family):
    msg = conv.numpy_to_pointcloud2(_random_points(9, 5), msg_type=family.PointCloud2)
    out = conv.pointcloud2_to_numpy(msg, fields=('ring', 'z'))
    points = _random_points(9, 5)
    np.testing.assert_array_equal(out, points[:, [4, 2]])


XYZ = [('x', 0, 7), ('y', 4, 7), ('z', 8, 7)]


@pytest.mark.parametrize('fields, point_step, changes, match', [
    ([('x', 0, 7), ('y', 4, 7)], 12, {}, "no field 'z'"),
    (XYZ, 12, {'read': ('x', 'y', 'z', 'ring')}, "no field 'ring'"),
    (XYZ + [('intensity', 12, 7)], 16, {'datatype': 9}, 'datatype 9'),
    (XYZ, 12, {'point_step': 10}, 'point_step is 10'),
    (XYZ, 12, {'row_step': 20}, 'row_step 20'),
    (XYZ, 12, {'truncate': 1}, 'truncated'),
])
def test_bad_pointcloud(family, fields, point_step, changes, match):
    values = {name: np.ones(4, np.float32) for name, _, _ in fields}
    msg = _structured_cloud(family, fields, values, point_step=point_step)
    if 'datatype' in changes:
        msg.fields[-1].datatype = changes['datatype']
    if 'point_step' in changes:
        msg.point_step = changes['point_step']
    if 'row_step' in changes:
        msg.row_step = changes['row_step']
    if 'truncate' in changes:
        msg.data = family.data(bytes(_data_view(msg))[:-changes['truncate']])
    with pytest.raises(PointCloudError, match=match):
        conv.pointcloud2_to_numpy(msg, fields=changes.get('read', ('x', 'y', 'z', 'intensity')))


def test_field_with_count_is_rejected(family):
    msg = _structured_cloud(family, XYZ, {n: np.ones(2, np.float32) for n in 'xyz'}, point_step=12)
    msg.fields[0].count = 3
    msg.fields = msg.fields[:1]
    with pytest.raises(PointCloudError, match='count 3'):
        conv.pointcloud2_to_numpy(msg, fields=('x',))


@pytest.mark.parametrize('points, match', [
    (np.zeros((4, 2), np.float32), r'\(N, 3..5\)'),
    (np.zeros((4, 6), np.float32), r'\(N, 3..5\)'),
    (np.zeros(4, np.float32), r'\(N, 3..5\)'),
    (np.array([[0, 0, 0, 0, 1.5]], np.float32), r'\[0, 65535\]'),
    (np.array([[0, 0, 0, 0, -1]], np.float32), r'\[0, 65535\]'),
])
def test_bad_points_array(family, points, match):
    with pytest.raises(PointCloudError, match=match):
        conv.numpy_to_pointcloud2(points, msg_type=family.PointCloud2)


# --- camera info ------------------------------------------------------------------------------

def _calibration():
    P = np.array([[721.5, 0, 609.6, 44.9], [0, 721.5, 172.9, 0.2], [0, 0, 1, 0.003]])
    T = np.eye(4)
    T[:3, 3] = (0.1, -0.2, 0.3)
    return Calibration(width=1242, height=375, K=P[:, :3], P=P, T_cam_lidar=T,
                       D=np.array([0.1, -0.2, 0.001, 0.002, 0.0]))


def test_camera_info_from_calibration(family):
    calib = _calibration()
    header = conv.make_header(99, 'camera', family.Header)
    msg = family.roundtrip(
        conv.camera_info_from_calibration(calib, header=header, msg_type=family.CameraInfo))
    assert (msg.width, msg.height, msg.distortion_model) == (1242, 375, 'plumb_bob')
    assert msg.header.frame_id == 'camera' and conv.stamp_to_ns(msg.header.stamp) == 99
    np.testing.assert_array_equal(np.asarray(msg.k).reshape(3, 3), calib.K)
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4), calib.P)
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), calib.R_rect)
    np.testing.assert_array_equal(np.asarray(msg.d), calib.D)
    assert Calibration.from_camera_info(msg, calib.T_cam_lidar) == calib
