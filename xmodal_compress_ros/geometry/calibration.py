"""Camera intrinsics and LiDAR-to-camera extrinsics, validated, with the composed projection.

Readers for the supported formats (KITTI object, KITTI raw, the project's YAML, CameraInfo plus an
extrinsic) live in this module and all return :class:`Calibration`. The formats and the validation
rules are described in ``docs/calibration.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from xmodal_compress_ros.errors import CalibrationError

PathLike = Union[str, Path]
ImageSize = Tuple[int, int]

# Orthonormality and determinant tolerance for rotations: KITTI prints them with 7 digits.
ROTATION_TOLERANCE = 1e-3
DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant')
KITTI_CAMERAS = (0, 1, 2, 3)


@dataclass(frozen=True)
class Calibration:
    """A rectified camera and a LiDAR rigidly mounted next to it.

    The projection uses ``P`` and ``R_rect``, so depth maps align with the *rectified* image
    (KITTI's images are rectified; for a ROS camera use ``image_rect``). ``K`` and ``D`` describe
    the raw camera and are kept so that CameraInfo and YAML round-trip exactly.

    Attributes:
        width, height: image size in pixels the intrinsics refer to.
        K: 3x3 camera matrix (as CameraInfo.k).
        P: 3x4 projection matrix of the rectified image (as CameraInfo.p).
        T_cam_lidar: 4x4 rigid transform taking LiDAR points into the camera frame.
        R_rect: 3x3 rectification rotation (as CameraInfo.r); identity if not rectified.
        D: distortion coefficients (as CameraInfo.d); zeros for rectified images.
        distortion_model: the CameraInfo name of the model ``D`` belongs to.

    Arrays are converted to read-only float64 on construction; every bad value raises
    :class:`CalibrationError`.
    """

    width: int
    height: int
    K: np.ndarray
    P: np.ndarray
    T_cam_lidar: np.ndarray
    R_rect: np.ndarray = field(default_factory=lambda: np.eye(3))
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = 'plumb_bob'

    def __post_init__(self) -> None:
        for name in ('width', 'height'):
            object.__setattr__(self, name, _positive_int(getattr(self, name), name))
        shapes = {'K': (3, 3), 'P': (3, 4), 'T_cam_lidar': (4, 4), 'R_rect': (3, 3), 'D': None}
        for name, shape in shapes.items():
            object.__setattr__(self, name, _frozen_matrix(getattr(self, name), name, shape))
        if self.distortion_model not in DISTORTION_MODELS:
            raise CalibrationError(
                f'distortion_model {self.distortion_model!r} is not supported: use one of '
                f'{", ".join(DISTORTION_MODELS)}')
        _check_focal(self.K, 'K (camera_matrix)')
        _check_focal(self.P, 'P (projection_matrix)')
        if not np.allclose(self.P[2, :3], (0.0, 0.0, 1.0), atol=1e-6):
            raise CalibrationError(
                f'P (projection_matrix) third row starts with {self.P[2, :3].tolist()}, expected '
                '[0, 0, 1] so that w is the depth in metres: pass P as CameraInfo.p defines it')
        _check_rotation(self.R_rect, 'R_rect (rectification_matrix)')
        _check_rigid(self.T_cam_lidar, 'T_cam_lidar')

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    @property
    def lidar_to_pixel(self) -> np.ndarray:
        """3x4 matrix M with ``[u*w, v*w, w]^T = M @ [x, y, z, 1]^T`` (w is the depth)."""
        rect = np.eye(4)
        rect[:3, :3] = self.R_rect
        return self.P @ rect @ self.T_cam_lidar

    @property
    def image_size(self) -> ImageSize:
        """``(width, height)`` in pixels."""
        return self.width, self.height

    def check_image_size(self, width: int, height: int) -> None:
        """Raise :class:`CalibrationError` unless an image of ``width`` x ``height`` fits this calibration."""
        if (int(width), int(height)) != (self.width, self.height):
            raise CalibrationError(
                f'image is {width}x{height} but the calibration is for {self.width}x{self.height}: '
                'use the calibration of this camera (or pass the image size when loading a KITTI object '
                'calib)')

    # ----------------------------------------------------------------------------- readers

    @classmethod
    def from_kitti_object(cls, path: PathLike, camera: int = 2,
                          image_size: Optional[Sequence[int]] = None) -> 'Calibration':
        """Read a KITTI object/tracking calib .txt (``P0..P3``, ``R0_rect``, ``Tr_velo_to_cam``).

        These files carry no image size, so ``image_size=(width, height)`` (from the image) is required.
        """
        camera = _kitti_camera(camera)
        values = _read_key_values(path)
        if image_size is None:
            raise CalibrationError(
                f'{path}: KITTI object calibration files carry no image size: pass '
                'image_size=(width, height) of the matching image (the CLI reads it from --image)')
        width, height = _image_size(image_size)
        P = _take(values, path, (f'P{camera}',), 12).reshape(3, 4)
        R_rect = _take(values, path, ('R0_rect', 'R_rect'), 9).reshape(3, 3)
        Tr = _take(values, path, ('Tr_velo_to_cam', 'Tr_velo_cam'), 12).reshape(3, 4)
        return cls(width=width, height=height, K=P[:, :3], P=P, T_cam_lidar=_to_4x4(Tr), R_rect=R_rect)

    @classmethod
    def from_kitti_raw(cls, calib_dir: PathLike, camera: int = 2,
                       image_size: Optional[Sequence[int]] = None) -> 'Calibration':
        """Read a KITTI raw date folder: ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt``.

        The size comes from ``S_rect_0N``; ``image_size``, if given, must agree with it (and is
        required when ``S_rect_0N`` is absent).
        """
        camera = _kitti_camera(camera)
        calib_dir = Path(calib_dir)
        cam_path = calib_dir / 'calib_cam_to_cam.txt'
        velo_path = calib_dir / 'calib_velo_to_cam.txt'
        cam = _read_key_values(cam_path)
        velo = _read_key_values(velo_path)
        P = _take(cam, cam_path, (f'P_rect_0{camera}',), 12).reshape(3, 4)
        R_rect = _take(cam, cam_path, ('R_rect_00',), 9).reshape(3, 3)
        width, height = _kitti_raw_size(cam, cam_path, camera, image_size)
        T = np.eye(4)
        T[:3, :3] = _take(velo, velo_path, ('R',), 9).reshape(3, 3)
        T[:3, 3] = _take(velo, velo_path, ('T',), 3)
        return cls(width=width, height=height, K=P[:, :3], P=P, T_cam_lidar=T, R_rect=R_rect)

    @classmethod
    def from_yaml(cls, path: PathLike) -> 'Calibration':
        """Read the project's YAML format (the camera_calibration_parsers layout plus ``T_cam_lidar``)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(f'calibration file not found: {path}') from None
        except yaml.YAMLError as exc:
            raise CalibrationError(f'{path}: not valid YAML ({exc})') from None
        if not isinstance(data, dict):
            raise CalibrationError(
                f'{path}: expected a mapping of calibration keys, got {type(data).__name__}')
        required = ('image_width', 'image_height', 'camera_matrix', 'projection_matrix', 'T_cam_lidar')
        missing = [key for key in required if key not in data]
        if missing:
            raise CalibrationError(f'{path}: missing key(s) {", ".join(missing)} (see docs/calibration.md)')
        D = _yaml_matrix(data, 'distortion_coefficients', path, None) \
            if 'distortion_coefficients' in data else np.zeros(5)
        R_rect = _yaml_matrix(data, 'rectification_matrix', path, (3, 3)) \
            if 'rectification_matrix' in data else np.eye(3)
        return _construct(
            path, width=data['image_width'], height=data['image_height'],
            K=_yaml_matrix(data, 'camera_matrix', path, (3, 3)),
            P=_yaml_matrix(data, 'projection_matrix', path, (3, 4)),
            T_cam_lidar=_yaml_matrix(data, 'T_cam_lidar', path, (4, 4)),
            R_rect=R_rect, D=D, distortion_model=data.get('distortion_model', 'plumb_bob'))

    def to_yaml(self, path: PathLike) -> None:
        """Write the YAML format that :meth:`from_yaml` reads (lossless: float64 ``repr`` digits)."""
        import yaml

        def matrix(array: np.ndarray) -> Dict[str, Any]:
            rows, cols = (1, array.size) if array.ndim == 1 else array.shape
            return {'rows': rows, 'cols': cols, 'data': [float(v) for v in array.ravel()]}

        data = {
            'image_width': self.width,
            'image_height': self.height,
            'camera_matrix': matrix(self.K),
            'distortion_model': self.distortion_model,
            'distortion_coefficients': matrix(self.D),
            'rectification_matrix': matrix(self.R_rect),
            'projection_matrix': matrix(self.P),
            'T_cam_lidar': matrix(self.T_cam_lidar),
        }
        Path(path).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))

    @classmethod
    def from_camera_info(cls, msg: Any, T_cam_lidar: Any) -> 'Calibration':
        """Build from a sensor_msgs/CameraInfo-like object (fields width, height, k, d, r, p).

        Works with rclpy messages, rosbags dataclasses or any object with those attributes;
        ``T_cam_lidar`` is the 4x4 (or 3x4) LiDAR-to-camera transform, e.g. from TF.
        """
        missing = [name for name in ('width', 'height', 'k', 'd', 'r', 'p') if not hasattr(msg, name)]
        if missing:
            raise CalibrationError(
                f'CameraInfo-like object {type(msg).__name__} lacks field(s) {", ".join(missing)}')
        _check_no_binning_or_roi(msg)
        R_rect = _message_matrix(msg.r, 'r', (3, 3))
        # Some drivers leave r all zeros for monocular cameras; CameraInfo means identity then.
        if not R_rect.any():
            R_rect = np.eye(3)
        return _construct(
            'CameraInfo', width=msg.width, height=msg.height,
            K=_message_matrix(msg.k, 'k', (3, 3)), P=_message_matrix(msg.p, 'p', (3, 4)), R_rect=R_rect,
            T_cam_lidar=_to_4x4(T_cam_lidar), D=msg.d,
            distortion_model=getattr(msg, 'distortion_model', '') or 'plumb_bob')


def load_calibration(path: PathLike, camera: int = 2,
                     image_size: Optional[Sequence[int]] = None) -> Calibration:
    """Read a calibration, choosing the reader from the path.

    A directory is a KITTI raw date folder, ``.yaml``/``.yml`` the project's YAML, ``.txt`` a KITTI
    object calib (which needs ``image_size``). ``image_size=(width, height)``, if given, is also
    checked against formats that carry their own size.
    """
    path = Path(path)
    if path.is_dir():
        return Calibration.from_kitti_raw(path, camera=camera, image_size=image_size)
    if not path.exists():
        raise CalibrationError(f'calibration file not found: {path}')
    suffix = path.suffix.lower()
    if suffix == '.txt':
        return Calibration.from_kitti_object(path, camera=camera, image_size=image_size)
    if suffix in ('.yaml', '.yml'):
        calib = Calibration.from_yaml(path)
        if image_size is not None:
            calib.check_image_size(*_image_size(image_size))
        return calib
    raise CalibrationError(
        f'{path}: unknown calibration type {suffix or "(no suffix)"!r}; accepted: a KITTI raw date folder '
        '(calib_cam_to_cam.txt + calib_velo_to_cam.txt), a KITTI object calib .txt, or a project .yaml/.yml')


# --------------------------------------------------------------------------------- validation

def _positive_int(value: Any, name: str) -> int:
    """``value`` as a positive int; integral floats (as KITTI's S_rect 1.242e+03) are accepted."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f'{name} must be a positive integer, got {value!r}') from None
    if not math.isfinite(number) or number != int(number) or number <= 0:
        raise CalibrationError(f'{name} must be a positive integer number of pixels, got {value!r}')
    return int(number)


def _frozen_matrix(value: Any, name: str, shape: Optional[Tuple[int, int]]) -> np.ndarray:
    """A read-only float64 copy of ``value`` with ``shape`` (``None``: any 1-D vector), all finite."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f'{name} must be numeric, got {value!r}') from None
    expected = shape if shape is not None else (array.size,)
    if array.shape != expected:
        want = 'x'.join(map(str, shape)) if shape else 'a 1-D vector'
        raise CalibrationError(f'{name} must be {want}, got shape {array.shape}')
    if not np.all(np.isfinite(array)):
        raise CalibrationError(f'{name} has non-finite values (NaN or inf): {array.tolist()}')
    array.setflags(write=False)
    return array


def _check_focal(matrix: np.ndarray, name: str) -> None:
    fx, fy = matrix[0, 0], matrix[1, 1]
    if fx <= 0 or fy <= 0:
        raise CalibrationError(
            f'{name} has focal lengths fx={fx}, fy={fy}; both must be > 0 (an all-zero matrix '
            'means the camera was never calibrated)')


def _check_rotation(rotation: np.ndarray, name: str) -> None:
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    det = np.linalg.det(rotation)
    if error > ROTATION_TOLERANCE or abs(det - 1.0) > ROTATION_TOLERANCE:
        raise CalibrationError(
            f'{name} is not a rotation: |R^T R - I| = {error:.3g}, det = {det:.6g}; expected an '
            f'orthonormal matrix with det +1 (tolerance {ROTATION_TOLERANCE})')


def _check_rigid(transform: np.ndarray, name: str) -> None:
    if not np.array_equal(transform[3], (0.0, 0.0, 0.0, 1.0)):
        raise CalibrationError(f'{name} bottom row is {transform[3].tolist()}, expected [0, 0, 0, 1]')
    _check_rotation(transform[:3, :3], f'{name} rotation part')


def _hashable(value: Any) -> Any:
    return (value.shape, value.tobytes()) if isinstance(value, np.ndarray) else value


def _construct(source: Any, **kwargs: Any) -> Calibration:
    """``Calibration(**kwargs)`` with ``source`` (file or message) named in any error."""
    try:
        return Calibration(**kwargs)
    except CalibrationError as exc:
        raise CalibrationError(f'{source}: {exc}') from None


def _image_size(image_size: Sequence[int]) -> ImageSize:
    try:
        width, height = image_size
    except (TypeError, ValueError):
        raise CalibrationError(f'image_size must be (width, height), got {image_size!r}') from None
    return _positive_int(width, 'image width'), _positive_int(height, 'image height')


def _kitti_camera(camera: int) -> int:
    if camera not in KITTI_CAMERAS:
        raise CalibrationError(
            f'KITTI camera must be one of {KITTI_CAMERAS} (2 = left colour), got {camera!r}')
    return int(camera)


def _to_4x4(transform: Any) -> np.ndarray:
    """Append ``[0, 0, 0, 1]`` to a 3x4 transform; a 4x4 passes through (validated later)."""
    try:
        transform = np.asarray(transform, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f'T_cam_lidar must be a numeric 4x4 matrix, got {transform!r}') from None
    if transform.shape == (3, 4):
        return np.vstack([transform, (0.0, 0.0, 0.0, 1.0)])
    if transform.shape != (4, 4):
        raise CalibrationError(f'T_cam_lidar must be 4x4 (or 3x4), got shape {transform.shape}')
    return transform


# ---------------------------------------------------------------------------- KITTI text files

def _read_key_values(path: PathLike) -> Dict[str, np.ndarray]:
    """Parse ``KEY: v1 v2 ...`` lines (colon optional); lines with non-numeric values are skipped.

    KITTI raw files start with ``calib_time: 09-Jan-2012 13:57:47``, which is not calibration data.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CalibrationError(f'calibration file not found: {path}') from None
    except UnicodeDecodeError:
        raise CalibrationError(f'{path}: not a text calibration file') from None
    values = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(':')
        if not sep:
            key, _, rest = line.strip().partition(' ')
        if not key.strip():
            continue
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue
    return values


def _take(values: Dict[str, np.ndarray], path: PathLike, keys: Tuple[str, ...], count: int) -> np.ndarray:
    """The values of the first of ``keys`` present, checked to be ``count`` finite numbers."""
    key = next((k for k in keys if k in values), None)
    if key is None:
        raise CalibrationError(f'{path}: missing key {" or ".join(keys)}')
    array = values[key]
    if array.size != count:
        raise CalibrationError(f'{path}: {key} has {array.size} values, expected {count}')
    if not np.all(np.isfinite(array)):
        raise CalibrationError(f'{path}: {key} has non-finite values (NaN or inf)')
    return array


def _kitti_raw_size(values: Dict[str, np.ndarray], path: Path, camera: int,
                    image_size: Optional[Sequence[int]]) -> ImageSize:
    key = f'S_rect_0{camera}'
    if key not in values:
        if image_size is None:
            raise CalibrationError(
                f'{path}: missing key {key} (the image size): pass image_size=(width, height)')
        return _image_size(image_size)
    s_rect = _take(values, path, (key,), 2)
    size = _positive_int(s_rect[0], f'{key} width'), _positive_int(s_rect[1], f'{key} height')
    if image_size is not None and _image_size(image_size) != size:
        width, height = _image_size(image_size)
        raise CalibrationError(
            f'{path}: image is {width}x{height} but {key} says {size[0]}x{size[1]}: '
            'use the calibration of the drive the image comes from')
    return size


# -------------------------------------------------------------------------------------- YAML

def _yaml_matrix(data: Dict[str, Any], key: str, path: PathLike,
                 shape: Optional[Tuple[int, int]]) -> np.ndarray:
    """A matrix given as a flat row-major list or as ``{rows, cols, data}`` (camera_calibration_parsers)."""
    entry = data[key]
    if isinstance(entry, dict):
        if 'data' not in entry:
            raise CalibrationError(f'{path}: {key} is a mapping without "data"')
        rows, cols = entry.get('rows'), entry.get('cols')
        entry = entry['data']
        if rows is not None and cols is not None and np.size(entry) != rows * cols:
            raise CalibrationError(f'{path}: {key} says {rows}x{cols} but has {np.size(entry)} values')
    try:
        array = np.array(entry, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise CalibrationError(f'{path}: {key} must be a list of numbers, got {entry!r}') from None
    count = array.size if shape is None else shape[0] * shape[1]
    if array.size != count:
        raise CalibrationError(f'{path}: {key} has {array.size} values, expected {count} (row-major)')
    return array if shape is None else array.reshape(shape)


def _message_matrix(value: Any, name: str, shape: Tuple[int, int]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise CalibrationError(f'CameraInfo.{name} must be numeric, got {value!r}') from None
    if array.size != shape[0] * shape[1]:
        raise CalibrationError(
            f'CameraInfo.{name} has {array.size} values, expected {shape[0] * shape[1]} (row-major)')
    return array.reshape(shape)


def _check_no_binning_or_roi(msg: Any) -> None:
    """Binning and ROI change the pixel grid; the projection does not model them."""
    binning = (getattr(msg, 'binning_x', 0) or 0, getattr(msg, 'binning_y', 0) or 0)
    if max(binning) > 1:
        raise CalibrationError(
            f'CameraInfo binning {binning} is not supported: publish full-resolution images')
    roi = getattr(msg, 'roi', None)
    if roi is not None and getattr(roi, 'width', 0) and (roi.width, roi.height) != (msg.width, msg.height):
        raise CalibrationError(
            f'CameraInfo roi {roi.width}x{roi.height} is not supported: publish full-frame images')
