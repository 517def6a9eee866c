"""``xmodal encode`` / ``decode`` / ``info``: container round trips, LiDAR loss, image-only files, errors."""
import json

import cv2
import numpy as np
import pytest
import torch

from xmodal_compress_ros.cli import __main__ as cli
from xmodal_compress_ros.codec import lidar_predictive
from xmodal_compress_ros.codec.bitstream import packet_kind, parse_container
from xmodal_compress_ros.runtime.samples import TINY_CONFIG, synthetic_frame, untrained_models


@pytest.fixture(autouse=True)
def codec_commands(monkeypatch):
    monkeypatch.setattr(cli, 'SUBCOMMANDS', {name: name for name in ('encode', 'decode', 'info')})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Tiny models, and a 200x120 frame as PNG + KITTI .bin + YAML calibration."""
    folder = tmp_path_factory.mktemp('frame')
    lidar, twin = untrained_models(folder, TINY_CONFIG)
    frame = synthetic_frame(200, 120, seed=3)
    cv2.imwrite(str(folder / 'image.png'), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    frame.points.astype('<f4').tofile(folder / 'scan.bin')
    frame.calib.to_yaml(folder / 'calib.yaml')
    return folder, lidar, twin


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def encode(capsys, files, *extra):
    folder, lidar, twin = files
    return run(capsys, 'encode', '--image', folder / 'image.png', '--points', folder / 'scan.bin', '--calib',
               folder / 'calib.yaml', '--model', lidar, '--fallback-model', twin, *extra)


def test_encode_info_decode_round_trip(capsys, files, tmp_path):
    folder, lidar, twin = files
    code, out, _ = encode(capsys, files, '--quality', 2, '--stamp-ns', 77, '-o', tmp_path / 'frame.xmc')
    assert code == 0
    summary = json.loads(out)
    packets = parse_container((tmp_path / 'frame.xmc').read_bytes())
    assert [packet_kind(p) for p in packets] == ['lidar', 'image']
    assert summary['lidar_bytes'] == len(packets[0]) and summary['image_bytes'] == len(packets[1])
    assert summary['total_bytes'] == len(packets[0]) + len(packets[1]) and not summary['image_only']
    assert summary['bpp'] == pytest.approx(8 * len(packets[1]) / (200 * 120), abs=1e-5)
    assert summary['quality'] == 2 and summary['points'] > 0

    code, out, _ = run(capsys, 'info', tmp_path / 'frame.xmc')
    info = json.loads(out)
    assert code == 0 and (info['width'], info['height'], info['quality']) == (200, 120, 2)
    assert info['image_bytes'] == summary['image_bytes'] and info['lidar_bytes'] == summary['lidar_bytes']
    assert info['total_bytes'] == summary['total_bytes'] and info['stamp_ns'] == 77
    assert info['scans'][0]['has_projection'] and info['images'][0]['scan_id'] == info['scans'][0]['scan_id']
    assert len(info['model_id']) == 32 and info['points'] == summary['points']

    decoded = {}
    for flag in ([], ['--drop-lidar']):
        out_png = tmp_path / f'recon{len(flag)}.png'
        code, out, _ = run(capsys, 'decode', tmp_path / 'frame.xmc', '-o', out_png, '--model', lidar,
                           '--model', twin, '--points-out', tmp_path / 'scan.bin', *flag)
        result = json.loads(out)
        assert code == 0 and result['model_id'] == info['model_id'] and result['stamp_ns'] == 77
        assert result['lidar_missing'] == bool(flag)
        decoded[bool(flag)] = cv2.imread(str(out_png))
        assert decoded[bool(flag)].shape == (120, 200, 3)
    points = np.fromfile(tmp_path / 'scan.bin', '<f4').reshape(-1, 4)
    assert len(points) == summary['points']


def test_image_only_file(capsys, files, tmp_path):
    folder, lidar, twin = files
    code, out, _ = run(capsys, 'encode', '--image', folder / 'image.png', '--no-lidar', '--model', lidar,
                       '--fallback-model', twin, '-o', tmp_path / 'alone.xmc')
    summary = json.loads(out)
    assert code == 0 and summary['image_only'] and summary['lidar_bytes'] == 0
    assert [packet_kind(p) for p in parse_container((tmp_path / 'alone.xmc').read_bytes())] == ['image']
    code, out, _ = run(capsys, 'decode', tmp_path / 'alone.xmc', '-o', tmp_path / 'alone.png',
                       '--model', twin)
    assert code == 0 and json.loads(out)['image_only']


def test_lidar_only_file(capsys, files, tmp_path):
    folder, _, _ = files
    points = np.fromfile(folder / 'scan.bin', '<f4').reshape(-1, 4)
    for codec in ('predictive', 'draco'):
        code, out, _ = run(capsys, 'encode', '--points', folder / 'scan.bin', '--lidar-codec', codec,
                           '--lidar-max-error', 0.005, '-o', tmp_path / f'{codec}.xmc')
        summary = json.loads(out)
        assert code == 0 and summary['lidar_codec'] == codec and summary['points'] > 0
        assert summary['encode_ms'] > 0 and summary['warm_up_ms'] >= 0  # the kernels' first use apart
        packets = parse_container((tmp_path / f'{codec}.xmc').read_bytes())
        assert [packet_kind(p) for p in packets] == ['lidar']
        code, out, _ = run(capsys, 'decode', tmp_path / f'{codec}.xmc',
                           '--points-out', tmp_path / f'{codec}.bin')
        decoded_summary = json.loads(out)
        assert code == 0 and decoded_summary['points'] == summary['points']
        assert 'warm_up_ms' in decoded_summary
        decoded = np.fromfile(tmp_path / f'{codec}.bin', '<f4').reshape(-1, 4)
        assert decoded.shape == (summary['points'], 4)
        code, out, _ = run(capsys, 'info', tmp_path / f'{codec}.xmc')
        scan = json.loads(out)['scans'][0]
        assert code == 0 and scan['lidar_codec'] == codec
        if codec == 'predictive':  # its bound, layout and the points the sender left out
            # (the sample scan is points drawn on planes, no lasers: the grid codes it)
            assert scan['max_error'] == 0.005 and scan['layout'] == 'grid'
            assert scan['invalid_points'] == summary['invalid_points']
        else:
            assert 'layout' not in scan
    # The predictive scan keeps every point's coordinates within 5 mm (in the codec's point order).
    decoded = np.fromfile(tmp_path / 'predictive.bin', '<f4').reshape(-1, 4)
    kept = points[np.isfinite(points[:, :3]).all(1) & np.any(points[:, :3] != 0, axis=1), :3]
    order = lidar_predictive.encode(kept, None, 0.005).order
    assert len(decoded) == len(kept) and np.abs(decoded[:, :3] - kept[order]).max() <= 0.005
    code, _, err = run(capsys, 'encode', '-o', tmp_path / 'none.xmc')
    assert code == 2 and 'nothing to encode' in err


def test_errors_are_one_line(capsys, files, tmp_path):
    folder, lidar, twin = files
    code, _, err = run(capsys, 'encode', '--image', folder / 'image.png', '--model', lidar,
                       '-o', tmp_path / 'x.xmc')
    assert code == 2 and '--points is required' in err
    code, _, err = encode(capsys, files, '--quality', 9, '-o', tmp_path / 'x.xmc')
    assert code == 2 and 'quality 9 is out of range' in err
    code, _, err = encode(capsys, files, '--backend', 'nope', '-o', tmp_path / 'x.xmc')
    assert code == 2 and "unknown backend 'nope'" in err
    code, _, err = encode(capsys, files, '--refine-steps', -1, '-o', tmp_path / 'x.xmc')
    assert code == 2 and 'refinement steps' in err
    encode(capsys, files, '-o', tmp_path / 'ok.xmc')
    code, _, err = run(capsys, 'decode', tmp_path / 'ok.xmc', '-o', tmp_path / 'r.png', '--model', twin)
    assert code == 2 and 'does not hold' in err
    code, _, err = run(capsys, 'decode', tmp_path / 'ok.xmc', '-o', tmp_path / 'r.jpg', '--model', lidar)
    assert code == 2 and '.png' in err
    (tmp_path / 'bad.xmc').write_bytes(b'XMCF\x01junk')
    code, _, err = run(capsys, 'info', tmp_path / 'bad.xmc')
    assert code == 2 and 'container' in err and len(err.strip().splitlines()) == 1


def test_a_refined_encode_decodes_with_the_same_decoder(capsys, files, tmp_path):
    folder, lidar, twin = files
    sizes = []
    for steps in (0, 3):
        out = tmp_path / f'frame{steps}.xmc'
        code, text, _ = encode(capsys, files, '--refine-steps', steps, '-o', out)
        assert code == 0
        sizes.append(json.loads(text)['image_bytes'])
        code, _, _ = run(capsys, 'decode', out, '-o', tmp_path / f'r{steps}.png', '--model', lidar,
                         '--model', twin)
        assert code == 0 and cv2.imread(str(tmp_path / f'r{steps}.png')).shape == (120, 200, 3)
    assert all(size > 0 for size in sizes)


def test_decode_without_the_post_filter(capsys, tmp_path):
    lidar, twin = untrained_models(tmp_path, dict(TINY_CONFIG, post_filter=(8, 1)), post_filter_std=0.05)
    frame = synthetic_frame(200, 120, seed=3)
    cv2.imwrite(str(tmp_path / 'image.png'), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    frame.points.astype('<f4').tofile(tmp_path / 'scan.bin')
    frame.calib.to_yaml(tmp_path / 'calib.yaml')
    code, _, _ = encode(capsys, (tmp_path, lidar, twin), '-o', tmp_path / 'frame.xmc')
    assert code == 0
    decoded = []
    for i, flag in enumerate(([], ['--no-post-filter'], ['--post-filter-views', '8'])):
        out_png = tmp_path / f'recon{i}.png'
        code, _, _ = run(capsys, 'decode', tmp_path / 'frame.xmc', '-o', out_png, '--model', lidar,
                         '--model', twin, *flag)
        assert code == 0
        decoded.append(cv2.imread(str(out_png)).astype(np.int16))
    assert decoded[0].shape == decoded[1].shape == decoded[2].shape == (120, 200, 3)
    assert np.abs(decoded[0] - decoded[1]).max() > 1
    assert np.abs(decoded[0] - decoded[2]).max() > 0  # the views average the filter's output
