"""Node parameters: validation rules and the config dataclasses (no ROS needed)."""
import dataclasses
import re

import pytest

from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.ros.params import (
    DecoderNodeConfig, EncoderNodeConfig, config_from_values, sibling_topic, specs, validate_value)


def spec(config_cls, name):
    return next(s for s in specs(config_cls) if s.name == name)


@pytest.mark.parametrize('config_cls', [EncoderNodeConfig, DecoderNodeConfig])
def test_every_field_is_a_described_parameter_and_defaults_are_valid(config_cls):
    fields = specs(config_cls)
    assert len(fields) == len(dataclasses.fields(config_cls))
    for field in fields:
        assert field.metadata['description'].endswith('.'), field.name
        assert validate_value(field, field.default) is None, field.name
    assert config_from_values(config_cls, {}) == config_cls()


@pytest.mark.parametrize('name, value, message', [
    ('quality', 16, r'quality = 16 is out of range: use a value in \[0, 15\]'),
    ('quality', -1, 'out of range'),
    ('quality', 2.5, 'quality must be an integer, got 2.5'),
    ('quality', True, 'must be an integer'),
    ('target_kbps', float('nan'), 'finite number'),
    ('max_time_delta', -0.1, 'out of range'),
    ('backend', 'tflite', 'backend = .tflite. is not supported: use one of torch, onnxruntime, tensorrt'),
    ('lidar_intensity_max', -1.0, 'out of range'),
    ('frustum_only', 1, 'true or false'),
    ('T_cam_lidar', [1.0] * 12, 'must have 16 values'),
    ('T_cam_lidar', [float('inf')] * 16, 'finite numbers'),
    ('image_topic', 5, 'must be a string'),
    ('tier', 'turbo', 'tier = .turbo. is not supported: use one of auto, fast, quality'),
])
def test_bad_encoder_values_are_rejected_with_a_reason(name, value, message):
    reason = validate_value(spec(EncoderNodeConfig, name), value)
    assert reason is not None
    assert re.search(message, reason), reason


def test_config_from_values_normalises_and_lists_every_problem():
    config = config_from_values(EncoderNodeConfig, {'T_cam_lidar': list(range(16)), 'target_kbps': 500,
                                                    'quality': 5})
    assert config.T_cam_lidar == tuple(float(v) for v in range(16))
    assert isinstance(config.target_kbps, float) and config.quality == 5
    with pytest.raises(ParameterError, match='quality.*; .*backend'):
        config_from_values(EncoderNodeConfig, {'quality': 99, 'backend': 'x'})
    with pytest.raises(ParameterError, match='unknown parameter.*qualty'):
        config_from_values(EncoderNodeConfig, {'qualty': 1})


def test_decoder_models_and_output_encoding():
    config = config_from_values(DecoderNodeConfig, {'models': ['a', 'b', 'c'], 'output_encoding': 'bgr8'})
    assert config.models == ('a', 'b', 'c')
    reason = validate_value(spec(DecoderNodeConfig, 'models'), ['a', 3])
    assert reason == "models must hold strings, got ['a', 3]"
    assert 'use one of rgb8, bgr8' in validate_value(spec(DecoderNodeConfig, 'output_encoding'), 'mono8')


def test_tier_defaults_to_auto_and_decoders_hold_both_tiers():
    from xmodal_compress_ros.codec.tiers import FAST_MODEL, INTRA_MODELS

    assert EncoderNodeConfig().tier == 'auto' and EncoderNodeConfig().fast_model == FAST_MODEL
    assert config_from_values(EncoderNodeConfig, {'tier': 'fast'}).tier == 'fast'
    with pytest.raises(ParameterError, match='tier = .turbo. is not supported'):
        config_from_values(EncoderNodeConfig, {'tier': 'turbo'})
    assert DecoderNodeConfig().models == INTRA_MODELS
    assert spec(EncoderNodeConfig, 'tier').metadata['read_only']


def test_read_only_marks_models_backend_topics_and_qos():
    read_only = {s.name for s in specs(EncoderNodeConfig) if s.metadata['read_only']}
    assert {'model', 'fallback_model', 'backend', 'device', 'image_topic', 'lidar_topic', 'lazy'} <= read_only
    assert not {'quality', 'target_kbps', 'max_time_delta', 'pairing_wait', 'lidar_timeout'} & read_only


def test_topics_are_relative_and_packets_go_beside_their_inputs():
    encoder, decoder = EncoderNodeConfig(), DecoderNodeConfig()
    assert not any(t.startswith('/') for t in (encoder.image_topic, encoder.lidar_topic,
                                               encoder.camera_info_topic, decoder.image_topic))
    assert encoder.image_packet_topic() == 'camera/image_raw/xmodal' == decoder.image_packet_topic
    assert encoder.lidar_packet_topic() == 'lidar/points/xmodal' == decoder.lidar_packet_topic
    assert EncoderNodeConfig(image_topic='/cam/').image_packet_topic() == '/cam/xmodal'
    assert sibling_topic(decoder.image_topic, 'camera_info') == 'decoded/camera/camera_info'
    assert sibling_topic('/image', 'camera_info') == '/camera_info'
    assert sibling_topic('image', 'camera_info') == 'camera_info'


def test_decoder_resolutions_are_width_height_pairs():
    field = spec(DecoderNodeConfig, 'resolutions')
    assert validate_value(field, [96, 64, 1242, 375]) is None
    assert 'pairs' in validate_value(field, [96, 64, 1242])
    assert 'pairs' in validate_value(field, [96, 0])
    assert 'integers' in validate_value(field, [96.0, 64.0])
    assert config_from_values(DecoderNodeConfig, {'resolutions': [96, 64]}).resolutions == (96, 64)


@pytest.mark.parametrize('config_cls', [EncoderNodeConfig, DecoderNodeConfig])
def test_docs_list_every_parameter(config_cls):
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / 'docs' / 'nodes.md').read_text()
    missing = [s.name for s in specs(config_cls) if f'| `{s.name}` |' not in docs]
    assert not missing
