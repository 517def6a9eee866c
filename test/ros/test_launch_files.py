"""Launch files and node configs, checked statically; test_launch_service.py runs them."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from xmodal_compress_ros.ros.params import DecoderNodeConfig, EncoderNodeConfig, config_from_values
from xmodal_compress_ros.runtime import allocator

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / 'launch').glob('*.launch.py'))
SUPPORT = REPO / 'xmodal_compress_ros' / 'ros' / 'launch_support.py'


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def keyword(call, name):
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def console_scripts():
    tree = ast.parse((REPO / 'setup.py').read_text())
    scripts = next(node for node in ast.walk(tree) if isinstance(node, ast.Dict)
                   and any(getattr(k, 'value', None) == 'console_scripts' for k in node.keys))
    entries = scripts.values[[k.value for k in scripts.keys].index('console_scripts')]
    return {ast.literal_eval(e).split('=')[0].strip() for e in entries.elts}


def test_the_three_launch_files_exist():
    assert [p.name for p in LAUNCH_FILES] == ['pipeline.launch.py', 'remote.launch.py', 'vehicle.launch.py']


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_every_argument_is_described_and_used_names_are_declared(path):
    tree = ast.parse(path.read_text())
    declared = {}
    support = ast.parse(SUPPORT.read_text())
    shared = calls(support, 'DeclareLaunchArgument') if calls(tree, 'node_arguments') else []
    for call in calls(tree, 'DeclareLaunchArgument') + shared:
        description = keyword(call, 'description')
        name = ast.literal_eval(call.args[0])
        assert description is not None and ast.literal_eval(description).strip(), f'{name} has no description'
        assert keyword(call, 'default_value') is not None, f'{name} has no default'
        declared[name] = call
    used = {ast.literal_eval(c.args[0]) for c in calls(tree, 'LaunchConfiguration')}
    used |= {ast.literal_eval(c.args[0]) for c in calls(tree, 'LaunchConfigurationNotEquals')}
    for call in calls(tree, 'typed_overrides'):
        used |= {ast.literal_eval(k) for k in call.args[0].keys}
    assert used <= set(declared), f'undeclared: {used - set(declared)}'
    assert {'backend', 'device'} <= set(declared)


@pytest.mark.parametrize('path', LAUNCH_FILES + [SUPPORT], ids=lambda p: p.name)
def test_executables_and_config_files_exist(path):
    text = path.read_text()
    tree = ast.parse(text)
    assert re.search(r"^PACKAGE = 'xmodal_compress_ros'$", text, re.M)
    for call in calls(tree, 'Node'):
        assert ast.literal_eval(keyword(call, 'executable')) in console_scripts()
        assert keyword(call, 'package').id == 'PACKAGE'
    for name in re.findall(r"'([\w.]+\.(?:yaml|xml|launch\.py))'", text):
        folder = 'launch' if name.endswith('.launch.py') else 'config'
        assert (REPO / folder / name).is_file(), name


@pytest.mark.parametrize('name', ['vehicle.launch.py', 'remote.launch.py'])
def test_node_launch_files_leave_the_middleware_to_the_user(name):
    """The Fast DDS profile is opt-in: every environment variable is set under a fastdds_profile condition."""
    assert calls(ast.parse((REPO / 'launch' / name).read_text()), 'transport_environment')
    support = ast.parse(SUPPORT.read_text())
    (function,) = [f for f in ast.walk(support) if isinstance(f, ast.FunctionDef)
                   and f.name == 'transport_environment']
    (condition,) = calls(function, 'LaunchConfigurationNotEquals')
    assert [ast.literal_eval(a) for a in condition.args] == ['fastdds_profile', '']
    (group,) = calls(function, 'GroupAction')
    assert {kw.arg for kw in group.keywords} >= {'condition'}
    variables = {ast.literal_eval(c.args[0]) for c in calls(support, 'SetEnvironmentVariable')}
    assert variables >= {'FASTDDS_DEFAULT_PROFILES_FILE', 'RMW_IMPLEMENTATION'}
    # The malloc settings are spelled out for this static check: they must be allocator's, all of them.
    assert variables >= set(allocator.environment())
    assert all(c in ast.walk(function) for c in calls(support, 'SetEnvironmentVariable'))
    (profile,) = [c for c in calls(support, 'DeclareLaunchArgument')
                  if ast.literal_eval(c.args[0]) == 'fastdds_profile']
    assert ast.literal_eval(keyword(profile, 'default_value')) == ''


def test_pipeline_plays_the_bag_only_when_given():
    tree = ast.parse((REPO / 'launch' / 'pipeline.launch.py').read_text())
    (play,) = calls(tree, 'ExecuteProcess')
    assert [ast.literal_eval(e) for e in keyword(play, 'cmd').elts[:3]] == ['ros2', 'bag', 'play']
    assert keyword(play, 'condition').func.id == 'LaunchConfigurationNotEquals'


@pytest.mark.parametrize('name, node, config_cls', [('encoder.yaml', 'xmodal_encoder', EncoderNodeConfig),
                                                    ('decoder.yaml', 'xmodal_decoder', DecoderNodeConfig)])
def test_parameter_files_are_valid_configs(name, node, config_cls):
    data = yaml.safe_load((REPO / 'config' / name).read_text())
    assert list(data) == [node]
    config = config_from_values(config_cls, data[node]['ros__parameters'])
    assert isinstance(config, config_cls)


def test_kitti_calibration_loads_and_no_extrinsic_is_a_default():
    from xmodal_compress_ros.geometry.calibration import load_calibration

    calib = load_calibration(REPO / 'config' / 'kitti_calibration.yaml')
    assert calib.image_size == (1242, 375)
    encoder = yaml.safe_load((REPO / 'config' / 'encoder.yaml').read_text())
    assert 'T_cam_lidar' not in encoder['xmodal_encoder']['ros__parameters']


def test_fastdds_profile_selects_large_data():
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(REPO / 'config' / 'fastdds_large_data.xml').getroot()
    transports = [e.text for e in root.iter() if e.tag.endswith('builtinTransports')]
    assert transports == ['LARGE_DATA']


def test_only_launch_files_import_launch_support():
    """launch and launch_ros come with a ROS install only: nothing the package runs may import them."""
    users = [p for p in (REPO / 'xmodal_compress_ros').rglob('*.py') if 'launch_support' in p.read_text()]
    assert users == []
