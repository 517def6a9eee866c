"""Our codec variants in the benchmark, on tiny untrained models (real packets, real decoding)."""
import numpy as np
import pytest

pytest.importorskip('xmodal_compress_ros.codec.pipeline')

from xmodal_compress_ros.bench.xmodal_codecs import XmodalCodec  # noqa: E402
from xmodal_compress_ros.codec.model_io import save_model  # noqa: E402
from xmodal_compress_ros.codec.models import HyperpriorCodec, LidarConditionedCodec  # noqa: E402
from xmodal_compress_ros.data.frames import SensorFrame  # noqa: E402
from xmodal_compress_ros.errors import DatasetError  # noqa: E402
from xmodal_compress_ros.geometry.calibration import Calibration  # noqa: E402

TINY = dict(N=16, M=24, Nz=8, hyper_hidden=8, lambdas=(0.004, 0.03))


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    import torch
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp('models')
    stems = {}
    for cls, name in ((LidarConditionedCodec, 'lidar'), (HyperpriorCodec, 'twin')):
        model = cls(**TINY).eval()
        model.update()
        save_model(model, root / name)
        stems[name] = str(root / name)
    return stems


def _frames(count=2, width=72, height=40):
    P = np.array([[40.0, 0, width / 2, 0], [0, 40.0, height / 2, 0], [0, 0, 1, 0]])
    calib = Calibration(width=width, height=height, K=P[:, :3], P=P, T_cam_lidar=np.eye(4))
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        points = np.column_stack([rng.uniform(-4, 4, 400), rng.uniform(-2, 2, 400), rng.uniform(3, 30, 400),
                                  rng.uniform(0, 1, 400)]).astype(np.float32)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frames.append(SensorFrame(image=image, points=points, calib=calib, image_stamp_ns=i * 10 ** 8,
                                  lidar_stamp_ns=i * 10 ** 8, name=str(i)))
    return frames


@pytest.mark.parametrize('name', ['xmodal', 'xmodal-image-only', 'xmodal-zeros'])
def test_variants_code_and_decode(models, name):
    codec = XmodalCodec.create(name, models['lidar'], models['twin'])
    assert codec.unavailable_reason() is None and codec.settings == (0, 1)
    info = codec.describe()
    expected = {models['lidar'], models['twin']} if name == 'xmodal-image-only' else {models['lidar']}
    assert set(info['models']) == expected
    frames = _frames()
    run = codec.run(frames, 1, 10.0)
    assert len(run.sizes) == 2 and all(s > 40 for s in run.sizes)
    assert run.decoded[0].shape == frames[0].image.shape and run.decoded[0].dtype == np.uint8
    assert all(t > 0 for t in run.encode_s + run.decode_s)


def test_the_fast_tier_variants_code_with_the_fast_models_alone(models, tmp_path):
    from xmodal_compress_ros.runtime.samples import untrained_pframe_model

    pframe = untrained_pframe_model(tmp_path, models['twin'])
    intra = XmodalCodec.create('xmodal-fast', models['lidar'], models['lidar'], fast_model=models['twin'])
    stream = XmodalCodec.create('xmodal-p-fast', models['lidar'], models['lidar'], pframe_model='absent',
                                fast_model=models['twin'], fast_pframe_model=pframe, gop=2)
    assert intra._stems() == (models['twin'],) and stream._stems() == (models['twin'], pframe)
    assert intra.unavailable_reason() is None and stream.unavailable_reason() is None
    frames = _frames(3)
    coded = intra.run(frames, 0, 10.0)
    streamed = stream.run(frames, 0, 10.0)
    assert len(coded.sizes) == 3 and streamed.kinds == ('key', 'P', 'key')
    assert coded.sizes[0] == streamed.sizes[0]  # the same model codes the key frame alike


def test_zeros_differs_from_lidar_conditioning(models):
    frames = _frames(count=1)
    lidar = XmodalCodec.create('xmodal', models['lidar'], models['twin']).run(frames, 0, 10.0)
    zeros = XmodalCodec.create('xmodal-zeros', models['lidar'], models['twin']).run(frames, 0, 10.0)
    assert not np.array_equal(lidar.decoded[0], zeros.decoded[0])


def test_missing_models_and_bad_qualities(models, tmp_path):
    codec = XmodalCodec.create('xmodal', str(tmp_path / 'nothing'), models['twin'])
    assert 'not found' in codec.unavailable_reason()
    with pytest.raises(DatasetError, match='quality levels 0..1'):
        XmodalCodec.create('xmodal', models['lidar'], models['twin'], qualities=[0, 5])


def test_the_refined_variant_refines_and_is_opt_in(models):
    from xmodal_compress_ros.bench.codecs import all_codec_names, build_codecs, parse_codec_names

    assert 'xmodal-refined' not in parse_codec_names('all')
    assert parse_codec_names('xmodal-refined,jpeg') == ['xmodal-refined', 'jpeg']
    assert 'xmodal-refined' not in all_codec_names()
    codecs = build_codecs(['xmodal', 'xmodal-refined'], model=models['lidar'], fallback_model=models['twin'],
                          refine_steps=3)
    plain, refined = codecs['xmodal'], codecs['xmodal-refined']
    assert (plain.refine_steps, refined.refine_steps) == (0, 3)
    assert 'refine_steps' not in plain.describe() and refined.describe()['refine_steps'] == 3
    frames = _frames(count=1)
    assert refined.run(frames, 1, 10.0).decoded[0].shape == frames[0].image.shape
    with pytest.raises(DatasetError, match='refine-steps'):
        XmodalCodec.create('xmodal-refined', models['lidar'], models['twin'], refine_steps=-2)


def test_the_ensemble_variant_decodes_the_same_packets_with_eight_views_and_is_opt_in(models):
    from xmodal_compress_ros.bench.codecs import all_codec_names, build_codecs, parse_codec_names

    assert 'xmodal-ensemble' not in parse_codec_names('all') and 'xmodal-ensemble' not in all_codec_names()
    codecs = build_codecs(['xmodal', 'xmodal-ensemble'], model=models['lidar'], fallback_model=models['twin'])
    plain, ensemble = codecs['xmodal'], codecs['xmodal-ensemble']
    assert (plain.post_filter_views, ensemble.post_filter_views) == (1, 8)
    assert 'post_filter_views' not in plain.describe() and ensemble.describe()['post_filter_views'] == 8
    with pytest.raises(DatasetError, match='post-filter-views'):
        XmodalCodec.create('xmodal-ensemble', models['lidar'], models['twin'], post_filter_views=3)


def test_the_report_names_every_training_run_behind_a_model(tmp_path):
    import torch

    from xmodal_compress_ros.bench.report import _describe

    torch.manual_seed(0)
    model = HyperpriorCodec(**TINY).eval()
    model.update()
    run = {'steps': 5, 'frames': ['a', 'b'], 'sources': ['kitti-object:X'], 'config': {'train_only': 'gain.'}}
    first = {'model_id': 'f' * 32, 'training': {'steps': 100, 'frames': ['a'], 'sources': []}}
    save_model(model, tmp_path / 'm', {'training': run, 'history': [first]})
    info = XmodalCodec.create('xmodal-image-only', str(tmp_path / 'm'), str(tmp_path / 'm')).describe()
    described = info['models'][str(tmp_path / 'm')]
    assert described['trained_only'] == 'gain.' and described['history'][0]['model_id'] == 'f' * 32
    line = _describe(info)
    assert 'last run 5 steps on 2 frames of kitti-object:X, only gain.* trained' in line
    assert f"before that, model {'f' * 32}: 100 steps on 1 frames" in line
