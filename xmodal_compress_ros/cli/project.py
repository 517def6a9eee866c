"""``xmodal project``: project a LiDAR scan into its camera image and report what landed where."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = 'Project a LiDAR scan into a camera image: depth overlay, 16-bit depth PNG, JSON summary.'

MAX_DEPTH_MM = 65535  # largest value a 16-bit PNG holds: 65.5 m
# A plus-shaped dot of radius 1 pixel: visible at full resolution, small enough not to hide the image.
DOT_OFFSETS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--image', required=True, type=Path,
                        help='camera image (PNG/JPEG) the scan belongs to')
    parser.add_argument('--points', required=True, type=Path,
                        help='LiDAR scan: KITTI .bin (float32 x, y, z, reflectance) or .npy (N x >=3)')
    parser.add_argument('--calib', required=True, type=Path,
                        help='KITTI object calib .txt, KITTI raw date folder, or project .yaml '
                             '(docs/calibration.md)')
    parser.add_argument('--camera', type=int, default=2,
                        help='KITTI camera index for .txt/raw calibs (default 2)')
    parser.add_argument('-o', '--overlay', type=Path,
                        help='write the image with the points coloured by depth')
    parser.add_argument('--depth-out', type=Path,
                        help='write the sparse depth as a 16-bit PNG in millimetres '
                             '(0 = no point, clipped at 65535)')
    parser.add_argument('--condition-out', type=Path,
                        help='write the codec\'s uint8 conditioning image (equalised depth) as a PNG')
    parser.add_argument('--scale', type=float, default=None,
                        help='depth levels per metre of the equalised depth (--condition-out, '
                             'overlay colours); default: DEFAULT_DEPTH_SCALE, see docs/projection.md')


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from xmodal_compress_ros.data.pointfiles import read_points
    from xmodal_compress_ros.geometry.calibration import load_calibration
    from xmodal_compress_ros.geometry.projection import (
        DEFAULT_DEPTH_SCALE, equalize_depth, project_points, project_to_depth)

    for path, png_only in ((args.overlay, False), (args.depth_out, True), (args.condition_out, True)):
        if path is not None:
            _check_output(path, png_only)
    image = _read_image(args.image)
    height, width = image.shape[:2]
    calib = load_calibration(args.calib, camera=args.camera, image_size=(width, height))
    points = read_points(args.points)
    u, _, _ = project_points(points, calib)
    depth = project_to_depth(points, calib)
    filled = depth[depth > 0]
    scale = DEFAULT_DEPTH_SCALE if args.scale is None else args.scale
    condition = equalize_depth(depth, scale)

    if args.overlay is not None:
        _write_image(args.overlay, draw_overlay(image, depth, condition))
    if args.depth_out is not None:
        millimetres = np.clip(np.rint(depth.astype(np.float64) * 1000.0), 0, MAX_DEPTH_MM).astype(np.uint16)
        _write_image(args.depth_out, millimetres)
    if args.condition_out is not None:
        _write_image(args.condition_out, condition)

    print(json.dumps({
        'points_total': int(len(points)),
        'points_in_image': int(len(u)),
        'pixels_with_depth': int(filled.size),
        'width': width,
        'height': height,
        'depth_min_m': float(filled.min()) if filled.size else None,
        'depth_max_m': float(filled.max()) if filled.size else None,
        'scale': scale,
        'overlay': _optional_path(args.overlay),
        'depth_out': _optional_path(args.depth_out),
        'condition_out': _optional_path(args.condition_out),
    }))
    return 0


def draw_overlay(image, depth, condition):
    """``image`` (BGR) with a dot per depth pixel, coloured by the equalised depth ``condition``.

    The turbo colormap runs from red (near) to blue (far); colouring by the equalised rank rather
    than by metres spreads the colours evenly however the depths are distributed.
    """
    import cv2
    import numpy as np

    overlay = image.copy()
    v, u = np.nonzero(depth)
    if u.size == 0:
        return overlay
    colours = cv2.applyColorMap((255 - condition[v, u]).reshape(-1, 1), cv2.COLORMAP_TURBO).reshape(-1, 3)
    # Far dots first, so nearer ones are painted over them where dots overlap.
    order = np.argsort(-depth[v, u], kind='stable')
    u, v, colours = u[order], v[order], colours[order]
    height, width = depth.shape
    for du, dv in DOT_OFFSETS:
        overlay[np.clip(v + dv, 0, height - 1), np.clip(u + du, 0, width - 1)] = colours
    return overlay


def _read_image(path: Path):
    import cv2

    from xmodal_compress_ros.errors import ImageFormatError

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFormatError(f'cannot read image {path}: missing or not an image OpenCV can decode')
    return image


def _check_output(path: Path, png_only: bool) -> None:
    """Fail before any work rather than after writing some of the outputs."""
    from xmodal_compress_ros.errors import ImageFormatError

    if png_only and path.suffix.lower() != '.png':
        raise ImageFormatError(
            f'{path}: this output must be a .png (lossless, 16-bit capable), not {path.suffix!r}')
    if not path.parent.is_dir():
        raise ImageFormatError(f'cannot write {path}: folder {path.parent} does not exist')


def _write_image(path: Path, array) -> None:
    import cv2

    from xmodal_compress_ros.errors import ImageFormatError

    try:
        written = cv2.imwrite(str(path), array)
    except cv2.error:
        written = False
    if not written:
        raise ImageFormatError(f'cannot write {path}: use a .png or .jpg name in a writable folder')


def _optional_path(path):
    return None if path is None else str(path)
