"""Node parameters, declared once as fields of frozen config dataclasses.

Each field of :class:`EncoderNodeConfig` and :class:`DecoderNodeConfig` is one ROS parameter with
the same name; its metadata (made by :func:`param`) carries the description, the numeric range or
the allowed strings, and whether it is read-only. :func:`declare_config` turns that into
``ParameterDescriptor`` declarations and reads the values back into the dataclass;
:func:`validate_value` is the one validation rule used at start-up and for run-time changes.

The module imports rclpy only inside :func:`declare_config` and :func:`watch_config`, so the
configs and their validation are usable (and tested) without ROS.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Type, TypeVar

from xmodal_compress_ros.codec.bitstream import LIDAR_CODECS
from xmodal_compress_ros.codec.tiers import (FAST_MODEL, FAST_PFRAME_MODEL, INTRA_MODELS, PFRAME_MODEL,
                                             QUALITY_FALLBACK_MODEL, QUALITY_MODEL, TIERS)
from xmodal_compress_ros.errors import ParameterError

BACKENDS = ('torch', 'onnxruntime', 'tensorrt')
PRECISIONS = ('fp32', 'fp16', 'bf16')
PRECISION_HELP = ('Inference precision. On the CPU, bf16 pays only with AMX (decode about 2.3x, encode '
                  '1.3-1.8x faster, +0.5 % bits; without AMX slower): docs/runtime.md.')
OUTPUT_ENCODINGS = ('rgb8', 'bgr8')
MAX_QUALITY = 15
THREADS_HELP = ('CPU threads of the networks (0: every core this process may run on, '
                'os.sched_getaffinity).')

Config = TypeVar('Config')


def param(default: Any, description: str, *, bounds: Optional[Tuple[float, float]] = None,
          choices: Optional[Sequence[str]] = None, read_only: bool = False, length: Optional[int] = None,
          pairs: bool = False):
    """A dataclass field that is also a ROS parameter.

    Args:
        default: the default value; its type is the parameter's type (a tuple means a double array).
        description: one sentence for ``ros2 param describe``.
        bounds: inclusive ``(low, high)`` for int and float parameters.
        choices: the allowed values of a string parameter.
        read_only: fixed once the node runs (models, backend, topics, QoS).
        length: the required length of an array parameter (an empty array always means "not set").
        pairs: an integer array of positive (width, height) pairs.
    """
    meta = {'description': description, 'bounds': bounds, 'choices': tuple(choices) if choices else None,
            'read_only': read_only, 'length': length, 'pairs': pairs}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EncoderNodeConfig:
    """Everything the encoder node is configured with (one field per ROS parameter)."""

    image_topic: str = param('camera/image_raw', 'Camera image input (sensor_msgs/Image); relative names '
                             'resolve in the node namespace, remapping applies.', read_only=True)
    lidar_topic: str = param('lidar/points', 'LiDAR input (sensor_msgs/PointCloud2).', read_only=True)
    camera_info_topic: str = param(
        'camera/camera_info', 'CameraInfo input: the intrinsics when calibration_file is empty. Empty: do '
        'not subscribe.', read_only=True)
    calibration_file: str = param(
        '', 'Calibration: project YAML, KITTI object calib .txt or KITTI raw date folder. Empty: intrinsics '
        'from CameraInfo, the extrinsic from T_cam_lidar or else TF.', read_only=True)
    T_cam_lidar: Tuple[float, ...] = param(
        (), 'LiDAR-to-camera transform, 16 doubles row-major (used with CameraInfo). Empty: look it up in TF '
        'between the image and scan frame ids.', read_only=True, length=16)
    tier: str = param('auto', 'Models of the key frames: quality (model + fallback_model), fast (fast_model: '
                      'image-only, a small post filter: a tenth of the decoder\'s work) or auto (fast on '
                      'the CPU when fast_model is there, else quality); docs/tiers.md.', choices=TIERS,
                      read_only=True)
    model: str = param(QUALITY_MODEL, 'Stem of the LiDAR-conditioned model (.safetensors + .json) of '
                       'the quality tier.', read_only=True)
    fallback_model: str = param(QUALITY_FALLBACK_MODEL,
                                'Stem of the image-only twin used when no scan is available (quality tier).',
                                read_only=True)
    fast_model: str = param(FAST_MODEL, 'Stem of the image-only model of the fast tier.', read_only=True)
    backend: str = param('torch', 'Inference backend.', choices=BACKENDS, read_only=True)
    device: str = param('cpu', 'Inference device: cpu, cuda or cuda:N.', read_only=True)
    precision: str = param('fp32', PRECISION_HELP, choices=PRECISIONS, read_only=True)
    threads: int = param(0, THREADS_HELP, bounds=(0, 256), read_only=True)
    quality: int = param(5, 'Quality level (higher: more bits, better image); the fixed level when '
                         'target_kbps is 0, the start level otherwise. Changeable at run time.',
                         bounds=(0, MAX_QUALITY))
    target_kbps: float = param(0.0, 'Link budget in kbit/s for images plus LiDAR; the quality is chosen '
                               'per frame to stay under it. 0 disables rate control.', bounds=(0.0, 1e6))
    refine_steps: int = param(0, 'Latent refinement steps per image (0: off), in PyTorch on the inference '
                              'device: fewer bits for the same quality, one decoder pass forward and back '
                              'of encoder time per step; decoders are unchanged.', bounds=(0, 1000),
                              read_only=True)
    lazy: bool = param(True, 'Code only while something subscribes to the packets; false: always (to record '
                       'packets on the vehicle).', read_only=True)
    keyframe_interval: int = param(1, 'A key frame every N images and P frames between them, each '
                                   'predicted from the previous decoded frame (1: every image coded alone, '
                                   'the default: P frames save about a fifth of the bits but cost more '
                                   'CPU than a key frame: docs/temporal_coding.md, docs/tiers.md). Without '
                                   'the P-frame model files every image is coded alone (logged).',
                                   bounds=(1, 1000), read_only=True)
    pframe_model: str = param(PFRAME_MODEL, 'Stem of the P-frame model of the quality tier '
                              '(keyframe_interval > 1).', read_only=True)
    fast_pframe_model: str = param(FAST_PFRAME_MODEL, 'Stem of the P-frame model of the fast tier (its '
                                   'small post filter); pframe_model where its files are missing.',
                                   read_only=True)
    max_time_delta: float = param(0.05, 'Largest difference in seconds between the stamps of a paired image '
                                  'and scan.', bounds=(0.0, 10.0))
    pairing_wait: float = param(0.1, 'Longest wall-clock wait in seconds of an image for a scan stamped at '
                                'or after it (LiDAR drivers publish a sweep after it ends).',
                                bounds=(0.0, 2.0))
    lidar_timeout: float = param(1.0, 'Sensor-time seconds (image stamp minus newest scan stamp) after which '
                                 'images are encoded image-only without waiting.',
                                 bounds=(0.01, 3600.0))
    scan_buffer: int = param(10, 'Decoded scans kept for pairing (when full, the oldest leaves).',
                             bounds=(1, 100), read_only=True)
    lidar_codec: str = param('predictive', 'LiDAR codec: predictive (every coordinate within '
                             'lidar_max_error; laser-order prediction for spinning sensors) or draco.',
                             choices=tuple(LIDAR_CODECS.values()), read_only=True)
    lidar_max_error: float = param(0.01, 'Largest error of any decoded LiDAR coordinate, metres (predictive '
                                   'codec).', bounds=(1e-5, 100.0), read_only=True)
    lidar_quantization_bits: int = param(11, 'Draco position quantisation bits of the LiDAR packets '
                                         '(0: lossless float32 positions; draco codec).', bounds=(0, 30),
                                         read_only=True)
    lidar_intensity_max: float = param(0.0, 'LiDAR intensity coded as the largest code (KITTI reflectance: '
                                       '1; 8-bit drivers: 255); larger values are clipped and counted. 0: '
                                       'detected from the data (1, 255, 65535 or the largest seen).',
                                       bounds=(0.0, 1e6), read_only=True)
    frustum_only: bool = param(False, 'Send only the points inside the camera frustum in LiDAR packets.',
                               read_only=True)
    diagnostics_period: float = param(1.0, 'Seconds between /diagnostics messages.', bounds=(0.05, 60.0),
                                      read_only=True)

    def image_packet_topic(self) -> str:
        """``<image_topic>/xmodal``: the image packets, beside the image (as image_transport does)."""
        return packet_topic(self.image_topic)

    def lidar_packet_topic(self) -> str:
        """``<lidar_topic>/xmodal``: the LiDAR packets, beside the scans."""
        return packet_topic(self.lidar_topic)


def packet_topic(topic: str) -> str:
    """The packet topic beside ``topic``: ``<topic>/xmodal``."""
    return topic.rstrip('/') + '/xmodal'


def sibling_topic(topic: str, name: str) -> str:
    """``name`` in the namespace of ``topic`` (``camera/image_raw`` -> ``camera/camera_info``)."""
    head, _, _ = topic.rstrip('/').rpartition('/')
    return f'{head}/{name}' if head or topic.startswith('/') else name


@dataclass(frozen=True)
class DecoderNodeConfig:
    """Everything the decoder node is configured with (one field per ROS parameter)."""

    image_packet_topic: str = param('camera/image_raw/xmodal', 'Image packets (sensor_msgs/CompressedImage).',
                                    read_only=True)
    lidar_packet_topic: str = param('lidar/points/xmodal', 'LiDAR packets (sensor_msgs/CompressedImage).',
                                    read_only=True)
    image_topic: str = param('decoded/camera/image_raw', 'Decoded images (sensor_msgs/Image), camera header; '
                             'their CameraInfo goes beside them (<namespace of image_topic>/camera_info).',
                             read_only=True)
    lidar_topic: str = param('decoded/lidar/points',
                             'Decoded scans (sensor_msgs/PointCloud2), LiDAR header.', read_only=True)
    models: Tuple[str, ...] = param(INTRA_MODELS,
                                    'Stems of every model the decoder can decode (matched by model id): the '
                                    'models of both tiers; those whose files are missing are left out '
                                    '(logged).', read_only=True)
    pframe_model: str = param(PFRAME_MODEL, 'Stem of the P-frame model, held beside models when '
                              'its files exist (else P frames are refused as of an unknown model, logged). '
                              'Empty: none.', read_only=True)
    fast_pframe_model: str = param(FAST_PFRAME_MODEL, "Stem of the fast tier's P-frame model, held like "
                                   'pframe_model. Empty: none.', read_only=True)
    backend: str = param('torch', 'Inference backend.', choices=BACKENDS, read_only=True)
    device: str = param('cpu', 'Inference device: cpu, cuda or cuda:N.', read_only=True)
    precision: str = param('fp32', PRECISION_HELP, choices=PRECISIONS, read_only=True)
    threads: int = param(0, THREADS_HELP, bounds=(0, 256), read_only=True)
    post_filter: bool = param(True, "Run each model's post filter after g_s; off, a CPU decodes about twice "
                              'as fast and images lose its gain (about 15 % more bits for the same PSNR).',
                              read_only=True)
    post_filter_views: int = param(1, 'Average the post filter over 1, 2, 4 or 8 shifted and mirrored views '
                                   'of each image: the same packets, a slightly better image, that many '
                                   "times the filter's time.", bounds=(1, 8), read_only=True)
    resolutions: Tuple[int, ...] = param(
        (1242, 375), 'Image sizes to warm up at (and build TensorRT profiles for), as W1, H1, W2, H2, ...',
        read_only=True, pairs=True)
    max_image_pixels: int = param(4096 * 2304, 'Largest padded width x height an image packet may declare; '
                                  'larger packets are refused before any allocation.',
                                  bounds=(64 * 64, 8192 * 8192), read_only=True)
    output_encoding: str = param('rgb8', 'Encoding of the decoded images. Changeable at run time.',
                                 choices=OUTPUT_ENCODINGS)
    scan_buffer: int = param(10, 'Decoded scans kept by scan id for the image packets that reference them.',
                             bounds=(1, 100), read_only=True)
    publish_points: bool = param(True, 'Publish the decoded scans as PointCloud2.', read_only=True)
    diagnostics_period: float = param(1.0, 'Seconds between /diagnostics messages.', bounds=(0.05, 60.0),
                                      read_only=True)


# ------------------------------------------------------------------------------ validation

def specs(config_cls: Type[Config]) -> Tuple[dataclasses.Field, ...]:
    """The parameter fields of a config dataclass, in declaration order."""
    return tuple(f for f in dataclasses.fields(config_cls) if 'description' in f.metadata)


def validate_value(spec: dataclasses.Field, value: Any) -> Optional[str]:
    """``None`` if ``value`` is valid for ``spec``, else the reason (naming the value and the valid range)."""
    name, meta, default = spec.name, spec.metadata, spec.default
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f'{name} must be true or false, got {value!r}'
    if isinstance(default, tuple):
        return _validate_array(spec, value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f'{name} must be an integer, got {value!r}'
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f'{name} must be a finite number, got {value!r}'
    elif isinstance(default, str) and not isinstance(value, str):
        return f'{name} must be a string, got {value!r}'
    if meta['bounds'] is not None:
        low, high = meta['bounds']
        if not low <= value <= high:
            return f'{name} = {value!r} is out of range: use a value in [{low}, {high}]'
    if meta['choices'] is not None and value not in meta['choices']:
        return f'{name} = {value!r} is not supported: use one of {", ".join(meta["choices"])}'
    return None


def _element_type(spec: dataclasses.Field) -> type:
    """str, int or float: the element type of an array parameter (float when the default is empty)."""
    return type(spec.default[0]) if spec.default else float


def _validate_array(spec: dataclasses.Field, value: Any) -> Optional[str]:
    name, length, element = spec.name, spec.metadata['length'], _element_type(spec)
    if not isinstance(value, (list, tuple)):
        return f'{name} must be a list, got {value!r}'
    if element is float and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                    and math.isfinite(v) for v in value):
        return f'{name} must hold finite numbers, got {list(value)!r}'
    if element is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f'{name} must hold integers, got {list(value)!r}'
    if element is str and not all(isinstance(v, str) for v in value):
        return f'{name} must hold strings, got {list(value)!r}'
    if length is not None and len(value) not in (0, length):
        return f'{name} must have {length} values (or none), got {len(value)}'
    if spec.metadata['pairs'] and (len(value) % 2 or not all(v > 0 for v in value)):
        return f'{name} must hold positive width, height pairs, got {list(value)!r}'
    return None


def config_from_values(config_cls: Type[Config], values: Mapping[str, Any]) -> Config:
    """Build ``config_cls`` from parameter values, raising :class:`ParameterError` listing every bad one."""
    by_name = {spec.name: spec for spec in specs(config_cls)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ParameterError(f'unknown parameter(s) {", ".join(unknown)}: valid ones are '
                             f'{", ".join(by_name)}')
    problems = [reason for name, value in values.items()
                if (reason := validate_value(by_name[name], value)) is not None]
    if problems:
        raise ParameterError('; '.join(problems))
    return config_cls(**{name: _normalise(by_name[name], value) for name, value in values.items()})


def _normalise(spec: dataclasses.Field, value: Any) -> Any:
    """Lists become tuples (the configs are frozen and hashable), ints given for floats become floats."""
    if isinstance(spec.default, tuple):
        return tuple(_element_type(spec)(v) for v in value)
    if isinstance(spec.default, float) and not isinstance(spec.default, bool):
        return float(value)
    return value


# ----------------------------------------------------------------------------------- rclpy

def declare_config(node: Any, config_cls: Type[Config]) -> Config:
    """Declare every field of ``config_cls`` as a parameter of ``node`` and return the values.

    Raises:
        ParameterError: a value given on the command line or in a parameter file is invalid.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for spec in specs(config_cls):
        descriptor = ParameterDescriptor(
            name=spec.name, description=spec.metadata['description'], read_only=spec.metadata['read_only'],
            additional_constraints=_constraints_text(spec))
        _set_range(descriptor, spec)
        parameter = node.declare_parameter(spec.name, _declared_default(spec), descriptor)
        values[spec.name] = spec.default if parameter.value is None else parameter.value
    return config_from_values(config_cls, values)


def watch_config(node: Any, config_cls: Type[Config], get: Callable[[], Config],
                 apply: Callable[[Config], None],
                 extra_check: Optional[Callable[[str, Any], Optional[str]]] = None) -> None:
    """Validate run-time parameter changes (rejecting bad ones with a reason), then ``apply`` the new config.

    ``extra_check(name, value)`` adds node-specific rules (such as the model's number of qualities).
    """
    from rcl_interfaces.msg import SetParametersResult

    by_name = {spec.name: spec for spec in specs(config_cls)}

    def check(parameters: Sequence[Any]) -> Any:
        result = validate(parameters)
        if result.successful and not post_set:
            update(parameters)
        return result

    def validate(parameters: Sequence[Any]) -> Any:
        for parameter in parameters:
            spec = by_name.get(parameter.name)
            if spec is None:
                continue
            reason = validate_value(spec, parameter.value)
            if reason is None and extra_check is not None:
                reason = extra_check(parameter.name, parameter.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def update(parameters: Sequence[Any]) -> None:
        changes = {p.name: _normalise(by_name[p.name], p.value) for p in parameters if p.name in by_name}
        if changes:
            apply(dataclasses.replace(get(), **changes))

    # Humble has no post-set callbacks: there the change is applied once validated, just before
    # rclpy stores it (a later callback refusing it would leave the node ahead of its parameters).
    post_set = hasattr(node, 'add_post_set_parameters_callback')
    node.add_on_set_parameters_callback(check)
    if post_set:
        node.add_post_set_parameters_callback(update)


def _declared_default(spec: dataclasses.Field) -> Any:
    """The default to declare; an empty array is declared by type (uninitialised), not as ``[]``.

    rclpy would infer BYTE_ARRAY from ``[]`` and then refuse the doubles given on the command line.
    """
    from rclpy.parameter import Parameter

    if isinstance(spec.default, tuple):
        if not spec.default:
            return Parameter.Type.DOUBLE_ARRAY
        return list(spec.default)
    return spec.default


def _set_range(descriptor: Any, spec: dataclasses.Field) -> None:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange

    bounds = spec.metadata['bounds']
    if bounds is None:
        return
    if isinstance(spec.default, int) and not isinstance(spec.default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    else:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]), step=0.0)]


def _constraints_text(spec: dataclasses.Field) -> str:
    meta = spec.metadata
    if meta['choices']:
        return 'one of: ' + ', '.join(meta['choices'])
    if meta['length']:
        return f'{meta["length"]} values or empty'
    if meta['pairs']:
        return 'width, height pairs'
    return ''
