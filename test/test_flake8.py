"""flake8 over the package, the benchmarks, the tests, fuzz/, harness/, research/, launch/ and
setup.py, as ROS 2 Python packages run ament_flake8; the settings (110 columns, E203 ignored) are
setup.cfg's [flake8]."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('flake8')

REPO = Path(__file__).resolve().parents[1]
CHECKED = ('xmodal_compress_ros', 'bench', 'test', 'scripts', 'fuzz', 'harness', 'research', 'launch',
           'setup.py')


def test_flake8():
    paths = [name for name in CHECKED if (REPO / name).exists()]
    done = subprocess.run([sys.executable, '-m', 'flake8', '--config', str(REPO / 'setup.cfg'), *paths],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f'flake8 found problems:\n{done.stdout}{done.stderr}'
