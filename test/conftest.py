"""Shared fixtures: where the real KITTI frames live, and skips when they are absent."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$XMODAL_SHARED_DATA``."""
    return Path(os.environ.get('XMODAL_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))


@pytest.fixture(scope='session')
def kitti_root() -> Path:
    root = shared_data_dir()
    if not (root / 'kitti_object').is_dir():
        pytest.skip(f'real KITTI frames not found at {root}')
    return root
