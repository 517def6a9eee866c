"""The synthetic drive: determinism, camera/LiDAR consistency, realism statistics, files, CLI."""
import json

import numpy as np
import pytest

from xmodal_compress_ros.cli.__main__ import main as cli_main
from xmodal_compress_ros.data.kitti import KittiRawDrive, read_timestamps
from xmodal_compress_ros.data.synthetic.kitti_layout import drive_dir, write_kitti_raw
from xmodal_compress_ros.data.synthetic.lidar import LidarConfig
from xmodal_compress_ros.data.synthetic.sequence import (SynthConfig, SyntheticDrive, kitti_calibration,
                                                         render_frames)
from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.geometry.calibration import Calibration

TINY = SynthConfig(frames=3, seed=5, width=160, height=48, lidar=LidarConfig(beams=16, columns=360))


def _high_pass_std(image: np.ndarray) -> float:
    import cv2

    grey = image.astype(np.float32).mean(2)
    return float((grey - cv2.GaussianBlur(grey, (0, 0), 1.5)).std())


@pytest.fixture(scope='module')
def full_frame():
    """The one full-size frame of this module: 1242x375 and 64 beams x 2083 columns."""
    return SyntheticDrive(SynthConfig(frames=1, seed=3)).render(0)


def test_same_seed_same_frames():
    a, b = SyntheticDrive(TINY).render(1).frame, SyntheticDrive(TINY).render(1).frame
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.points, b.points)
    assert (a.image_stamp_ns, a.lidar_stamp_ns) == (b.image_stamp_ns, b.lidar_stamp_ns)


def test_parallel_workers_render_the_same_frames():
    config = SynthConfig(frames=2, seed=5, width=160, height=48, lidar=TINY.lidar)
    serial, parallel = list(render_frames(config)), list(render_frames(config, workers=2))
    for a, b in zip(serial, parallel, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.points, b.points)


def test_other_seed_other_frames():
    a = SyntheticDrive(TINY).render(0).frame
    b = SyntheticDrive(SynthConfig(frames=1, seed=6, width=160, height=48, lidar=TINY.lidar)).render(0).frame
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() > 5
    assert len(a.points) != len(b.points) or not np.array_equal(a.points, b.points)


def test_frames_follow_a_moving_vehicle_at_10hz():
    drive = SyntheticDrive(TINY)
    frames = list(drive)
    lidar = np.array([f.lidar_stamp_ns for f in frames])
    camera = np.array([f.image_stamp_ns for f in frames])
    assert np.allclose(np.diff(lidar), 100e6, atol=1e6)
    # The camera fires a few milliseconds after the sweep faces forward.
    assert np.all((camera - lidar > 0) & (camera - lidar < 20e6))
    assert [f.name for f in frames] == ['0000000000', '0000000001', '0000000002']
    x = drive.trajectory.poses(np.array([0.0, 1.0]))[:, 0, 3]
    assert 4.0 < x[1] - x[0] < 12.0


def _lidar_depth_agreement(rendered):
    """Fraction of in-image LiDAR points whose depth matches the rendered depth at their pixel."""
    frame = rendered.frame
    M = frame.calib.lidar_to_pixel
    uvw = np.c_[frame.points[:, :3], np.ones(len(frame.points))] @ M.T
    w = uvw[:, 2]
    front = w > 1.0
    u = np.round(uvw[front, 0] / w[front]).astype(int)
    v = np.round(uvw[front, 1] / w[front]).astype(int)
    w = w[front]
    inside = (u >= 0) & (u < frame.calib.width) & (v >= 0) & (v < frame.calib.height)
    rendered_depth = rendered.depth[v[inside], u[inside]]
    error = np.abs(rendered_depth - w[inside])
    return inside.sum(), float(np.mean(error < 0.03 * w[inside] + 0.1)), float(np.median(error))


def test_lidar_lands_where_the_camera_sees_the_same_depth():
    config = SynthConfig(frames=1, seed=2, width=414, height=125, lidar=LidarConfig(beams=64, columns=600))
    count, agree, median = _lidar_depth_agreement(SyntheticDrive(config).render(0))
    assert count > 1500
    # Disagreement is left only at occlusion edges (the sensors sit 0.27 m apart) and from motion.
    assert agree > 0.9
    assert median < 0.1


def test_lidar_without_motion_distortion_agrees_even_better():
    lidar = LidarConfig(beams=64, columns=600, motion_distortion=False, range_noise=0.0)
    config = SynthConfig(frames=1, seed=2, width=414, height=125, lidar=lidar)
    _, agree, median = _lidar_depth_agreement(SyntheticDrive(config).render(0))
    assert agree > 0.9
    assert median < 0.05


def test_full_size_scan_looks_like_an_hdl64(full_frame):
    points = full_frame.frame.points
    assert points.dtype == np.float32 and points.shape[1] == 5
    assert 100_000 < len(points) < 128_000
    assert np.array_equal(np.unique(points[:, 4]), np.arange(64))
    rng = np.linalg.norm(points[:, :3], axis=1)
    assert rng.max() <= 120.5 and rng.min() >= 1.0
    assert 0.0 <= points[:, 3].min() and points[:, 3].max() <= 1.0
    # The lowest ring hits the ground about 3.7 m away, the mount being 1.73 m high.
    low = points[points[:, 4] == 0]
    assert np.median(low[:, 2]) == pytest.approx(-1.73, abs=0.1)


def test_full_size_image_is_textured_not_flat_shaded(full_frame):
    image = full_frame.frame.image
    assert image.shape == (375, 1242, 3) and image.dtype == np.uint8
    # Real KITTI frames measure about 11 here; flat-shaded boxes with no noise measure below 2.
    assert _high_pass_std(image) > 5.0
    assert image.std() > 35.0
    depth = full_frame.depth
    assert np.isinf(depth[0]).mean() > 0.05          # some sky at the top
    assert np.isfinite(depth[-1]).all()              # ground at the bottom


def test_kitti_raw_layout_reads_back(tmp_path):
    drive = SyntheticDrive(TINY)
    frames = list(write_kitti_raw(tmp_path, drive, '2011_09_26'))
    folder = drive_dir(tmp_path, '2011_09_26')
    for i, frame in enumerate(frames):
        scan = folder / 'velodyne_points' / 'data' / f'{i:010d}.bin'
        assert scan.stat().st_size == 16 * len(frame.points)
    stamps = read_timestamps(folder / 'velodyne_points' / 'timestamps.txt')
    assert stamps == [f.lidar_stamp_ns for f in frames]
    loaded = KittiRawDrive(folder, folder.parent)
    assert len(loaded) == 3
    assert np.allclose(loaded.calib.lidar_to_pixel, drive.calib.lidar_to_pixel, rtol=1e-5, atol=1e-5)
    again = loaded[2]
    assert np.array_equal(again.image, frames[2].image)
    assert np.array_equal(again.points, frames[2].points[:, :4])
    assert again.image_stamp_ns == frames[2].image_stamp_ns


def test_cli_writes_kitti_files_bag_and_calibration(tmp_path, capsys):
    out = tmp_path / 'synth'
    code = cli_main(['synth', '--out', str(out), '--frames', '2', '--width', '160', '--height', '48',
                     '--beams', '16', '--columns', '300', '--seed', '4'])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['frames'] == 2 and summary['points_per_scan_mean'] > 1000
    assert summary['seconds_per_frame'] > 0
    assert Calibration.from_yaml(out / 'calibration.yaml') == kitti_calibration(160, 48)
    assert len(list((drive_dir(out, '2011_09_26') / 'image_02' / 'data').glob('*.png'))) == 2
    from xmodal_compress_ros.data.rosbag_io import read_sensor_frames

    frames = list(read_sensor_frames(out / 'bag'))
    assert len(frames) == 2
    assert frames[0].image.shape == (48, 160, 3)
    assert frames[0].points.shape[1] == 5


def test_cli_refuses_to_overwrite_a_bag(tmp_path, capsys):
    (tmp_path / 'bag').mkdir()
    code = cli_main(['synth', '--out', str(tmp_path), '--frames', '1', '--width', '160', '--height', '48'])
    assert code == 2
    assert 'exists already' in capsys.readouterr().err


def test_bad_requests_raise_dataset_errors():
    with pytest.raises(DatasetError, match='frames=0'):
        SyntheticDrive(SynthConfig(frames=0))
    with pytest.raises(DatasetError, match='too small'):
        kitti_calibration(8, 8)
    with pytest.raises(DatasetError, match='outside'):
        SyntheticDrive(TINY).render(3)


def test_lidar_places_each_moving_car_as_a_whole_when_the_sweep_passes_it():
    from xmodal_compress_ros.data.synthetic.lidar import _object_times

    drive = SyntheticDrive(TINY)
    prims = drive.scene.prims
    start = drive.sweep_start_s(1)
    pose = drive.trajectory.poses(np.array([start + 0.05]))[0]
    times = _object_times(prims, pose[:3, 3], 0.0, start, TINY.lidar)
    lead = prims.object_id[np.flatnonzero(prims.velocity > 0)[0]]
    parts = prims.object_id == lead
    assert np.ptp(times[parts]) == 0.0
    # The lead car drives ahead of the ego car: the sweep faces it half-way through the turn.
    assert times[parts][0] == pytest.approx(start + 0.05, abs=0.01)
