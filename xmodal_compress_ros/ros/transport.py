"""The DDS transport settings of the nodes, and an isolated ROS environment for local runs.

Fast DDS's default transports are poor for camera images: a 1.4 MB Image takes about 24-28 ms
reliable between two processes, and best-effort readers lose almost all of them (the default
shared-memory segment is too small). Its LARGE_DATA builtin transports (UDP discovery, data over
shared memory or TCP) deliver them in a few milliseconds without loss, and faster still when
glibc's malloc keeps the large message buffers instead of unmapping them after every message.

LARGE_DATA is selected by the XML profile ``config/fastdds_large_data.xml``: the environment
variable ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` is overridden by rmw_fastrtps when discovery is
limited to localhost (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), the profile is not. Measured by
``bench/bench_ros_transport.py``; numbers in docs/nodes.md.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Dict, Mapping, Optional

from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.runtime import allocator

PROFILE_NAME = 'fastdds_large_data.xml'


def profile_path() -> Path:
    """``config/fastdds_large_data.xml`` of this source checkout or of an installed package."""
    from xmodal_compress_ros.ros.package_files import find_package_file, package_roots

    found = find_package_file('config/' + PROFILE_NAME)
    if found is None:
        raise ParameterError(f'{PROFILE_NAME} not found in {", ".join(str(p) for p in package_roots())}: '
                             'reinstall the package (it ships config/) or run from the source checkout')
    return found


def transport_environment() -> Dict[str, str]:
    """The environment variables that select the shipped transport configuration, and glibc's malloc
    settings that keep image and scan buffers in the heap instead of mapping and unmapping them per
    message (:mod:`runtime.allocator`)."""
    return {
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'FASTDDS_DEFAULT_PROFILES_FILE': str(profile_path()),
        **allocator.environment(),
    }


def isolated_environment(base: Optional[Mapping[str, str]] = None, domain_id: Optional[int] = None,
                         transport: bool = True) -> Dict[str, str]:
    """``base`` (default ``os.environ``) plus the transport settings, on a private localhost domain.

    A random ``ROS_DOMAIN_ID`` (1..101, the range safe for Fast DDS ports) keeps parallel runs apart,
    and discovery stays on this host.
    """
    env = dict(os.environ if base is None else base)
    if transport:
        env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
        env.update(transport_environment())
    env['ROS_DOMAIN_ID'] = str(random.randint(1, 101) if domain_id is None else domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['ROS_LOCALHOST_ONLY'] = '1'
    return env
