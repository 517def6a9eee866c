"""Training source specs: parsing errors and real KITTI readers."""
import itertools

import pytest

from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.train.crops import FrameBank
from xmodal_compress_ros.train.sources import frames_from_spec


@pytest.mark.parametrize('spec', ['kitti-object', 'nope:/x', 'kitti-raw:/only-drive', 'bag:'])
def test_bad_specs_name_the_valid_form(spec):
    with pytest.raises(DatasetError, match='kitti'):
        next(frames_from_spec(spec))


def test_photos_are_downscaled_frames_with_empty_depth_maps(tmp_path):
    import cv2
    import numpy as np

    (tmp_path / 'nature').mkdir()
    big = np.random.default_rng(0).integers(0, 256, (1600, 2560, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'nature' / 'meadow.png'), big)
    cv2.imwrite(str(tmp_path / 'small.jpg'), big[:300, :400])
    bank = FrameBank.from_frames(frames_from_spec(f'photos:{tmp_path}'))
    assert bank.names == ['photos/nature/meadow.png', 'photos/small.jpg']
    assert bank.images[0].shape == (800, 1280, 3) and bank.images[1].shape == (300, 400, 3)
    assert all(depth.shape == image.shape[:2] and depth.max() == 0
               for image, depth in zip(bank.images, bank.depths))


def test_photos_need_image_files(tmp_path):
    with pytest.raises(DatasetError, match='.jpg'):
        next(frames_from_spec(f'photos:{tmp_path}'))


def test_synthetic_needs_drive_folders(tmp_path):
    with pytest.raises(DatasetError, match='xmodal synth'):
        next(frames_from_spec(f'synthetic:{tmp_path}'))


@pytest.mark.kitti
def test_kitti_sources_give_named_frames_and_depth_maps(kitti_root):
    fov = list(itertools.islice(frames_from_spec(f'kitti-object:{kitti_root}/kitti_object_fov/training'), 1))
    day = kitti_root / 'kitti_raw' / '2011_09_26'
    raw = list(itertools.islice(frames_from_spec(f'kitti-raw:{day}/2011_09_26_drive_sfnd_sync,{day}'), 1))
    bank = FrameBank.from_frames(fov + raw)
    assert bank.names == ['kitti_object_fov/training/000011', '2011_09_26_drive_sfnd_sync/0000000000']
    for image, depth in zip(bank.images, bank.depths):
        assert depth.shape == image.shape[:2] and 0.01 < (depth > 0).mean() < 0.2
