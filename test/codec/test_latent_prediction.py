"""A P frame's latent prediction: the prediction block's format, the encoder's choice, the block motion."""
import struct
import zlib

import numpy as np
import pytest

from xmodal_compress_ros.codec.bitstream import (FRAME_PREDICTED, ImagePacket, pack_image_packet,
                                                 parse_image_packet)
from xmodal_compress_ros.codec.entropy import PmfTable
from xmodal_compress_ros.codec.latent_coding import shifted_indexes
from xmodal_compress_ros.codec.latent_prediction import (BLOCK_SHIFTS, LATENT_BLOCK, MODE_PREDICT,
                                                         SCALE_SHIFTS, WEIGHT_STEPS, LatentPrediction,
                                                         choose_prediction, mode_grid, pack_prediction,
                                                         parse_prediction, predicted_mean)
from xmodal_compress_ros.errors import PacketError
from xmodal_compress_ros.geometry.block_motion import MAX_RANGE, BlockMotion, apply_motion, search_motion

CHANNELS = 16
WIDTH, HEIGHT = 200, 70
PADDED = (128, 256)  # (height, width)
MODES = mode_grid(PADDED)


def _prediction(seed=0, motion=True):
    rng = np.random.default_rng(seed)
    field = None
    if motion:
        field = BlockMotion(32, rng.integers(-MAX_RANGE, MAX_RANGE + 1,
                                             BlockMotion.grid(HEIGHT, WIDTH, 32) + (2,)).astype(np.int8))
    return LatentPrediction(rng.integers(0, WEIGHT_STEPS + 1, CHANNELS).astype(np.uint8),
                            rng.integers(0, len(SCALE_SHIFTS), CHANNELS).astype(np.uint8),
                            rng.integers(0, 2 * MODE_PREDICT, MODES).astype(np.uint8), field)


@pytest.mark.parametrize('motion', [True, False])
def test_prediction_block_round_trips(motion):
    prediction = _prediction(motion=motion)
    parsed = parse_prediction(pack_prediction(prediction), CHANNELS, (WIDTH, HEIGHT), PADDED)
    np.testing.assert_array_equal(parsed.weights, prediction.weights)
    np.testing.assert_array_equal(parsed.shifts, prediction.shifts)
    np.testing.assert_array_equal(parsed.modes, prediction.modes)
    if motion:
        assert parsed.motion.block == 32
        np.testing.assert_array_equal(parsed.motion.field, prediction.motion.field)
    else:
        assert parsed.motion is None


def _repack(per_channel: bytes, block=0, rows=0, cols=0, tail=b'', channels=CHANNELS, version=1, modes=None):
    modes = bytes(MODES[0] * MODES[1]) if modes is None else modes
    header = struct.pack('<BHHHBHH', version, channels, *MODES, block, rows, cols)
    return header + zlib.compress(per_channel + modes + tail)


@pytest.mark.parametrize('data, message', [
    (b'\x01\x10', 'shorter than its header'),
    (struct.pack('<BHHHBHH', 1, CHANNELS, 3, 4, 0, 0, 0) + zlib.compress(bytes(CHANNELS + 12)), 'has 2x4'),
    (_repack(bytes(CHANNELS), modes=bytes([2 * MODE_PREDICT]) * 8), 'block modes above 15'),
    (_repack(bytes(CHANNELS), version=2), 'format 2 is unknown'),
    (_repack(bytes(8), channels=8), 'for 8 channels; the model has 16'),
    (_repack(bytes(CHANNELS), block=32, rows=2, cols=7), 'do not cover'),
    (_repack(bytes(CHANNELS), block=4, rows=18, cols=50), 'do not cover'),
    (struct.pack('<BHHHBHH', 1, CHANNELS, *MODES, 0, 0, 0) + b'not zlib', 'does not inflate'),
    (_repack(bytes(CHANNELS - 1)), 'expected 24'),
    (_repack(bytes(CHANNELS) + b'\x00'), 'expected 24'),
    (_repack(bytes([9 * len(SCALE_SHIFTS)]) * CHANNELS), 'weights above 8'),
    (_repack(bytes(CHANNELS), 32, 3, 7, bytes([MAX_RANGE + 1]) + bytes(41)), f'more than {MAX_RANGE}'),
    # Row deltas that add up past the range.
    (_repack(bytes(CHANNELS), 32, 3, 7, bytes([MAX_RANGE, 0, MAX_RANGE, 0]) + bytes(38)),
     f'more than {MAX_RANGE}'),
])
def test_malformed_prediction_blocks_are_refused(data, message):
    with pytest.raises(PacketError, match=message):
        parse_prediction(data, CHANNELS, (WIDTH, HEIGHT), PADDED)


def test_p_packet_carries_the_block_as_version_3():
    fields = dict(model_id=bytes(16), quality=2, width=WIDTH, height=HEIGHT, padded_width=256,
                  padded_height=128,
                  image_stamp_ns=5, lidar_conditioned=False, scan_id=0, scan_stamp_ns=0, num_y_substreams=1,
                  z_bytes=b'z', y_bytes=b'\x01y', frame_kind=FRAME_PREDICTED, frame_number=3,
                  reference_number=2, pose=b'p' * 12)
    block = pack_prediction(_prediction())
    data = pack_image_packet(ImagePacket(prediction=block, **fields))
    assert data[4] == 3
    assert parse_image_packet(data).prediction == block
    # Without a block a P packet stays version 2, as older encoders wrote it.
    assert pack_image_packet(ImagePacket(**fields))[4] == 2
    with pytest.raises(PacketError, match='no pose and no prediction'):
        ImagePacket(prediction=block, **dict(fields, frame_kind=0, reference_number=0, pose=b''))
    # A version-3 packet declaring a key frame, or an empty block, is malformed.
    body = bytearray(data[:-4])
    offset = 52
    body[offset] = 0
    with pytest.raises(PacketError, match='must be a P frame'):
        parse_image_packet(bytes(body) + struct.pack('<I', zlib.crc32(bytes(body))))
    length_at = 52 + 10 + 12
    empty = bytearray(data[:-4])
    empty[length_at:length_at + 2] = b'\x00\x00'
    with pytest.raises(PacketError, match='prediction block of 0 bytes'):
        parse_image_packet(bytes(empty) + struct.pack('<I', zlib.crc32(bytes(empty))))


def test_shifted_indexes_move_rows_down_and_stop_at_row_0():
    indexes = np.array([[[[0, 5]], [[3, 40]]]], np.int32)
    shifted = shifted_indexes(indexes, np.array([[[[2, 2]], [[4, 12]]]], np.int32))
    np.testing.assert_array_equal(shifted, [[[[0, 3]], [[0, 28]]]])
    assert shifted_indexes(indexes, np.zeros_like(indexes)) is indexes


def _table(tails):
    """A y table whose row r codes -tails[r]..tails[r]."""
    tails = np.asarray(tails, np.int32)
    width = 2 * int(tails.max()) + 1
    pmfs = np.zeros((len(tails), width), np.int32)
    for row, tail in enumerate(tails):
        pmfs[row, :2 * tail + 1] = 1
        pmfs[row, tail] = 2 ** 16 - 2 * tail
    return PmfTable(pmfs, 2 * tails + 1, -tails, 16)


def test_choice_leans_on_a_reference_that_predicts_the_latent():
    rng = np.random.default_rng(1)
    shape = (1, 4, 6, 8)
    y = rng.normal(0, 6, shape).astype(np.float32)
    mu = np.zeros(shape, np.float32)
    indexes = np.full(shape, 40, np.int32)
    good = y + rng.normal(0, 0.2, shape).astype(np.float32)
    useless = rng.normal(0, 6, shape).astype(np.float32)
    y_ref = np.concatenate([good[:, :2], useless[:, 2:]], axis=1)
    choice = choose_prediction(y, mu, y_ref, indexes, _table(np.full(64, 40)))
    assert (choice.weights[:2] == WEIGHT_STEPS).all() and (choice.weights[2:] <= 1).all()
    # Predicted channels spread less: their scales move down; the others keep (about) theirs.
    assert (choice.shifts[:2] > 0).all()
    residual = y - predicted_mean(mu, y_ref, choice)
    assert np.abs(residual[:, :2]).max() < 1


def test_choice_never_clamps_more_symbols_than_the_intra_scales():
    rng = np.random.default_rng(2)
    shape = (1, 3, 8, 8)
    # Tiny residuals everywhere would take the largest shift, but each channel has one value of 14,
    # which rows below 26 (tail r // 2 + 1 < 14) would clamp: its channel and its block must stop at 4
    # rows; the other blocks may go further.
    y = rng.normal(0, 0.05, shape).astype(np.float32)
    y[0, :, 0, 0] = 14.0
    table = _table([r // 2 + 1 for r in range(64)])
    indexes = np.full(shape, 30, np.int32)
    choice = choose_prediction(y, np.zeros(shape, np.float32), np.zeros(shape, np.float32), indexes, table)
    shift = choice.index_shift(shape)
    assert (shift[..., :LATENT_BLOCK, :LATENT_BLOCK] == 4).all() and shift.max() > 4
    rows = shifted_indexes(indexes, shift)
    assert (np.abs(np.round(y)) <= -table.offsets[rows]).all()


def test_blocks_the_reference_predicts_narrow_their_scales_and_others_keep_intra_means():
    rng = np.random.default_rng(3)
    shape = (1, 4, 2 * LATENT_BLOCK, 2 * LATENT_BLOCK)
    y = rng.normal(0, 4, shape).astype(np.float32)
    y_ref = y + rng.normal(0, 0.05, shape).astype(np.float32)
    # The right half of the frame: a reference that has nothing to do with the image.
    y_ref[..., LATENT_BLOCK:] = rng.normal(0, 4, (1, 4, 2 * LATENT_BLOCK, LATENT_BLOCK))
    indexes = np.full(shape, 40, np.int32)
    choice = choose_prediction(y, np.zeros(shape, np.float32), y_ref, indexes, _table(np.full(64, 40)))
    left, right = choice.modes[:, 0], choice.modes[:, 1]
    assert (left & MODE_PREDICT).all() and (left % MODE_PREDICT > 0).all()
    assert not (right & MODE_PREDICT).any()
    weight = choice.weight_map(shape).numpy()
    assert (weight[..., LATENT_BLOCK:] == 0).all() and (weight[..., :LATENT_BLOCK] > 0).all()
    shift = choice.index_shift(shape)
    assert (shift[..., :LATENT_BLOCK] > shift[..., LATENT_BLOCK:]).all()
    assert max(BLOCK_SHIFTS) + max(SCALE_SHIFTS) >= shift.max()


def _texture(height, width, seed):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3)).astype(np.uint8)
    return np.repeat(np.repeat(small, 4, 0), 4, 1)[:height, :width]


def test_search_finds_a_block_shift_and_apply_reproduces_it():
    reference = _texture(96, 128, 3)
    image = reference.copy()
    # The block at rows 32..63, cols 32..63 of the image shows the reference 3 rows down, 5 left.
    image[32:64, 32:64] = reference[35:67, 27:59]
    motion = search_motion(image, reference, block=32, search_range=8)
    assert tuple(motion.field[1, 1]) == (3, -5)
    assert not motion.field[0].any()
    moved = apply_motion(reference, motion)
    np.testing.assert_array_equal(moved[32:64, 32:64], image[32:64, 32:64])
    np.testing.assert_array_equal(moved[:32], reference[:32])


def test_apply_motion_clamps_at_the_edges_and_checks_the_grid():
    planes = np.arange(40 * 40 * 4, dtype=np.int64).reshape(40, 40, 4).astype(np.uint8)
    field = np.zeros((2, 2, 2), np.int8)
    field[0, 0] = (-MAX_RANGE, -MAX_RANGE)
    moved = apply_motion(planes, BlockMotion(32, field))
    np.testing.assert_array_equal(moved[0, 0], planes[0, 0])
    assert apply_motion(planes, BlockMotion.zero(40, 40)) is planes
    with pytest.raises(ValueError, match='does not cover'):
        apply_motion(planes, BlockMotion(16, field))
