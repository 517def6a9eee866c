"""Shared fixtures: tiny untrained models, a real encoder/decoder pair, and the packets they make."""

from dataclasses import dataclass
from typing import Dict, List

import pytest


@dataclass
class CodecKit:
    stems: tuple
    encoder: object
    decoder: object
    seeds: List[bytes]
    scans: Dict


@pytest.fixture(scope='session')
def codec_kit(tmp_path_factory) -> CodecKit:
    """Tiny LiDAR model, twin and P-frame model written to disk, an Encoder/Decoder on them, and six
    real packets."""
    import torch

    from harness import packet_fuzz
    from xmodal_compress_ros.codec import pipeline
    from xmodal_compress_ros.data.synthetic.sequence import kitti_calibration

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp('models')
    stems = packet_fuzz.write_tiny_models(folder) + (packet_fuzz.write_tiny_pframe_model(folder),)
    encoder = pipeline.Encoder(
        pipeline.EncoderConfig(model=stems[0], fallback_model=stems[1], quality=0, warmup=False),
        kitti_calibration(64, 64),
    )
    decoder = pipeline.Decoder(pipeline.DecoderConfig(models=stems, resolutions=((64, 64),), warmup=False))
    seeds = packet_fuzz.seed_packets(encoder)
    scans = {}
    for packet in seeds:
        if packet[:4] == b'XMCL':
            scan = decoder.decode_lidar(packet)
            scans[(scan.scan_id, scan.stamp_ns)] = scan
    return CodecKit(stems, encoder, decoder, seeds, scans)
