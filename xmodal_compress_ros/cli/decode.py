"""``xmodal decode``: reconstruct the image(s) of an ``.xmc`` container."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = 'Decode an .xmc file to PNG (and optionally the LiDAR scan to .bin); prints JSON.'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xmodal_compress_ros.codec.pipeline import DecoderConfig
    from xmodal_compress_ros.codec.post_filter import ENSEMBLE_SIZES

    d = DecoderConfig()
    parser.add_argument('input', type=Path, help='the .xmc file (from xmodal encode)')
    parser.add_argument('-o', '--output', type=Path,
                        help='reconstructed image (.png); several images (a stream) get _000, _001, ... '
                             'suffixes in stream order; required when the file holds images')
    parser.add_argument('--points-out', type=Path,
                        help='also write the decoded LiDAR scan as a KITTI .bin (float32 x, y, z, intensity)')
    parser.add_argument('--drop-lidar', action='store_true',
                        help='decode as if the LiDAR packet were lost (zeros conditioning)')
    parser.add_argument('--model', action='append', default=None, metavar='STEM',
                        help=f'model the decoder holds, repeatable (default: {", ".join(d.models)})')
    parser.add_argument('--backend', default=d.backend, help='torch | onnxruntime | tensorrt (default torch)')
    parser.add_argument('--device', default=d.device, help='cpu | cuda (default cpu)')
    parser.add_argument('--precision', default=d.precision, help='fp32 | fp16 | bf16 (default fp32)')
    parser.add_argument('--no-post-filter', action='store_true',
                        help="skip the models' post filters: faster on a CPU, lower quality")
    parser.add_argument('--post-filter-views', type=int, default=d.post_filter_views, choices=ENSEMBLE_SIZES,
                        help='average the post filter over N shifted and mirrored views: the same packets, '
                             "a slightly better image, N times the filter's time (default 1)")


def main(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from xmodal_compress_ros.codec.bitstream import packet_kind, parse_container
    from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig
    from xmodal_compress_ros.errors import ImageFormatError, PacketError, PointCloudError

    if args.output is not None and args.output.suffix.lower() != '.png':
        raise ImageFormatError(f'{args.output}: write the reconstruction as .png (lossless), not '
                               f'{args.output.suffix!r}')
    for path in (args.output, args.points_out):
        if path is not None and not path.parent.is_dir():
            raise ImageFormatError(f'cannot write {path}: folder {path.parent} does not exist')
    if args.points_out is not None and args.points_out.suffix.lower() != '.bin':
        raise PointCloudError(f'{args.points_out}: --points-out writes a KITTI .bin, name it *.bin')
    if not args.input.is_file():
        raise PacketError(f'{args.input} not found: give an .xmc file written by xmodal encode')
    packets = parse_container(args.input.read_bytes())
    images = [p for p in packets if packet_kind(p) == 'image']
    if not images:
        return _decode_scans_only(args, packets)
    if args.output is None:
        raise ImageFormatError(f'{args.input} holds images: give -o/--output (a .png) to write them')
    config = DecoderConfig(backend=args.backend, device=args.device, precision=args.precision, warmup=False,
                           post_filter=not args.no_post_filter, post_filter_views=args.post_filter_views,
                           **({'models': tuple(args.model)} if args.model else {}))
    decoder = Decoder(config)
    scans = {}
    for packet in packets:
        if packet_kind(packet) == 'lidar':
            scan = decoder.decode_lidar(packet)
            scans[scan.scan_id, scan.stamp_ns] = scan
    records = []
    for index, packet in enumerate(images):
        reference = decoder.scan_reference(packet)
        scan = None if args.drop_lidar or reference is None else scans.get(reference)
        start = time.perf_counter()
        decoded = decoder.decode_image(packet, scan)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        path = _numbered(args.output, index, len(images))
        _write_png(path, decoded.rgb)
        record = {'output': str(path), 'width': decoded.width, 'height': decoded.height,
                  'quality': decoded.quality, 'model_id': decoded.model_id, 'image_only': decoded.image_only,
                  'lidar_missing': decoded.lidar_missing, 'stamp_ns': decoded.stamp_ns,
                  'frame_kind': decoded.frame_kind, 'frame_number': decoded.frame_number,
                  'degraded': decoded.degraded, 'decode_ms': round(elapsed_ms, 1)}
        if decoded.degraded:
            record['degraded_reason'] = decoded.degraded_reason
        if args.points_out is not None and scan is not None:
            points_path = _numbered(args.points_out, index, len(images))
            np.ascontiguousarray(scan.points, dtype='<f4').tofile(points_path)
            record.update(points_out=str(points_path), points=len(scan.points))
        records.append(record)
    if len(records) == 1:
        print(json.dumps(records[0]))
    else:
        counts = {'key_frames': sum(r['frame_kind'] == 'key' for r in records),
                  'p_frames': sum(r['frame_kind'] == 'P' for r in records),
                  'degraded': sum(r['degraded'] for r in records)}
        print(json.dumps(dict(counts, images=records)))
    return 0


def _decode_scans_only(args: argparse.Namespace, packets) -> int:
    """A LiDAR-only file: decode its scans (no model loaded) and write them with --points-out."""
    import time

    import numpy as np

    from xmodal_compress_ros.codec.bitstream import parse_lidar_packet
    from xmodal_compress_ros.codec.lidar_codec import decode_packet, warm_up
    from xmodal_compress_ros.errors import PacketError

    if not packets:
        raise PacketError(f'{args.input} holds no packet')
    start = time.perf_counter()
    warm_up()  # the kernels compile (or load from numba's cache) once per process: timed apart
    warm_up_ms = round((time.perf_counter() - start) * 1e3, 1)
    records = []
    for index, data in enumerate(packets):
        packet = parse_lidar_packet(data)
        start = time.perf_counter()
        points = decode_packet(packet)
        record = {'scan_id': packet.scan_id, 'stamp_ns': packet.stamp_ns, 'points': len(points),
                  'decode_ms': round((time.perf_counter() - start) * 1e3, 1)}
        if args.points_out is not None:
            path = _numbered(args.points_out, index, len(packets))
            np.ascontiguousarray(points, dtype='<f4').tofile(path)
            record['points_out'] = str(path)
        records.append(record)
    print(json.dumps(dict(records[0], warm_up_ms=warm_up_ms) if len(records) == 1
                     else {'scans': records, 'warm_up_ms': warm_up_ms}))
    return 0


def _numbered(path: Path, index: int, count: int) -> Path:
    return path if count == 1 else path.with_name(f'{path.stem}_{index:03d}{path.suffix}')


def _write_png(path: Path, rgb) -> None:
    import cv2

    from xmodal_compress_ros.errors import ImageFormatError

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ImageFormatError(f'cannot write {path}: check the folder is writable')
