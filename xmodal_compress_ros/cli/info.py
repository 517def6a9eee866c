"""``xmodal info``: what an ``.xmc`` container holds, without decoding anything."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = ('Describe an .xmc file (sizes, quality, model id, every packet with its kind (key/P/LiDAR) and '
        'bytes) as one JSON object.')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('input', type=Path, help='the .xmc file')


def main(args: argparse.Namespace) -> int:
    from xmodal_compress_ros.codec import lidar_predictive
    from xmodal_compress_ros.codec.bitstream import (FRAME_KINDS, LIDAR_CODEC_PREDICTIVE, LIDAR_CODECS,
                                                     packet_kind, parse_container, parse_image_packet,
                                                     parse_lidar_packet)
    from xmodal_compress_ros.errors import PacketError

    if not args.input.is_file():
        raise PacketError(f'{args.input} not found: give an .xmc file written by xmodal encode')
    data = args.input.read_bytes()
    images, scans, listing = [], [], []
    for packet in parse_container(data):
        if packet_kind(packet) == 'image':
            p = parse_image_packet(packet)
            kind = FRAME_KINDS[p.frame_kind]
            listing.append({'kind': kind, 'frame_number': p.frame_number, 'bytes': len(packet)})
            images.append({
                'frame_kind': kind, 'frame_number': p.frame_number,
                'reference_number': p.reference_number if p.predicted else None, 'pose_bytes': len(p.pose),
                'width': p.width, 'height': p.height, 'padded_width': p.padded_width,
                'padded_height': p.padded_height, 'quality': p.quality, 'model_id': p.model_id.hex(),
                'image_only': not p.lidar_conditioned, 'stamp_ns': p.image_stamp_ns,
                'scan_id': p.scan_id if p.lidar_conditioned else None,
                'scan_stamp_ns': p.scan_stamp_ns if p.lidar_conditioned else None,
                'y_substreams': p.num_y_substreams, 'z_bytes': len(p.z_bytes), 'y_bytes': len(p.y_bytes),
                'image_bytes': len(packet)})
        else:
            p = parse_lidar_packet(packet)
            listing.append({'kind': 'LiDAR', 'scan_id': p.scan_id, 'bytes': len(packet)})
            scans.append({
                'scan_id': p.scan_id, 'stamp_ns': p.stamp_ns, 'frame_id': p.frame_id, 'points': p.num_points,
                'lidar_codec': LIDAR_CODECS[p.codec_id],
                'quantization_bits': p.quantization_bits, 'intensity_bits': p.intensity_bits,
                'frustum_only': p.frustum_only, 'has_projection': p.projection is not None,
                'lidar_bytes': len(packet)})
            if p.codec_id == LIDAR_CODEC_PREDICTIVE:
                # The bound, and whether the scan went laser by laser ('spinning': from its ring field,
                # its order or its elevation angles) or on the grid.
                header = lidar_predictive.read_info(p.payload)
                scans[-1].update(max_error=header.max_error, layout=header.mode,
                                 invalid_points=header.invalid_points)
    image_bytes = sum(i['image_bytes'] for i in images)
    lidar_bytes = sum(s['lidar_bytes'] for s in scans)
    first = images[0] if images else {}
    # Top-level fields describe the (first) image; per-packet details follow in images/scans.
    keys = ('width', 'height', 'quality', 'model_id', 'image_only', 'stamp_ns')
    summary = {key: first.get(key) for key in keys}
    bpp = round(8.0 * image_bytes / (first['width'] * first['height']), 5) if len(images) == 1 else None
    summary.update(image_bytes=image_bytes, lidar_bytes=lidar_bytes, total_bytes=image_bytes + lidar_bytes,
                   file_bytes=len(data), points=sum(s['points'] for s in scans), bpp=bpp,
                   key_frames=sum(i['frame_kind'] == 'key' for i in images),
                   p_frames=sum(i['frame_kind'] == 'P' for i in images), packets=listing, images=images,
                   scans=scans)
    print(json.dumps(summary))
    return 0
