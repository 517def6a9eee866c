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


@pytest.fixture(scope='module')
def one_torch_thread():
    """One torch thread for a module: on a loaded 2-core machine two spinning threads are 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
