"""The decoder node refuses packets it cannot decode: one log line per kind, a counter, and it goes on."""
import time

import pytest

from harness import packet_fuzz

pytestmark = pytest.mark.ros


@pytest.fixture
def decoder_node(codec_kit):
    rclpy = pytest.importorskip('rclpy')
    from rclpy.parameter import Parameter

    from xmodal_compress_ros.ros.decoder_node import DecoderNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = DecoderNode(
        context=context,
        parameter_overrides=[
            Parameter('models', value=list(codec_kit.stems)),
            Parameter('resolutions', value=[64, 64]),
            Parameter('threads', value=1),
        ],
    )
    yield node
    node.close()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def _message(packet: bytes, kind: str):
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(format=f'xmodal/{kind};v1', data=packet)


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def test_unknown_model_id_one_log_line_and_a_counter(decoder_node, codec_kit, capfd):
    unknown = bytearray(codec_kit.seeds[2])
    unknown[6:22] = bytes(range(16))  # the model id field
    unknown = packet_fuzz.reseal(bytes(unknown))
    for _ in range(3):
        decoder_node._on_packet(_message(unknown, 'image'))
        # The worker decodes the newest image packet: let it take each one before the next.
        assert _wait(lambda: decoder_node.diagnostics().get('errors', 0) >= 1)
        time.sleep(0.2)
    assert _wait(lambda: decoder_node.diagnostics().get('errors.unknown_model', 0) == 3)
    # A good packet afterwards is decoded: one bad sender does not stop the node.
    decoder_node._on_packet(_message(codec_kit.seeds[2], 'image'))
    assert _wait(lambda: decoder_node.diagnostics()['frames_out'] == 1)
    log = capfd.readouterr().err
    lines = [line for line in log.splitlines() if 'unknown_model' in line]
    assert len(lines) == 1, log
    assert bytes(range(16)).hex() in lines[0] and 'models parameter' in lines[0]


def test_corrupt_packets_counted_not_fatal(decoder_node, codec_kit):
    bad_crc = bytearray(codec_kit.seeds[0])
    bad_crc[100] ^= 0xFF
    decoder_node._on_packet(_message(bytes(bad_crc), 'lidar'))
    decoder_node._on_packet(_message(b'XMCI\x01garbage', 'image'))
    decoder_node._on_packet(_message(b'not a packet', 'image'))
    assert _wait(lambda: decoder_node.diagnostics().get('errors.corrupt_packet', 0) == 3)
    decoder_node._on_packet(_message(codec_kit.seeds[0], 'lidar'))
    assert _wait(lambda: decoder_node.diagnostics()['scans_out'] == 1)
