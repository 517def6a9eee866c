"""The launch files run for real: launch.LaunchService starts the nodes they describe, a bag is fed,
decoded images (with their CameraInfo) and scans come out.

The package is laid out as ``colcon build`` installs it (share/ and lib/ under a prefix on
``AMENT_PREFIX_PATH``), so launch_ros finds the executables, the launch files and the models the
way it does in a ROS workspace. Needs launch and launch_ros (scripts/setup_venv.sh installs them
from ../shared/ros); skipped without them.
"""
import asyncio
import os
import sys
from pathlib import Path

import pytest

from conftest import HEIGHT, PERIOD_NS, START_NS, WIDTH

pytestmark = [pytest.mark.ros, pytest.mark.slow]
pytest.importorskip('rclpy')
pytest.importorskip('launch_ros.actions')

from launch import LaunchService  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from xmodal_compress_ros.ros.node_processes import start_node  # noqa: E402
from xmodal_compress_ros.ros.stream_session import wait_for_player  # noqa: E402
from xmodal_compress_ros.ros.stream_probe import StreamProbe  # noqa: E402
from xmodal_compress_ros.ros.transport import isolated_environment  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PACKAGE = 'xmodal_compress_ros'
FRAMES = 10
EXECUTABLE = '#!{python}\nimport sys\nfrom xmodal_compress_ros.ros.{module} import main\nsys.exit(main())\n'


@pytest.fixture(scope='module')
def install_prefix(tmp_path_factory):
    """What ``colcon build`` installs for this package: the ament index entry, share/ and lib/."""
    prefix = tmp_path_factory.mktemp('install') / PACKAGE
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / PACKAGE).write_text('')
    share = prefix / 'share' / PACKAGE
    share.mkdir()
    for name in ('launch', 'config', 'models', 'package.xml'):
        (share / name).symlink_to(REPO / name)
    lib = prefix / 'lib' / PACKAGE
    lib.mkdir(parents=True)
    for executable in ('encoder_node', 'decoder_node'):
        path = lib / executable
        path.write_text(EXECUTABLE.format(python=sys.executable, module=executable))
        path.chmod(0o755)
    return prefix


@pytest.fixture
def ros_environment(install_prefix, monkeypatch):
    """A private localhost ROS domain and the install prefix, for this process and what it launches."""
    env = isolated_environment(transport=False)
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(filter(None, [str(install_prefix),
                                                             os.environ.get('AMENT_PREFIX_PATH')]))
    for key in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY', 'AMENT_PREFIX_PATH'):
        monkeypatch.setenv(key, env[key])
    return env


def run_launch(includes, body):
    """Run ``LaunchService`` with ``includes`` (launch file name -> arguments) until ``body()`` (run on
    a worker thread) returns; then shut the launch down and return what ``body`` returned."""
    service = LaunchService(argv=[])
    for name, arguments in includes:
        service.include_launch_description(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(REPO / 'launch' / name)),
            launch_arguments=list(arguments.items())))
    loop = asyncio.new_event_loop()

    async def drive():
        launch = loop.create_task(service.run_async())
        try:
            return await loop.run_in_executor(None, body)
        finally:
            shutdown = service.shutdown()
            if shutdown is not None:
                await shutdown
            await launch

    try:
        return loop.run_until_complete(drive())
    finally:
        loop.close()


def play(tmp_path, bag, env, namespace=''):
    """Play ``bag`` at 4 Hz into ``namespace`` (remapping its absolute topics) and wait for the end."""
    command = ['-m', 'xmodal_compress_ros.ros.bag_player', str(bag), '--rate', '0.4']
    if namespace:
        topics = ('/camera/image_raw', '/lidar/points', '/camera/camera_info')
        command += ['--ros-args'] + [arg for topic in topics
                                     for arg in ('-r', f'{topic}:=/{namespace}{topic}')]
    player = start_node('player', command, tmp_path / 'logs', env)
    assert wait_for_player(player, 120) == 0, player.log_tail(15)


def stream_through(tmp_path, bag, env, namespace=''):
    """The body of a launch run: wait for the launched nodes, play the bag, collect what comes out."""
    ns = f'/{namespace}' if namespace else ''
    probe = StreamProbe(f'{ns}/decoded/camera/image_raw',
                        (f'{ns}/camera/image_raw/xmodal', f'{ns}/lidar/points/xmodal'),
                        f'{ns}/decoded/lidar/points', info_topic=f'{ns}/decoded/camera/camera_info')
    try:
        ready = probe.wait_for(lambda: probe.graph_ready(
            subscribed={f'{ns}/camera/image_raw': 'xmodal_encoder', f'{ns}/lidar/points': 'xmodal_encoder',
                        f'{ns}/camera/image_raw/xmodal': 'xmodal_decoder',
                        f'{ns}/lidar/points/xmodal': 'xmodal_decoder'},
            published={f'{ns}/decoded/camera/image_raw': 'xmodal_decoder'}), 120)
        assert ready, 'the launched nodes did not come up'
        play(tmp_path, bag, env, namespace)
        probe.wait_for(lambda: len(probe.images) == FRAMES and len(probe.camera_infos) == FRAMES
                       and len(probe.point_headers) == FRAMES, 20)
        return probe
    finally:
        probe.close()


def check_stream(probe):
    stamps = [START_NS + i * PERIOD_NS for i in range(FRAMES)]
    assert [r.stamp_ns for r in probe.images] == stamps
    assert {(r.frame_id, r.width, r.height) for r in probe.images} == {('camera', WIDTH, HEIGHT)}
    assert probe.camera_infos == [(stamp, 'camera', WIDTH, HEIGHT) for stamp in stamps]
    assert [h[:2] for h in probe.point_headers] == [(stamp, 'lidar') for stamp in stamps]
    assert {p.kind for p in probe.packets} == {'image', 'lidar'}


def model_arguments(node_codec):
    return {'model': node_codec.stems[0], 'fallback_model': node_codec.stems[1], 'tier': 'quality'}


def test_vehicle_and_remote_launch_files_stream_a_bag(tmp_path, tiny_bag, node_codec, ros_environment):
    vehicle = {'calibration_file': str(tiny_bag / 'calibration.yaml'), 'quality': '2',
               **model_arguments(node_codec)}
    remote = model_arguments(node_codec)
    probe = run_launch([('vehicle.launch.py', vehicle), ('remote.launch.py', remote)],
                       lambda: stream_through(tmp_path, tiny_bag, ros_environment))
    check_stream(probe)


def test_pipeline_launch_file_runs_in_a_namespace(tmp_path, tiny_bag, node_codec, ros_environment):
    arguments = {'namespace': 'robot1', 'calibration_file': str(tiny_bag / 'calibration.yaml'),
                 'quality': '2', **model_arguments(node_codec)}
    probe = run_launch([('pipeline.launch.py', arguments)],
                       lambda: stream_through(tmp_path, tiny_bag, ros_environment, 'robot1'))
    check_stream(probe)
