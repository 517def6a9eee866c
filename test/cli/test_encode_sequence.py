"""``xmodal encode --sequence``: a KITTI raw drive as one .xmc stream; ``decode`` and ``info`` of it."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from xmodal_compress_ros.cli import __main__ as cli
from xmodal_compress_ros.codec.bitstream import packet_kind, parse_container, parse_image_packet
from xmodal_compress_ros.data.kitti import read_rgb
from xmodal_compress_ros.data.synthetic.kitti_layout import write_kitti_raw
from xmodal_compress_ros.runtime.samples import (TINY_CONFIG, synthetic_frame, untrained_models,
                                                 untrained_pframe_model)

FRAMES = 5


@pytest.fixture(autouse=True)
def codec_commands(monkeypatch):
    monkeypatch.setattr(cli, 'SUBCOMMANDS', {name: name for name in ('encode', 'decode', 'info')})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    """Tiny models and a 5-frame 128x64 KITTI raw drive; (drive folder, model arguments)."""
    folder = tmp_path_factory.mktemp('stream')
    lidar, twin = untrained_models(folder, TINY_CONFIG)
    pframe = untrained_pframe_model(folder, twin)
    start = 1_317_000_000_000_000_000
    frames = [replace(synthetic_frame(128, 64, seed=k), image_stamp_ns=start + k * 10**8,
                      lidar_stamp_ns=start + k * 10**8 - 5 * 10**6) for k in range(FRAMES)]
    written = list(write_kitti_raw(folder / 'raw', frames, '2011_09_26'))
    assert len(written) == FRAMES
    models = ['--model', lidar, '--fallback-model', twin, '--pframe-model', pframe]
    return folder / 'raw' / '2011_09_26' / '2011_09_26_drive_synth_sync', models, (lidar, twin, pframe)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sequence_encodes_to_one_stream_that_decodes_frame_by_frame(capsys, drive, tmp_path):
    folder, models, stems = drive
    out = tmp_path / 'drive.xmc'
    code, text, err = run(capsys, 'encode', '--sequence', folder, '--keyframe-interval', 3, '--quality', 1,
                          *models, '-o', out)
    assert code == 0, err
    summary = json.loads(text)
    assert [f['kind'] for f in summary['per_frame']] == ['key', 'P', 'P', 'key', 'P']
    assert summary['key_frames'] == 2 and summary['p_frames'] == 3 and summary['frames'] == FRAMES
    packets = parse_container(out.read_bytes())
    assert [packet_kind(p) for p in packets] == ['lidar', 'image'] * FRAMES
    assert summary['image_bytes'] == sum(len(p) for p in packets[1::2])
    assert summary['lidar_bytes'] == sum(len(p) for p in packets[0::2])

    code, text, err = run(capsys, 'info', out)
    assert code == 0, err
    info = json.loads(text)
    assert [p['kind'] for p in info['packets']] == ['LiDAR', 'key', 'LiDAR', 'P', 'LiDAR', 'P',
                                                    'LiDAR', 'key', 'LiDAR', 'P']
    assert [p['bytes'] for p in info['packets']] == [len(p) for p in packets]
    assert info['key_frames'] == 2 and info['p_frames'] == 3
    assert info['images'][1]['reference_number'] == 0 and info['images'][1]['pose_bytes'] == 12

    png = tmp_path / 'frame.png'
    code, text, err = run(capsys, 'decode', out, '-o', png, *[a for s in stems for a in ('--model', s)])
    assert code == 0, err
    decoded = json.loads(text)
    assert decoded['key_frames'] == 2 and decoded['p_frames'] == 3 and decoded['degraded'] == 0
    names = [record['output'] for record in decoded['images']]
    assert names == [str(tmp_path / f'frame_{k:03d}.png') for k in range(FRAMES)]
    assert [r['frame_number'] for r in decoded['images']] == list(range(FRAMES))
    for name in names:
        assert read_rgb(name).shape == (64, 128, 3)

    # Without the scans every frame is degraded: key frames lose their LiDAR map, P frames the alignment.
    code, text, err = run(capsys, 'decode', out, '-o', tmp_path / 'lost.png', '--drop-lidar',
                          *[a for s in stems for a in ('--model', s)])
    assert code == 0, err
    assert [r['degraded'] for r in json.loads(text)['images']] == [True, True, True, True, True]


def test_frames_stride_and_all_intra(capsys, drive, tmp_path):
    folder, models, _ = drive
    out = tmp_path / 'intra.xmc'
    code, text, err = run(capsys, 'encode', '--sequence', folder, '--keyframe-interval', 1, '--frames', 2,
                          '--frame-stride', 2, *models, '-o', out)
    assert code == 0, err
    summary = json.loads(text)
    assert [f['frame'] for f in summary['per_frame']] == ['0000000000', '0000000002']
    assert summary['p_frames'] == 0
    images = [parse_image_packet(p) for p in parse_container(out.read_bytes())[1::2]]
    assert all(not p.predicted and p.frame_number == 0 for p in images)
    assert np.all([p.lidar_conditioned for p in images])


def test_sequence_refuses_points(capsys, drive, tmp_path):
    folder, models, _ = drive
    code, _, err = run(capsys, 'encode', '--sequence', folder, '--points', folder / 'x.bin', *models,
                       '-o', tmp_path / 'x.xmc')
    assert code != 0 and '--points' in err and 'Traceback' not in err
