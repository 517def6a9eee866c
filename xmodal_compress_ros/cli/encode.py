"""``xmodal encode``: code one camera image (and its LiDAR scan), or a KITTI raw drive as a stream of
key and P frames, into an ``.xmc`` container."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from xmodal_compress_ros.cli.arguments import positive_int

#: Key frame every 10 frames, as ffmpeg_image_transport.
SEQUENCE_KEYFRAME_INTERVAL = 10

HELP = ('Encode an image and its LiDAR scan, a scan alone (--points without --image), or a KITTI raw drive '
        'as a key/P-frame stream (--sequence) into one .xmc file; prints JSON.')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xmodal_compress_ros.codec.lidar_codec import CODEC_NAMES
    from xmodal_compress_ros.codec.pipeline import EncoderConfig

    d = EncoderConfig()
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--image', type=Path,
                        help='camera image (PNG/JPEG), rectified; without it (and --sequence) the file holds '
                             'the --points scan alone')
    source.add_argument('--sequence', type=Path, metavar='DRIVE',
                        help='a KITTI raw drive folder (.../2011_09_26_drive_0001_sync): its frames in order '
                             'as one stream, key frame every --keyframe-interval; calibration from --calib '
                             'or the date folder above it')
    parser.add_argument('--points', type=Path,
                        help='LiDAR scan: KITTI .bin or .npy (N x >=3); required unless --no-lidar')
    parser.add_argument('--lidar-codec', default=d.lidar.codec, choices=CODEC_NAMES,
                        help=f'LiDAR codec (default {d.lidar.codec}; docs/lidar_stream.md)')
    parser.add_argument('--lidar-max-error', type=float, default=d.lidar.max_error,
                        help=f'predictive codec: largest error of any coordinate, metres '
                             f'(default {d.lidar.max_error})')
    parser.add_argument('--calib', type=Path,
                        help='KITTI object calib .txt, KITTI raw date folder or project .yaml '
                             '(docs/calibration.md); required unless --no-lidar')
    parser.add_argument('--camera', type=int, default=2,
                        help='KITTI camera index for .txt/raw calibs (default 2)')
    parser.add_argument('--quality', type=int, default=d.quality, help=f'quality level (default {d.quality})')
    parser.add_argument('--model', default=d.model, help=f'LiDAR-conditioned model stem (default {d.model})')
    parser.add_argument('--fallback-model', default=d.fallback_model,
                        help=f'image-only twin stem, used with --no-lidar (default {d.fallback_model})')
    parser.add_argument('--no-lidar', action='store_true',
                        help='code the image alone with the twin: no LiDAR packet in the file')
    parser.add_argument('--stamp-ns', type=int, default=0, help='image and scan stamp written to the packets')
    parser.add_argument('--backend', default=d.backend, help='torch | onnxruntime | tensorrt (default torch)')
    parser.add_argument('--device', default=d.device, help='cpu | cuda (default cpu)')
    parser.add_argument('--precision', default=d.precision, help='fp32 | fp16 | bf16 (default fp32)')
    parser.add_argument('--refine-steps', type=int, default=d.refine_steps,
                        help='latent refinement steps (0: off): fewer bits for the same quality, about one '
                             'decoder pass forward and back per step of encoder time; any decoder reads it')
    stream = parser.add_argument_group('stream (--sequence)')
    stream.add_argument('--frames', type=positive_int, default=None,
                        help='code at most N frames (default all)')
    stream.add_argument('--frame-stride', type=positive_int, default=1,
                        help='code every K-th frame of the drive (default 1)')
    stream.add_argument('--keyframe-interval', type=positive_int, default=SEQUENCE_KEYFRAME_INTERVAL,
                        help='a key frame every N frames, P frames between them (1: every frame alone; '
                             f'default {SEQUENCE_KEYFRAME_INTERVAL})')
    stream.add_argument('--pframe-model', default=d.pframe_model,
                        help=f'P-frame model stem (default {d.pframe_model})')
    parser.add_argument('-o', '--output', required=True, type=Path, help='the .xmc file to write')


def main(args: argparse.Namespace) -> int:
    import time

    from xmodal_compress_ros.codec.bitstream import pack_container
    from xmodal_compress_ros.codec.pipeline import Encoder, EncoderConfig
    from xmodal_compress_ros.data.kitti import read_rgb
    from xmodal_compress_ros.data.pointfiles import read_points
    from xmodal_compress_ros.errors import CalibrationError, PacketError, PointCloudError
    from xmodal_compress_ros.geometry.calibration import load_calibration
    from xmodal_compress_ros.runtime.samples import synthetic_calibration

    if args.sequence is not None:
        return _encode_sequence(args)
    if args.image is None:
        return _encode_scan_only(args)
    if not args.no_lidar and (args.points is None or args.calib is None):
        missing = '--points' if args.points is None else '--calib'
        error = PointCloudError if args.points is None else CalibrationError
        raise error(f'{missing} is required to code with the LiDAR (or pass --no-lidar for an image-only '
                    'file)')
    if not args.output.parent.is_dir():
        raise PacketError(f'cannot write {args.output}: folder {args.output.parent} does not exist')
    image = read_rgb(args.image)
    height, width = image.shape[:2]
    if args.calib is not None:
        calib = load_calibration(args.calib, camera=args.camera, image_size=(width, height))
    else:
        # Image-only coding projects nothing; the encoder still wants a camera of the right size.
        calib = synthetic_calibration(width, height)
    config = EncoderConfig(model=args.model, fallback_model=args.fallback_model, backend=args.backend,
                           device=args.device, precision=args.precision, quality=args.quality, warmup=False,
                           refine_steps=args.refine_steps, lidar=_lidar_config(args))
    encoder = Encoder(config, calib)
    start = time.perf_counter()
    packets, scan, points = [], None, 0
    if not args.no_lidar:
        lidar_packet, scan = encoder.encode_scan(read_points(args.points), args.stamp_ns)
        packets.append(lidar_packet)
        points = len(scan.points)
    encoded = encoder.encode_image(image, args.stamp_ns, scan)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    packets.append(encoded.packet)
    data = pack_container(packets)
    args.output.write_bytes(data)
    lidar_bytes = len(packets[0]) if scan is not None else 0
    print(json.dumps({
        'output': str(args.output),
        'width': width,
        'height': height,
        'quality': encoded.quality,
        'image_only': encoded.image_only,
        'image_bytes': encoded.image_bytes,
        'lidar_bytes': lidar_bytes,
        'total_bytes': encoded.image_bytes + lidar_bytes,
        'file_bytes': len(data),
        'bpp': round(encoded.bpp, 5),
        'bpp_with_lidar': round(8.0 * (encoded.image_bytes + lidar_bytes) / (width * height), 5),
        'points': points,
        'backend': f'{args.backend}/{args.device}/{args.precision}',
        'encode_ms': round(elapsed_ms, 1),
    }))
    return 0


def _encode_sequence(args: argparse.Namespace) -> int:
    """A KITTI raw drive as one stream: per frame its LiDAR packet, then its key or P image packet."""
    import time

    from xmodal_compress_ros.codec.bitstream import pack_container
    from xmodal_compress_ros.codec.pipeline import Encoder, EncoderConfig
    from xmodal_compress_ros.data.kitti import KittiRawDrive
    from xmodal_compress_ros.errors import PacketError, ParameterError

    if args.no_lidar or args.points is not None:
        raise ParameterError('--sequence codes the drive\'s own scans: drop --points and --no-lidar')
    if not args.output.parent.is_dir():
        raise PacketError(f'cannot write {args.output}: folder {args.output.parent} does not exist')
    drive = KittiRawDrive(args.sequence, args.calib or args.sequence.resolve().parent, camera=args.camera)
    indexes = list(range(0, len(drive), args.frame_stride))[:args.frames]
    config = EncoderConfig(model=args.model, fallback_model=args.fallback_model, backend=args.backend,
                           device=args.device, precision=args.precision, quality=args.quality, warmup=False,
                           refine_steps=args.refine_steps, keyframe_interval=args.keyframe_interval,
                           pframe_model=args.pframe_model, lidar=_lidar_config(args))
    encoder = Encoder(config, drive.calib)
    packets, frames, elapsed = [], [], 0.0
    for index in indexes:
        frame = drive[index]
        start = time.perf_counter()
        lidar_packet, scan = encoder.encode_scan(frame.points, frame.lidar_stamp_ns, frame_id='velodyne')
        encoded = encoder.encode_image(frame.image, frame.image_stamp_ns, scan)
        elapsed += time.perf_counter() - start
        packets += [lidar_packet, encoded.packet]
        height, width = frame.image.shape[:2]
        frames.append({'frame': frame.name, 'kind': encoded.frame_kind, 'frame_number': encoded.frame_number,
                       'image_bytes': encoded.image_bytes, 'lidar_bytes': len(lidar_packet),
                       'bpp': round(encoded.bpp, 5)})
    data = pack_container(packets)
    args.output.write_bytes(data)
    image_bytes = sum(f['image_bytes'] for f in frames)
    lidar_bytes = sum(f['lidar_bytes'] for f in frames)
    print(json.dumps({
        'output': str(args.output), 'sequence': str(args.sequence), 'width': width, 'height': height,
        'quality': args.quality, 'keyframe_interval': args.keyframe_interval,
        'frame_stride': args.frame_stride,
        'frames': len(frames), 'key_frames': sum(f['kind'] == 'key' for f in frames),
        'p_frames': sum(f['kind'] == 'P' for f in frames), 'image_bytes': image_bytes,
        'lidar_bytes': lidar_bytes, 'total_bytes': image_bytes + lidar_bytes, 'file_bytes': len(data),
        'bpp': round(8.0 * image_bytes / (width * height * len(frames)), 5),
        'backend': f'{args.backend}/{args.device}/{args.precision}',
        'encode_ms_per_frame': round(elapsed * 1e3 / len(frames), 1), 'per_frame': frames,
    }))
    return 0


def _lidar_config(args: argparse.Namespace):
    from dataclasses import replace

    from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig

    return replace(LidarCodecConfig(), codec=args.lidar_codec, max_error=args.lidar_max_error)


def _encode_scan_only(args: argparse.Namespace) -> int:
    """A LiDAR-only .xmc: one LiDAR packet, no model loaded."""
    import time

    from xmodal_compress_ros.codec.bitstream import pack_container, pack_lidar_packet
    from xmodal_compress_ros.codec.lidar_codec import encode_scan, warm_up
    from xmodal_compress_ros.data.pointfiles import read_points
    from xmodal_compress_ros.errors import PacketError, PointCloudError

    if args.points is None or args.no_lidar:
        raise PointCloudError('give --image (and --points) or --points alone: there is nothing to encode')
    if not args.output.parent.is_dir():
        raise PacketError(f'cannot write {args.output}: folder {args.output.parent} does not exist')
    points = read_points(args.points)
    config = _lidar_config(args)
    start = time.perf_counter()
    warm_up(config)  # the kernels compile (or load from numba's cache) once per process: timed apart
    warm_up_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    encoded = encode_scan(points, config)
    packet = pack_lidar_packet(encoded.to_packet(0, args.stamp_ns, 'lidar'))
    elapsed_ms = (time.perf_counter() - start) * 1e3
    data = pack_container([packet])
    args.output.write_bytes(data)
    print(json.dumps({
        'output': str(args.output),
        'lidar_codec': args.lidar_codec,
        'lidar_bytes': len(packet),
        'file_bytes': len(data),
        'points': encoded.num_points,
        'invalid_points': encoded.invalid_points,
        'bits_per_point': round(8.0 * len(packet) / max(1, encoded.num_points), 3),
        'encode_ms': round(elapsed_ms, 1),
        'warm_up_ms': round(warm_up_ms, 1),
    }))
    return 0
