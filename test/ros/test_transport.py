"""The shipped transport environment and the isolated ROS domain."""
import os

from xmodal_compress_ros.ros.transport import isolated_environment, profile_path, transport_environment


def test_transport_environment_points_at_the_shipped_profile():
    env = transport_environment()
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'] == str(profile_path())
    assert profile_path().name == 'fastdds_large_data.xml' and profile_path().is_file()
    assert env['RMW_IMPLEMENTATION'] == 'rmw_fastrtps_cpp'
    assert int(env['MALLOC_MMAP_THRESHOLD_']) >= 2 ** 20 and env['MALLOC_TRIM_THRESHOLD_']


def test_isolated_environment_is_localhost_with_a_random_domain():
    base = {'PATH': os.environ.get('PATH', ''), 'FASTDDS_BUILTIN_TRANSPORTS': 'UDPv4', 'ROS_DOMAIN_ID': '0'}
    env = isolated_environment(base)
    assert env['PATH'] == base['PATH'] and 'FASTDDS_BUILTIN_TRANSPORTS' not in env
    assert 1 <= int(env['ROS_DOMAIN_ID']) <= 101
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' and env['ROS_LOCALHOST_ONLY'] == '1'
    assert isolated_environment(base, domain_id=7)['ROS_DOMAIN_ID'] == '7'
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in isolated_environment(base, transport=False)
    assert len({isolated_environment(base)['ROS_DOMAIN_ID'] for _ in range(20)}) > 1
