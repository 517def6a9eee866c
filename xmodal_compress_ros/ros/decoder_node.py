"""decoder_node: xmodal packets in, sensor_msgs/Image, CameraInfo and PointCloud2 out, with the original
headers.

LiDAR packets are decoded in arrival order and kept in a bounded buffer by scan id (and published
as PointCloud2 with the LiDAR header); image packets are decoded with the scan they reference. A
missing scan (lost, or not yet there) does not stop the image: it is decoded without it and counted
as ``lidar_missing``. As in the encoder, callbacks only hand packets to a worker thread, which
decodes the newest image packet and drops (and counts) image packets it could not get to.
Each decoded image comes with a CameraInfo (beside it, as image
pipelines expect) of the calibration the LiDAR packets carry: the rectified camera (``K = P[:, :3]``,
``R = I``, no distortion). Topics, parameters and diagnostics are documented in ``docs/nodes.md``.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, List, Optional, Tuple

import numpy as np
from rclpy.node import Node

from xmodal_compress_ros.errors import PacketError, XmodalError
from xmodal_compress_ros.ros import conversions
from xmodal_compress_ros.ros.diagnostics import OK, WARN, diagnostic_array
from xmodal_compress_ros.ros.frame_worker import FrameWorker
from xmodal_compress_ros.ros.node_main import (ProblemReporter, match_logging, output_qos, overridable,
                                               run_node)
from xmodal_compress_ros.ros.node_stats import NodeStats
from xmodal_compress_ros.ros.package_files import resolve_model_stem
from xmodal_compress_ros.ros.params import DecoderNodeConfig, declare_config, sibling_topic, watch_config
from xmodal_compress_ros.runtime.cpu_features import thread_count

FORMAT_PREFIX = 'xmodal/'
# Image and LiDAR packets come on two topics, so an image packet may overtake the LiDAR packet it
# references: it waits this long (wall time) for that scan before it is decoded without it.
SCAN_WAIT_S = 0.2
POINT_FIELDS = ('x', 'y', 'z', 'intensity')


class DecoderNode(Node):
    """The remote-side node. Loads the models on construction; raises XmodalError on bad configuration."""

    def __init__(self, node_name: str = 'xmodal_decoder', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        from xmodal_compress_ros.codec import bitstream, pipeline

        self._config = declare_config(self, DecoderNodeConfig)
        c = self._config
        self._packet_kind = bitstream.packet_kind
        self._unknown_model_error = pipeline.UnknownModelError
        resolutions = tuple(zip(c.resolutions[::2], c.resolutions[1::2]))
        models = tuple(c.models)
        for stem in (c.pframe_model, c.fast_pframe_model):
            if stem and stem not in models:
                if pipeline.model_available(resolve_model_stem(stem)):
                    models += (stem,)
                else:
                    self.get_logger().warning(f'P-frame model {stem} not found: its P frames will be '
                                              'refused')
        self._no_reference = pipeline.NO_REFERENCE
        self._threads = thread_count(c.threads)
        self._decoder = pipeline.Decoder(pipeline.DecoderConfig(
            models=tuple(resolve_model_stem(m) for m in models), backend=c.backend, device=c.device,
            precision=c.precision, threads=self._threads,
            resolutions=resolutions, max_pixels=c.max_image_pixels, post_filter=c.post_filter,
            post_filter_views=c.post_filter_views))
        missing = [m for m in models if resolve_model_stem(m) in self._decoder.missing_models]
        if missing:
            self.get_logger().warning(f'model file(s) missing: {", ".join(missing)}; packets of those '
                                      'models will be refused as of an unknown model')
        self._stats = NodeStats()
        self._report = ProblemReporter(self._stats, self.get_logger())
        self._scans: 'OrderedDict[int, Any]' = OrderedDict()
        self._last_size: Optional[Tuple[int, int]] = None
        self._last_quality: Any = ''
        self._last_model = ''
        self._errors_reported = 0
        self._camera_calib: Any = None  # calibration of the newest LiDAR packet, for CameraInfo
        watch_config(self, DecoderNodeConfig, lambda: self._config, self._apply_config)
        self._worker: FrameWorker = FrameWorker(
            self._decode_lidar, self._decode_image, side_capacity=c.scan_buffer,
            frame_delay=self._scan_delay, on_error=self._on_worker_error, name='xmodal-decoder')
        self._open_topics()
        self._worker.start()
        self.get_logger().info(f'decoding {c.image_packet_topic} + {c.lidar_packet_topic} -> {c.image_topic}'
                               + (f' + {c.lidar_topic}' if c.publish_points else '')
                               + f' ({c.backend}/{c.device}/{c.precision}, {self._threads} thread(s), '
                               f'models: {", ".join(m for m in models if m not in missing)})')

    def _open_topics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        c = self._config
        self._image_pub = self.create_publisher(Image, c.image_topic, output_qos(), **overridable(),
                                                **match_logging(self, 'publisher', 'image publisher'))
        self._info_pub = self.create_publisher(CameraInfo, sibling_topic(c.image_topic, 'camera_info'),
                                               output_qos(), **overridable())
        self._points_pub = self.create_publisher(PointCloud2, c.lidar_topic, output_qos(), **overridable()) \
            if c.publish_points else None
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(CompressedImage, c.lidar_packet_topic, self._on_packet, output_qos(),
                                 **overridable())
        self.create_subscription(CompressedImage, c.image_packet_topic, self._on_packet, output_qos(),
                                 **overridable(),
                                 **match_logging(self, 'subscription', 'packet subscription'))
        self.create_timer(c.diagnostics_period, self._publish_diagnostics)

    def close(self) -> None:
        """Stop the worker thread (the node itself is destroyed by the caller)."""
        self._worker.stop()

    def _apply_config(self, config: DecoderNodeConfig) -> None:
        self._config = config

    # ------------------------------------------------------------------------- callbacks

    def _on_packet(self, msg: Any) -> None:
        self._stats.count('packets_in')
        if not msg.format.startswith(FORMAT_PREFIX):
            self._report('error', 'unknown_format', f'packet format {msg.format!r} is not an xmodal packet '
                         f'(expected {FORMAT_PREFIX}image;vN or {FORMAT_PREFIX}lidar;vN): check the packet '
                         'topics')
            return
        packet = bytes(msg.data)
        try:
            kind = self._packet_kind(packet)
        except PacketError as exc:
            self._report('error', 'corrupt_packet', str(exc))
            return
        self._stats.record_bytes(kind, len(packet))
        if kind == 'lidar':
            if self._worker.put_side((msg.header, packet)):
                self._stats.count('lidar_drop.backlog')
            return
        self._stats.count('frames_in')
        if self._worker.put_frame((msg.header, packet, time.monotonic())):
            self._stats.count('drop.superseded')

    # ---------------------------------------------------------------------------- worker

    def _on_worker_error(self, exc: BaseException) -> None:
        if isinstance(exc, self._unknown_model_error):
            self._report('error', 'unknown_model',
                         f'{exc} (add the model to the decoder\'s models parameter)')
        elif isinstance(exc, PacketError):
            self._report('error', 'corrupt_packet', str(exc))
        elif isinstance(exc, XmodalError):
            self._report('error', type(exc).__name__, str(exc))
        else:
            self._report('error', 'internal_error', f'{type(exc).__name__}: {exc}')
            self.get_logger().error(f'unexpected error (packet dropped): {exc!r}')

    def _scan_delay(self, item: Tuple[Any, bytes, float], waiting_scans: List[Any]) -> float:
        """Seconds the image packet may still wait for the scan it references (0: decode now)."""
        if waiting_scans:
            return 0.0  # they are decoded first; the image re-checks after them
        try:
            reference = self._decoder.scan_reference(item[1])
        except PacketError:
            return 0.0  # reported when the image is decoded
        if reference is None or reference[0] in self._scans:
            return 0.0
        return max(0.0, SCAN_WAIT_S - (time.monotonic() - item[2]))

    def _decode_lidar(self, item: Tuple[Any, bytes]) -> None:
        header, packet = item
        start = time.perf_counter()
        scan = self._decoder.decode_lidar(packet)
        self._stats.record_latency('lidar_decode', time.perf_counter() - start)
        self._scans[scan.scan_id] = scan
        if scan.calib is not None:
            self._camera_calib = scan.calib
        self._scans.move_to_end(scan.scan_id)
        while len(self._scans) > self._config.scan_buffer:
            self._scans.popitem(last=False)
        self._stats.count('scans_out')
        if self._points_pub is not None:
            points = np.asarray(scan.points, dtype=np.float32)
            self._points_pub.publish(
                conversions.numpy_to_pointcloud2(points, header, field_names=POINT_FIELDS))

    def _decode_image(self, item: Tuple[Any, bytes, float]) -> None:
        header, packet, received = item
        reference = self._decoder.scan_reference(packet)
        scan = self._scans.get(reference[0]) if reference is not None else None
        start = time.perf_counter()
        decoded = self._decoder.decode_image(packet, scan)
        self._stats.record_latency('decode', time.perf_counter() - start)
        if decoded.lidar_missing:
            self._stats.count('lidar_missing')
        if decoded.image_only:
            self._stats.count('image_only')
        self._stats.count('p_frames' if decoded.frame_kind == 'P' else 'key_frames')
        if decoded.degraded_reason == self._no_reference:
            # Joined mid-stream: nothing worth showing until the first key frame.
            self._stats.count('waiting_for_key_frame')
            return
        if decoded.degraded:
            self._stats.count('degraded')
            self.get_logger().warning(f'frame {decoded.frame_number} degraded until the next key frame: '
                                      f'{decoded.degraded_reason}', throttle_duration_sec=5.0)
        size = (decoded.width, decoded.height)
        if self._last_size is not None and size != self._last_size:
            self._report('warning', 'resolution_change', f'image size changed from {self._last_size[0]}x'
                         f'{self._last_size[1]} to {size[0]}x{size[1]} (decoded and published)')
        self._last_size = size
        encoding = self._config.output_encoding
        pixels = decoded.rgb if encoding == 'rgb8' else decoded.rgb[..., ::-1]
        self._image_pub.publish(conversions.numpy_to_image(pixels, encoding, header))
        calib = scan.calib if scan is not None and scan.calib is not None else self._camera_calib
        if calib is not None and (calib.width, calib.height) == size:
            self._info_pub.publish(conversions.camera_info_from_calibration(calib, header))
        self._stats.record_latency('node', time.monotonic() - received)
        self._stats.count('frames_out')
        self._last_quality, self._last_model = decoded.quality, decoded.model_id

    # ---------------------------------------------------------------------- diagnostics

    def diagnostics(self) -> dict:
        """The key/values of the node's diagnostic status."""
        stats, c = self._stats, self._config
        errors = stats.counts('error.')
        values = {'packets_in': stats.get('packets_in'), 'frames_in': stats.get('frames_in'),
                  'frames_out': stats.get('frames_out'), 'scans_out': stats.get('scans_out'),
                  'dropped.superseded': stats.get('drop.superseded'),
                  'lidar_dropped.backlog': stats.get('lidar_drop.backlog'), 'errors': sum(errors.values())}
        values.update({f'errors.{k}': v for k, v in errors.items()})
        values.update({f'warnings.{k}': v for k, v in stats.counts('warning.').items()})
        image_kbps, lidar_kbps = stats.kbps('image'), stats.kbps('lidar')
        values.update({'lidar_missing': stats.get('lidar_missing'), 'image_only': stats.get('image_only'),
                       'key_frames': stats.get('key_frames'), 'p_frames': stats.get('p_frames'),
                       'degraded': stats.get('degraded'),
                       'waiting_for_key_frame': stats.get('waiting_for_key_frame'),
                       'image_kbps': image_kbps, 'lidar_kbps': lidar_kbps,
                       'total_kbps': image_kbps + lidar_kbps,
                       'quality': self._last_quality, 'model': self._last_model,
                       'backend': c.backend, 'device': c.device, 'precision': c.precision,
                       'threads': self._threads, 'post_filter': c.post_filter,
                       'post_filter_views': c.post_filter_views, 'output_encoding': c.output_encoding})
        values.update(stats.latency_values('decode', 'lidar_decode', 'node'))
        return values

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics()
        new_errors = values['errors'] - self._errors_reported
        self._errors_reported = values['errors']
        self._diagnostics_pub.publish(diagnostic_array(
            self.get_clock().now().to_msg(), f'xmodal_compress: {self.get_name()}', 'xmodal decoder',
            WARN if new_errors else OK, f'{new_errors} bad packet(s) since the last report' if new_errors
            else 'decoding', values))


def main(args: Optional[List[str]] = None) -> int:
    """Console script ``decoder_node``: ``decoder_node --ros-args -r camera/image_raw/xmodal:=... ...``."""
    return run_node(DecoderNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
