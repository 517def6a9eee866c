"""Files the package ships (config/, models/), found in a source checkout or an installed share folder.

``colcon build`` installs them to ``<prefix>/share/xmodal_compress_ros`` (found via ``AMENT_PREFIX_PATH``),
``pip install`` to ``<sys.prefix>/share/xmodal_compress_ros``; a source checkout has them at its root.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

PACKAGE = 'xmodal_compress_ros'
MODEL_SUFFIX = '.safetensors'


def package_roots() -> List[Path]:
    """Where the shipped folders may be, in search order: the checkout, sys.prefix, the ament prefixes."""
    roots = [Path(__file__).resolve().parents[2], Path(sys.prefix) / 'share' / PACKAGE]
    roots += [Path(prefix) / 'share' / PACKAGE
              for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if prefix]
    return roots


def find_package_file(relative: str) -> Optional[Path]:
    """``relative`` (e.g. ``config/x.xml``) under the first root that has it, or None."""
    return next((root / relative for root in package_roots() if (root / relative).is_file()), None)


def resolve_model_stem(stem: str) -> str:
    """``stem`` as given when it exists from here (or is absolute), else the shipped model of that name.

    So the default ``models/xmodal-lidar`` works from any working directory of an installed package.
    """
    if os.path.isabs(stem) or Path(stem + MODEL_SUFFIX).is_file():
        return stem
    found = find_package_file(stem + MODEL_SUFFIX)
    return str(found)[:-len(MODEL_SUFFIX)] if found is not None else stem
