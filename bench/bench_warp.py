"""How well the previous frame predicts the current one once the LiDAR and the vehicle's motion align it.

For each frame t of a drive (stride s: frames 0, s, 2s, ...) the prediction of frame t from the
*original* frame t-s, RGB PSNR on 8 bits, four ways:

* ``previous``: frame t-s as is;
* ``rotation``: warped with the estimated pose, every pixel at infinity (rotation-only homography);
* ``warp``: warped with the estimated pose and ``dense_depth`` of frame t's scan (the product);
* ``warp_no_sky``: as ``warp`` but IP-Basic's depth everywhere (no +inf sky), for the choice of sky.

Poses come from ``ScanRegistration`` on the raw scans, quantised as the P packet carries them. On a
synthetic drive the exact poses and depth are known: it adds the pose error and ``exact`` (exact pose
and depth buffer). Timings (registration per scan, dense depth, warp) are on one thread.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_warp.py [--kitti-raw DRIVE_DIR CALIB_DIR]
        [--synthetic-frames 20] [--out bench/results/warp_kitti_raw.json]
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from xmodal_compress_ros.geometry.depth_completion import complete_depth
from xmodal_compress_ros.geometry.ego_motion import (ScanRegistration, lidar_to_camera_motion,
                                                     quantize_pose)
from xmodal_compress_ros.geometry.projection import project_to_depth
from xmodal_compress_ros.geometry.warp import camera_intrinsics, dense_depth, warp_to_current

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (or $XMODAL_SHARED_DATA), as the tests look for it.
SHARED = Path(os.environ.get('XMODAL_SHARED_DATA', REPO.parent / 'shared' / 'data'))
DATA = SHARED / 'kitti_raw' / '2011_09_26'
DEFAULT_DRIVE = DATA / '2011_09_26_drive_sfnd_sync'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--kitti-raw', nargs=2, metavar=('DRIVE_DIR', 'CALIB_DIR'),
                        default=[str(DEFAULT_DRIVE), str(DATA)])
    parser.add_argument('--strides', type=int, nargs='+', default=[1, 3])
    parser.add_argument('--synthetic-frames', type=int, default=20, help='0 skips the synthetic drive')
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'warp_kitti_raw.json'))
    return parser.parse_args(argv)


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """RGB PSNR in dB of an 8-bit rounding of ``prediction`` against uint8 ``target``."""
    rounded = np.clip(np.rint(prediction), 0, 255)
    mse = np.mean((rounded - target.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def warp_image(image: np.ndarray, depth: np.ndarray, K: np.ndarray, T_ref_cur: np.ndarray) -> np.ndarray:
    reference = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]
    warped, _ = warp_to_current(reference, torch.from_numpy(depth)[None, None].float(),
                                torch.from_numpy(K)[None].float(), torch.from_numpy(T_ref_cur)[None].float())
    return warped[0].numpy().transpose(1, 2, 0)


def run_stream(frames, calib, exact=None):
    """Per-frame PSNRs (and timings) of the predictions of each frame from the one before it.

    ``frames`` yields (image, points[, exact camera pose T_world_cam, exact depth]) in stream order.
    """
    K, T_cam_lidar = camera_intrinsics(calib)
    registration = ScanRegistration()
    rows, timings = [], {'register_ms': [], 'dense_depth_ms': [], 'warp_ms': []}
    previous = None
    for frame in frames:
        image, points = frame[0], frame[1]
        start = time.perf_counter()
        T_lidar = registration.register(points)
        timings['register_ms'].append(1e3 * (time.perf_counter() - start))
        if previous is None:
            previous = frame
            continue
        T_cam = quantize_pose(lidar_to_camera_motion(T_lidar, T_cam_lidar))
        start = time.perf_counter()
        depth = dense_depth(points, calib)
        timings['dense_depth_ms'].append(1e3 * (time.perf_counter() - start))
        start = time.perf_counter()
        warped = warp_image(previous[0], depth, K, T_cam)
        timings['warp_ms'].append(1e3 * (time.perf_counter() - start))
        no_sky = complete_depth(project_to_depth(points, calib))
        no_sky[no_sky <= 0] = np.inf
        row = {
            'registered': bool(registration.last.ok),
            'previous': psnr(previous[0], image),
            'rotation': psnr(warp_image(previous[0], np.full_like(depth, np.inf), K, T_cam), image),
            'warp': psnr(warped, image),
            'warp_no_sky': psnr(warp_image(previous[0], no_sky, K, T_cam), image),
            'translation_m': float(np.linalg.norm(T_cam[:3, 3])),
        }
        if len(frame) > 2:
            T_exact = np.linalg.inv(previous[2]) @ frame[2]
            row['exact'] = psnr(warp_image(previous[0], frame[3], K, T_exact), image)
            row['exact_pose_dense_depth'] = psnr(warp_image(previous[0], depth, K, T_exact), image)
            row['translation_error_m'] = float(np.linalg.norm(T_cam[:3, 3] - T_exact[:3, 3]))
            cos = (np.trace(T_cam[:3, :3].T @ T_exact[:3, :3]) - 1) / 2
            row['rotation_error_deg'] = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
        rows.append(row)
        previous = frame
    return rows, timings


def summarise(rows, timings):
    keys = [k for k in rows[0] if k != 'registered']
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    summary['frames'] = len(rows)
    summary['registered_fraction'] = float(np.mean([r['registered'] for r in rows]))
    for name, values in timings.items():
        summary[name] = float(np.median(values)) if values else None
    if 'translation_error_m' in rows[0]:
        summary['translation_error_max_m'] = float(max(r['translation_error_m'] for r in rows))
        summary['rotation_error_max_deg'] = float(max(r['rotation_error_deg'] for r in rows))
    return summary


def kitti_raw(drive_dir, calib_dir, stride):
    from xmodal_compress_ros.data.kitti import KittiRawDrive

    drive = KittiRawDrive(drive_dir, calib_dir)
    frames = ((drive[i].image, drive[i].points) for i in range(0, len(drive), stride))
    return run_stream(frames, drive.calib)


def synthetic(count, stride):
    from xmodal_compress_ros.data.synthetic.sequence import SynthConfig, SyntheticDrive

    drive = SyntheticDrive(SynthConfig(frames=count * stride, seed=0))

    def frames():
        for k in range(0, len(drive), stride):
            rendered = drive.render(k)
            camera_t = (rendered.frame.image_stamp_ns - drive.start_ns) * 1e-9
            T_world_cam = drive.trajectory.poses(camera_t)[0] @ drive.camera.T_lidar_cam
            yield rendered.frame.image, rendered.frame.points, T_world_cam, rendered.depth.astype(np.float32)
    return run_stream(frames(), drive.calib)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    results = {'machine': platform.processor() or platform.machine(), 'threads': 1, 'kitti_raw': {},
               'synthetic': {}}
    for stride in args.strides:
        rows, timings = kitti_raw(*args.kitti_raw, stride)
        results['kitti_raw'][f'stride_{stride}'] = {'summary': summarise(rows, timings), 'frames': rows}
        print(f'kitti_raw stride {stride}:', json.dumps(results['kitti_raw'][f'stride_{stride}']['summary']))
        if args.synthetic_frames:
            rows, timings = synthetic(args.synthetic_frames, stride)
            results['synthetic'][f'stride_{stride}'] = {'summary': summarise(rows, timings), 'frames': rows}
            summary = results['synthetic'][f'stride_{stride}']['summary']
            print(f'synthetic stride {stride}:', json.dumps(summary))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print('wrote', out)


if __name__ == '__main__':
    main()
