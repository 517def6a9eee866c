"""Tiers: which key-frame models the encoder codes with, on which device, and what decoders hold."""
import argparse
import os

import numpy as np
import pytest

from xmodal_compress_ros.codec import tiers
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.codec.tiers import FAST_MODEL, choose_tier
from xmodal_compress_ros.errors import ModelFileError, ParameterError
from xmodal_compress_ros.runtime.cpu_features import thread_count, usable_cores
from xmodal_compress_ros.runtime.samples import TINY_CONFIG, synthetic_calibration, untrained_models


def present(*stems):
    return lambda stem: stem in stems


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny untrained LiDAR model and its twin, the twin standing in for the fast model."""
    return untrained_models(tmp_path_factory.mktemp('models'), TINY_CONFIG)


@pytest.mark.parametrize('device', ['cpu'])
def test_auto_on_the_cpu_is_the_fast_image_only_model(device):
    choice = choose_tier('auto', device, available=present(FAST_MODEL))
    assert (choice.tier, choice.model, choice.fallback_model) == ('fast', FAST_MODEL, '')
    assert 'device cpu' in choice.reason and choice.describe() == f'tier: fast ({choice.reason})'


@pytest.mark.parametrize('device', ['cuda', 'cuda:1'])
def test_auto_on_cuda_is_the_quality_tier(device):
    choice = choose_tier('auto', device, available=present(FAST_MODEL))
    assert (choice.tier, choice.model, choice.fallback_model) == (
        'quality', tiers.QUALITY_MODEL, tiers.QUALITY_FALLBACK_MODEL)
    assert f'device {device}' in choice.reason


def test_auto_without_the_fast_model_falls_back_to_quality_and_says_why():
    choice = choose_tier('auto', 'cpu', model='a', fallback_model='b', fast_model='f', available=present())
    assert (choice.tier, choice.model, choice.fallback_model) == ('quality', 'a', 'b')
    assert 'fast model f is missing' in choice.reason


def test_explicit_tiers_are_taken_on_any_device():
    for device in ('cpu', 'cuda'):
        assert choose_tier('quality', device, available=present(FAST_MODEL)).tier == 'quality'
        fast = choose_tier('fast', device, fast_model='f', available=present('f'))
        assert (fast.tier, fast.model, fast.reason) == ('fast', 'f', 'as requested')
    with pytest.raises(ModelFileError, match='tier fast needs the fast model f .*tier quality'):
        choose_tier('fast', 'cpu', fast_model='f', available=present())


def test_each_tier_codes_p_frames_with_its_own_model_and_fast_falls_back_to_the_full_one():
    def choose(tier, *stems):
        return choose_tier(tier, 'cpu', fast_model='f', pframe_model='p', fast_pframe_model='pf',
                           available=present('f', *stems)).pframe_model

    assert (choose('fast', 'p', 'pf'), choose('auto', 'p', 'pf')) == ('pf', 'pf')
    assert choose('quality', 'p', 'pf') == 'p'
    assert choose('fast', 'p') == 'p'  # no fast P-frame model: the full one, the tier stays fast
    assert choose_tier('fast', 'cpu').pframe_model in tiers.PFRAME_MODELS


@pytest.mark.parametrize('value', ['turbo', '', 'Fast', None])
def test_a_bad_tier_is_a_parameter_error_naming_the_choices(value):
    with pytest.raises(ParameterError, match='tier .* is not supported: use one of auto, fast, quality'):
        choose_tier(value, 'cpu', available=present(FAST_MODEL))


def test_model_files_decide_availability_by_default(tiny, tmp_path):
    assert choose_tier('auto', 'cpu', fast_model=tiny[1]).tier == 'fast'
    assert choose_tier('auto', 'cpu', fast_model=str(tmp_path / 'absent')).tier == 'quality'


def test_fast_tier_encoder_codes_image_only_and_needs_no_scan(tiny):
    choice = choose_tier('fast', 'cpu', fast_model=tiny[1])
    calib = synthetic_calibration(64, 64)
    fast = Encoder(EncoderConfig(model=choice.model, fallback_model=choice.fallback_model, quality=0,
                                 warmup=False), calib)
    quality = Encoder(EncoderConfig(model=tiny[0], fallback_model=tiny[1], quality=0, warmup=False), calib)
    assert not fast.needs_scans and quality.needs_scans
    _, scan = fast.encode_scan(np.array([[5.0, 0.0, 0.0, 0.5]], np.float32), 1)
    encoded = fast.encode_image(np.full((64, 64, 3), 90, np.uint8), 1, scan)
    assert encoded.image_only and encoded.scan_id is None


def test_decoders_hold_both_tiers_and_leave_missing_files_out(tiny, tmp_path):
    assert set(tiers.INTRA_MODELS) < set(DecoderConfig().models)
    held = DecoderConfig().models
    assert tiers.FAST_MODEL in held and set(tiers.PFRAME_MODELS) < set(held)
    absent = str(tmp_path / 'xmodal-hyperprior-fast')
    decoder = Decoder(DecoderConfig(models=(tiny[0], absent, tiny[1]), warmup=False))
    assert decoder.missing_models == (absent,)
    assert set(decoder.model_ids.values()) == {tiny[0], tiny[1]}
    with pytest.raises(ModelFileError, match="none of the decoder's models is there"):
        Decoder(DecoderConfig(models=(absent,), warmup=False))


def test_threads_come_from_the_cores_this_process_may_use():
    assert thread_count(3) == 3
    assert thread_count(0) == usable_cores() == len(os.sched_getaffinity(0))


def test_the_demo_prints_the_tier_and_why(tiny, tmp_path):
    from xmodal_compress_ros.cli.demo import tier_choice, tier_line as line_of

    def tier_line(args):
        return line_of(args, tier_choice(args))

    def args(tier, device='cpu', fast_model=tiny[1]):
        return argparse.Namespace(tier=tier, device=device, model=tiny[0], fallback_model=tiny[1],
                                  fast_model=fast_model, pframe_model='p', fast_pframe_model='pf')

    line = tier_line(args('auto'))
    assert line.startswith('tier: fast (device cpu without a GPU') and line.endswith(
        '; --tier quality for the full models)')
    missing = tier_line(args('auto', fast_model=str(tmp_path / 'absent')))
    assert missing.startswith('tier: quality (device cpu, but the fast model') and 'docs/tiers.md' in missing
    assert tier_line(args('quality')) == 'tier: quality (as requested)'
    assert tier_line(args('auto', device='cuda')).startswith('tier: quality (device cuda')
