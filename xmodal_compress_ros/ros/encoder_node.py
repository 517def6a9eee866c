"""encoder_node: camera image + LiDAR scan in, xmodal packets (sensor_msgs/CompressedImage) out.

Data flow::

    image ──(callback: newest-only slot)──┐                        ┌─> image packets on <image>/xmodal
    scan  ──(callback: newest-only slot)──┤ worker ── Encoder ─────┤
    camera_info (latest kept), TF ────────┘                        └─> LiDAR packets on <points>/xmodal
                                                (image packets reference the scan they were coded with)

Callbacks only hand messages to the worker, so the executor never blocks. Every scan the worker
takes is encoded once (``Encoder.encode_scan``), its LiDAR packet published once, and its decoded
scan buffered for pairing. While nothing subscribes to either packet topic the
node codes nothing (``lazy``). The worker takes only the newest scan and the newest image, together:
one that is replaced before its turn is dropped and counted, so an overloaded CPU drops frames
instead of falling behind (a full 120k-point scan alone takes hundreds of ms to code on a small CPU)
and still codes each image with the scan that came with it.

An image is paired with the buffered scan nearest in stamp within ``max_time_delta``, waiting at
most ``pairing_wait`` (wall time) for a later scan; images stamped more than ``lidar_timeout``
after the newest scan are encoded image-only at once. Where no image needs a scan (the fast tier,
image-only, every image a key frame) nothing waits for pairing, and the scans are coded in a second
worker thread at the same time as the images (the LiDAR kernels and the networks release the GIL).
The tier (:mod:`codec.tiers`) and the network threads are chosen once at start. Topics, parameters
and diagnostics are documented in ``docs/nodes.md``.
"""
from __future__ import annotations

import time
import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
from rclpy.node import Node

from xmodal_compress_ros.errors import (
    CalibrationError, ImageFormatError, ModelFileError, ParameterError, PointCloudError, XmodalError)
from xmodal_compress_ros.ros import conversions
from xmodal_compress_ros.ros.diagnostics import OK, WARN, diagnostic_array
from xmodal_compress_ros.ros.frame_worker import FrameWorker
from xmodal_compress_ros.ros.node_main import (ProblemReporter, match_logging, output_qos, overridable,
                                               run_node, sensor_qos)
from xmodal_compress_ros.ros.node_stats import NodeStats
from xmodal_compress_ros.ros.package_files import resolve_model_stem
from xmodal_compress_ros.ros.pairing import ScanBuffer
from xmodal_compress_ros.ros.params import EncoderNodeConfig, declare_config, watch_config
from xmodal_compress_ros.ros.rate_control import RateController
from xmodal_compress_ros.runtime.cpu_features import thread_count

NS_PER_S = 1_000_000_000
# Detected intensity ranges: KITTI reflectance, 8-bit and 16-bit drivers (else the largest value seen).
INTENSITY_RANGES = (1.0, 255.0, 65535.0)
# Diagnostics keys of the errors the codec may raise for a bad message (others: the class name).
_ERROR_KINDS = {ImageFormatError: 'bad_image', PointCloudError: 'bad_cloud'}


def packet_format(kind: str) -> str:
    """The CompressedImage.format of a packet: codec, kind and bitstream version (``xmodal/image;v1``)."""
    from xmodal_compress_ros.codec import bitstream

    version = bitstream.IMAGE_VERSION if kind == 'image' else bitstream.LIDAR_VERSION
    return f'xmodal/{kind};v{version}'


@dataclass(frozen=True)
class _PendingImage:
    msg: Any
    received: float  # time.monotonic() at the callback


class EncoderNode(Node):
    """The vehicle-side node. Loads the models on construction; raises XmodalError on bad configuration."""

    def __init__(self, node_name: str = 'xmodal_encoder', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        from xmodal_compress_ros.codec import pipeline

        self._pipeline = pipeline
        self._config = declare_config(self, EncoderNodeConfig)
        self._tier = self._choose_tier()
        self._threads = thread_count(self._config.threads)
        self._stats = NodeStats()
        self._report = ProblemReporter(self._stats, self.get_logger())
        # Replaced only by the worker thread (CameraInfo mode); read by reference elsewhere.
        self._encoder: Any = None
        self._calib: Any = None
        self._rate: Optional[RateController] = None
        self._calibration_source = ''
        self._camera_info: Any = None
        self._used_camera_info: Any = None
        # LiDAR-to-camera extrinsic (4x4) once known, where it came from, and TF when it is the source.
        self._extrinsic: Optional[np.ndarray] = None
        self._extrinsic_source = ''
        self._static_tf: Any = None
        self._frames = {'camera': '', 'lidar': ''}  # header frame ids, for the TF lookup
        self._intensity_max = 0.0  # detected range (lidar_intensity_max 0), never shrinks
        # LiDAR silence is measured in sensor time (stamps), from the newest scan or else the first
        # image: a CPU-bound worker holding the GIL delays callbacks, not stamps.
        self._first_image_stamp: Optional[int] = None
        self._last_image_stamp: Optional[int] = None
        self._last_scan_stamp: Optional[int] = None
        self._image_only_mode = False
        self._last_quality = self._config.quality
        self._last_bpp = 0.0
        self._load_static_calibration()
        watch_config(self, EncoderNodeConfig, lambda: self._config, self._apply_config, self._check_quality)

        self._scans: ScanBuffer = ScanBuffer(self._config.scan_buffer)
        # Static calibration: the encoder is never rebuilt, so a second thread may code its scans.
        self._scans_apart = self._encoder is not None and not self._encoder.needs_scans
        self._worker: FrameWorker = FrameWorker(
            self._encode_scan, self._encode_image, side_capacity=1,
            frame_delay=self._pairing_delay, on_error=self._on_worker_error, name='xmodal-encoder')
        self._scan_worker: Optional[FrameWorker] = FrameWorker(
            self._encode_scan, lambda _: None, side_capacity=1, on_error=self._on_worker_error,
            name='xmodal-lidar') if self._scans_apart else None
        self._open_topics()
        self._worker.start()
        if self._scan_worker is not None:
            self._scan_worker.start()
        c = self._config
        self.get_logger().info(
            f'encoding {self._image_sub.topic_name} + {self._scan_sub.topic_name} -> '
            f'{self._image_packet_pub.topic_name} + {self._lidar_packet_pub.topic_name} '
            f'({c.backend}/{c.device}/{c.precision}, {self._threads} thread(s), tier {self._tier.tier}, '
            f'{self._calibration_source or "waiting for CameraInfo on " + c.camera_info_topic})'
            + (', scans coded beside the images' if self._scans_apart else '')
            + (', coding while the packets have a subscriber' if self._config.lazy else ''))

    # ---------------------------------------------------------------------------- setup

    def _choose_tier(self) -> Any:
        """The tier of the key frames (logged once, a warning where auto had to take the slow one)."""
        from xmodal_compress_ros.codec.tiers import choose_tier

        c = self._config
        choice = choose_tier(c.tier, c.device, c.model, c.fallback_model, c.fast_model,
                             available=lambda stem: self._pipeline.model_available(resolve_model_stem(stem)),
                             pframe_model=c.pframe_model, fast_pframe_model=c.fast_pframe_model)
        missing = c.tier == 'auto' and choice.tier == 'quality' and not c.device.startswith('cuda')
        log = self.get_logger().warning if missing else self.get_logger().info
        log(choice.describe() + ('; tier:=quality for the full models' if choice.tier == 'fast' else ''))
        return choice

    def _codec_config(self) -> Any:
        from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig

        c = self._config
        lidar = LidarCodecConfig(codec=c.lidar_codec, max_error=c.lidar_max_error,
                                 quantization_bits=c.lidar_quantization_bits, frustum_only=c.frustum_only,
                                 intensity_max=c.lidar_intensity_max or INTENSITY_RANGES[0])
        # quality=0: every frame passes its own quality (checked against the model's levels separately),
        # so an encoder built from CameraInfo never fails on a quality set before the model was known.
        interval, tier = c.keyframe_interval, self._tier
        if interval > 1 and not self._pipeline.model_available(resolve_model_stem(tier.pframe_model)):
            self.get_logger().warning(f'keyframe_interval {interval}: P-frame model {tier.pframe_model} not '
                                      'found; coding every image as a key frame', once=True)
            interval = 1
        self._keyframe_interval = interval
        return self._pipeline.EncoderConfig(model=resolve_model_stem(tier.model),
                                            fallback_model=tier.fallback_model and
                                            resolve_model_stem(tier.fallback_model),
                                            backend=c.backend,
                                            device=c.device, precision=c.precision, quality=0,
                                            lidar=lidar, threads=self._threads, refine_steps=c.refine_steps,
                                            keyframe_interval=interval,
                                            pframe_model=resolve_model_stem(tier.pframe_model))

    def _load_static_calibration(self) -> None:
        c = self._config
        if c.calibration_file:
            from xmodal_compress_ros.geometry.calibration import load_calibration

            calib = load_calibration(c.calibration_file)
            self._extrinsic, self._extrinsic_source = calib.T_cam_lidar, c.calibration_file
            self._set_calibration(calib, f'calibration {c.calibration_file}')
            if c.quality >= self._encoder.num_qualities:
                raise ParameterError(f'quality = {c.quality} but the model has levels '
                                     f'0..{self._encoder.num_qualities - 1}: set quality in that range')
        elif not c.camera_info_topic:
            raise ParameterError(
                'no calibration: set calibration_file (YAML, KITTI .txt or KITTI raw folder), or '
                'camera_info_topic (the intrinsics) with T_cam_lidar or TF for the extrinsic')
        elif c.T_cam_lidar:
            self._extrinsic = np.asarray(c.T_cam_lidar, dtype=np.float64).reshape(4, 4)
            self._extrinsic_source = 'T_cam_lidar'
        else:
            from xmodal_compress_ros.ros.static_tf import StaticTransforms

            self._static_tf = StaticTransforms(self)

    def _set_calibration(self, calib: Any, source: str) -> None:
        """(Re)build the encoder for ``calib``; the models are loaded here, never in a callback."""
        config = self._codec_config()
        try:
            encoder = self._pipeline.Encoder(config, calib)
        except ModelFileError as exc:
            if config.keyframe_interval == 1:
                raise
            # A P-frame model that does not fit the intra model (other levels): key frames only, said once.
            self.get_logger().warning(f'P-frame model unusable ({exc}); coding every image as a key frame')
            self._keyframe_interval = 1
            encoder = self._pipeline.Encoder(dataclasses.replace(config, keyframe_interval=1), calib)
        if self._rate is None or self._rate.num_qualities != encoder.num_qualities:
            self._rate = RateController(encoder.num_qualities)
        self._encoder, self._calib, self._calibration_source = encoder, calib, source

    def _open_topics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        c = self._config
        # Packets go beside the inputs as remapped and namespaced (image_transport's convention).
        self._image_packet_pub = self.create_publisher(
            CompressedImage, self._resolved(c.image_packet_topic()), output_qos(), **overridable(),
            **match_logging(self, 'publisher', 'packet publisher'))
        self._lidar_packet_pub = self.create_publisher(
            CompressedImage, self._resolved(c.lidar_packet_topic()), output_qos(), **overridable())
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # Subscriptions last: once they exist the node is ready (tools wait for them to appear).
        if c.camera_info_topic and not c.calibration_file:
            self.create_subscription(CameraInfo, c.camera_info_topic, self._on_camera_info, sensor_qos(),
                                     **overridable())
        self._scan_sub = self.create_subscription(PointCloud2, c.lidar_topic, self._on_scan, sensor_qos(),
                                                  **overridable())
        self._image_sub = self.create_subscription(Image, c.image_topic, self._on_image, sensor_qos(),
                                                   **overridable())
        self.create_timer(c.diagnostics_period, self._publish_diagnostics)

    def _resolved(self, packet_topic: str) -> str:
        """``packet_topic`` = ``<input>/xmodal`` with ``<input>`` as remapped and namespaced.

        A user remapping ``camera/image_raw:=/front/image`` gets packets on ``/front/image/xmodal``.
        rclpy without ``resolve_topic_name`` (Humble) leaves the name to the usual resolution.
        """
        base = packet_topic[:-len('/xmodal')]
        if not hasattr(self, 'resolve_topic_name'):
            return packet_topic
        return self.resolve_topic_name(base).rstrip('/') + '/xmodal'

    def close(self) -> None:
        """Stop the worker threads (the node itself is destroyed by the caller)."""
        self._worker.stop()
        if self._scan_worker is not None:
            self._scan_worker.stop()

    def _idle(self) -> bool:
        """True while ``lazy`` and nothing subscribes to either packet topic (nothing is coded then)."""
        return self._config.lazy and not (self._image_packet_pub.get_subscription_count()
                                          or self._lidar_packet_pub.get_subscription_count())

    # ------------------------------------------------------------------------ parameters

    def _apply_config(self, config: EncoderNodeConfig) -> None:
        self._config = config

    def _check_quality(self, name: str, value: Any) -> Optional[str]:
        encoder = self._encoder
        if name == 'quality' and encoder is not None and value >= encoder.num_qualities:
            return f'quality = {value} is out of range: the model has levels 0..{encoder.num_qualities - 1}'
        return None

    # ------------------------------------------------------------------------- callbacks

    def _on_image(self, msg: Any) -> None:
        self._stats.count('frames_in')
        self._frames['camera'] = msg.header.frame_id
        if self._idle():
            self._stats.count('idle')
            return
        self._last_image_stamp = conversions.stamp_to_ns(msg.header.stamp)
        if self._first_image_stamp is None:
            self._first_image_stamp = self._last_image_stamp
        if self._worker.put_frame(_PendingImage(msg, time.monotonic())):
            self._stats.count('drop.superseded')

    def _on_scan(self, msg: Any) -> None:
        self._stats.count('scans_in')
        self._frames['lidar'] = msg.header.frame_id
        stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
        self._last_scan_stamp = max(stamp_ns, self._last_scan_stamp or stamp_ns)
        if self._idle():
            self._stats.count('scans_idle')
            return
        if (self._scan_worker or self._worker).put_side(msg):
            self._stats.count('scan_drop.superseded')

    def _on_camera_info(self, msg: Any) -> None:
        first = self._camera_info is None
        self._camera_info = msg
        if first:
            self._worker.wake()  # an image may be waiting for the first calibration

    # ---------------------------------------------------------------------------- worker

    def _on_worker_error(self, exc: BaseException) -> None:
        if isinstance(exc, XmodalError):
            self._report('drop', _ERROR_KINDS.get(type(exc), type(exc).__name__), str(exc))
        else:
            self._report('drop', 'internal_error', f'{type(exc).__name__}: {exc}')
            self.get_logger().error(f'unexpected error (frame dropped): {exc!r}')

    def _encode_scan(self, msg: Any) -> None:
        self._refresh_calibration()
        encoder = self._encoder
        if encoder is None:
            self._report('scan_drop', 'no_calibration',
                         f'no CameraInfo received on {self._config.camera_info_topic} yet')
            return
        if self._extrinsic is None:
            self._report_no_extrinsic()
            return
        rings = None
        try:
            if any(f.name == 'ring' for f in msg.fields):  # velodyne, ouster, hesai drivers
                points = conversions.pointcloud2_to_numpy(msg, ('x', 'y', 'z', 'intensity', 'ring'))
                points, rings = points[:, :4], points[:, 4]
            else:
                points = conversions.pointcloud2_to_numpy(msg)
        except PointCloudError as exc:
            self._report('scan_drop', 'bad_cloud', str(exc))
            return
        if len(points) == 0:
            self._report('scan_warning', 'empty_cloud', 'a LiDAR scan has no points (sent as an empty scan)')
        elif not np.isfinite(points[:, :3]).all():
            self._report('scan_warning', 'non_finite_points',
                         'a LiDAR scan has NaN/inf points (they are left out of the packet)')
        stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
        start = time.perf_counter()
        try:
            packet, scan = encoder.encode_scan(points, stamp_ns, msg.header.frame_id,
                                               self._intensity_range(points), rings=rings)
        except PointCloudError as exc:
            self._report('scan_drop', 'bad_cloud', str(exc))
            return
        self._stats.record_latency('lidar_encode', time.perf_counter() - start)
        self._publish_packet(self._lidar_packet_pub, msg.header, 'lidar', packet)
        self._stats.count('scans_out')
        self._stats.record_bytes('lidar', len(packet))
        self._rate.observe_lidar(len(packet), stamp_ns / NS_PER_S)
        self._scans.add(stamp_ns, scan)

    def _lidar_timed_out(self, stamp_ns: Optional[int] = None) -> bool:
        """True if the image stamped ``stamp_ns`` (default: the newest) is more than ``lidar_timeout``
        after the newest scan (or, before any scan, after the first image)."""
        stamp_ns = self._last_image_stamp if stamp_ns is None else stamp_ns
        last = self._last_scan_stamp if self._last_scan_stamp is not None else self._first_image_stamp
        return None not in (stamp_ns, last) and stamp_ns - last > self._config.lidar_timeout * NS_PER_S

    def _pairing_delay(self, pending: _PendingImage, waiting_scans: List[Any]) -> float:
        """Seconds the image may still wait for a scan that could pair better, or for the first
        CameraInfo (0: encode now). ``waiting_scans`` will be encoded just before the image."""
        remaining = max(0.0, self._config.pairing_wait - (time.monotonic() - pending.received))
        if self._encoder is None and self._camera_info is None:
            return remaining
        if self._encoder is not None and not self._encoder.needs_scans:
            return 0.0
        stamp_ns = conversions.stamp_to_ns(pending.msg.header.stamp)
        if self._lidar_timed_out(stamp_ns):
            return 0.0
        # Scans come in stamp order: one at or after the image means no later scan can pair better.
        if self._scans.pairing_settled(stamp_ns) or any(
                conversions.stamp_to_ns(scan.header.stamp) >= stamp_ns for scan in waiting_scans):
            return 0.0
        return remaining

    def _encode_image(self, pending: _PendingImage) -> None:
        msg = pending.msg
        self._refresh_calibration()
        encoder, rate = self._encoder, self._rate
        if encoder is None:
            self._report('drop', 'no_calibration', f'no CameraInfo received on '
                         f'{self._config.camera_info_topic} yet: images are dropped until one arrives')
            return
        try:
            rgb = conversions.image_to_rgb(msg)
        except ImageFormatError as exc:
            self._report('drop', 'bad_image', str(exc))
            return
        stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
        scan = self._pick_scan(stamp_ns, rgb.shape[1], rgb.shape[0]) if encoder.needs_scans else None
        config = self._config
        quality = config.quality
        if config.target_kbps > 0:
            quality = rate.choose(config.target_kbps, config.quality)
        # A CameraInfo-built encoder may have fewer levels than the quality set before it existed.
        if quality >= encoder.num_qualities:
            self._report('warning', 'quality_clamped', f'quality = {quality} but the model has levels '
                         f'0..{encoder.num_qualities - 1}: coding at {encoder.num_qualities - 1}')
            quality = encoder.num_qualities - 1
        start = time.perf_counter()
        encoded = encoder.encode_image(rgb, stamp_ns, scan, quality)
        self._stats.record_latency('encode', time.perf_counter() - start)
        self._publish_packet(self._image_packet_pub, msg.header, 'image', encoded.packet)
        self._stats.record_latency('node', time.monotonic() - pending.received)
        self._stats.count('frames_out')
        self._stats.record_bytes('image', encoded.image_bytes)
        if encoded.image_only:
            self._stats.count('image_only')
        self._stats.count('p_frames' if encoded.frame_kind == 'P' else 'key_frames')
        rate.observe_image(quality, encoded.image_bytes, stamp_ns / NS_PER_S)
        self._last_quality, self._last_bpp = quality, encoded.bpp

    def _pick_scan(self, stamp_ns: int, width: int, height: int) -> Any:
        """The scan to condition this image on, or None (image-only), counting why."""
        timed_out = self._lidar_timed_out(stamp_ns)
        if timed_out != self._image_only_mode:
            self._image_only_mode = timed_out
            if timed_out:
                self.get_logger().warning(f'no LiDAR scan on {self._config.lidar_topic} within '
                                          f'{self._config.lidar_timeout:g} s of the images: encoding '
                                          'images image-only')
            else:
                self.get_logger().info(f'LiDAR scans are back on {self._config.lidar_topic}: '
                                       'encoding with LiDAR again')
        calib_size = self._calib.image_size
        if (width, height) != calib_size:
            self._report('warning', 'size_mismatch',
                         f'image is {width}x{height} but the calibration is for {calib_size[0]}x'
                         f'{calib_size[1]}: encoded image-only (use the calibration of this camera)')
            return None
        if timed_out or self._extrinsic is None:
            return None
        found = self._scans.nearest(stamp_ns, int(self._config.max_time_delta * NS_PER_S))
        if found is None:
            self._stats.count('unpaired')
            return None
        return found[1]

    def _intensity_range(self, points: np.ndarray) -> float:
        """The intensity coded as the largest code for this scan: ``lidar_intensity_max``, or detected.

        Detected, it is the smallest of ``INTENSITY_RANGES`` holding every intensity seen so far (or
        the largest one seen), so 0-255 intensities keep their scale; it never shrinks, so a dark
        scan keeps the resolution of the bright ones. Values above a set maximum are counted.
        """
        intensity = points[:, 3] if points.ndim == 2 and points.shape[1] > 3 and len(points) else None
        top = float(np.nanmax(intensity)) if intensity is not None and np.isfinite(intensity).any() else 0.0
        if not np.isfinite(top):
            top = 0.0
        configured = self._config.lidar_intensity_max
        if configured > 0:
            if top > configured:
                self._report('scan_warning', 'intensity_clipped',
                             f'LiDAR intensities up to {top:g} exceed lidar_intensity_max = {configured:g}: '
                             'they are clipped (set lidar_intensity_max to 0 to detect the range)')
            return configured
        if top > self._intensity_max:
            self._intensity_max = next((r for r in INTENSITY_RANGES if top <= r), top)
            self.get_logger().info(f'LiDAR intensity range: 0..{self._intensity_max:g} (detected)')
        return self._intensity_max or INTENSITY_RANGES[0]

    def _report_no_extrinsic(self) -> None:
        frames = self._frames
        if self._static_tf is not None and self._static_tf.unavailable:
            why = self._static_tf.unavailable
        else:
            why = (f'TF has no transform from {frames["lidar"] or "the scan frame"!r} to '
                   f'{frames["camera"] or "the image frame"!r}')
        self._report('scan_drop', 'no_extrinsic',
                     f'no LiDAR-to-camera extrinsic ({why}): images are coded image-only and scans are not '
                     'sent; set calibration_file or T_cam_lidar, or publish the transform on /tf_static')

    def _lookup_extrinsic(self) -> None:
        """Take the extrinsic from TF once it connects the image and scan frames."""
        tf, frames = self._static_tf, self._frames
        if self._extrinsic is not None or tf is None or not (frames['camera'] and frames['lidar']):
            return
        found = tf.lookup(frames['camera'], frames['lidar'])
        if found is not None:
            self._extrinsic, self._extrinsic_source = found, f'TF {frames["lidar"]} -> {frames["camera"]}'
            self.get_logger().info(f'LiDAR-to-camera extrinsic from {self._extrinsic_source}')

    def _refresh_calibration(self) -> None:
        """(Re)build the encoder when a new CameraInfo or the extrinsic arrived (CameraInfo mode).

        Until the extrinsic is known the encoder is built with an identity placeholder: images are
        then coded image-only and scans are not sent, so the placeholder never reaches a packet.
        """
        if self._config.calibration_file:
            return
        self._lookup_extrinsic()
        info = self._camera_info
        key = (id(info), id(self._extrinsic))
        if info is None or key == self._used_camera_info:
            return
        self._used_camera_info = key
        try:
            calib = self._calibration_from_info(info)
        except CalibrationError as exc:
            self._report('warning', 'bad_camera_info', str(exc))
            return
        if calib != self._calib:
            if self._encoder is not None:
                self.get_logger().info('calibration changed: reloading the encoder')
            self._set_calibration(calib, f'CameraInfo on {self._config.camera_info_topic} + '
                                  f'{self._extrinsic_source or "no extrinsic"}')

    def _calibration_from_info(self, info: Any) -> Any:
        from xmodal_compress_ros.geometry.calibration import Calibration

        extrinsic = self._extrinsic if self._extrinsic is not None else np.eye(4)
        return Calibration.from_camera_info(info, extrinsic)

    def _publish_packet(self, publisher: Any, header: Any, kind: str, packet: bytes) -> None:
        import array

        from sensor_msgs.msg import CompressedImage

        data = array.array('B')
        data.frombytes(packet)
        msg = CompressedImage(header=header, format=packet_format(kind))
        msg.data = data
        publisher.publish(msg)

    # ---------------------------------------------------------------------- diagnostics

    def diagnostics(self) -> dict:
        """The key/values of the node's diagnostic status (also used by tests)."""
        config, stats = self._config, self._stats
        drops = stats.counts('drop.')
        values = {
            'frames_in': stats.get('frames_in'), 'frames_out': stats.get('frames_out'),
            'scans_in': stats.get('scans_in'), 'scans_out': stats.get('scans_out'),
            'dropped': sum(drops.values()),
        }
        values.update({f'dropped.{k}': v for k, v in drops.items()})
        values.update({f'scans_dropped.{k}': v for k, v in stats.counts('scan_drop.').items()})
        values.update({f'warnings.{k}': v for k, v in stats.counts('warning.').items()})
        values.update({f'scan_warnings.{k}': v for k, v in stats.counts('scan_warning.').items()})
        image_kbps, lidar_kbps = stats.kbps('image'), stats.kbps('lidar')
        values.update({'image_kbps': image_kbps, 'lidar_kbps': lidar_kbps,
                       'total_kbps': image_kbps + lidar_kbps, 'bpp': self._last_bpp,
                       'quality': self._last_quality, 'target_kbps': config.target_kbps,
                       'unpaired': stats.get('unpaired'), 'image_only': stats.get('image_only'),
                       'key_frames': stats.get('key_frames'), 'p_frames': stats.get('p_frames'),
                       'keyframe_interval': getattr(self, '_keyframe_interval', config.keyframe_interval),
                       'lidar': 'timeout' if self._lidar_timed_out() else 'ok',
                       'backend': config.backend, 'device': config.device, 'precision': config.precision,
                       'tier': self._tier.tier, 'tier_reason': self._tier.reason, 'threads': self._threads,
                       'calibration': self._calibration_source or 'none',
                       'extrinsic': self._extrinsic_source or 'none: images image-only',
                       'idle': stats.get('idle'),
                       'lidar_intensity_max': config.lidar_intensity_max or self._intensity_max})
        values.update(stats.latency_values('encode', 'lidar_encode', 'node'))
        return values

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics()
        problems: List[str] = []
        if self._encoder is None:
            problems.append('waiting for CameraInfo')
        elif self._extrinsic is None:
            problems.append('no LiDAR-to-camera extrinsic: image-only')
        if values['lidar'] == 'timeout':
            problems.append('no LiDAR: image-only')
        self._diagnostics_pub.publish(diagnostic_array(
            self.get_clock().now().to_msg(), f'xmodal_compress: {self.get_name()}', 'xmodal encoder',
            WARN if problems else OK, '; '.join(problems) or 'encoding', values))


def main(args: Optional[List[str]] = None) -> int:
    """Console script ``encoder_node``: ``encoder_node --ros-args -p calibration_file:=... ...``."""
    return run_node(EncoderNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
