"""research/side_information.py: oracle maps through the LiDAR branch, and what a map is worth."""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / d) for d in ('research', 'bench')]
from side_information import (anchor_curve, bd_map_vs, condition_map, curves, parse_args,  # noqa: E402
                              with_fresh_parameters)

from xmodal_compress_ros.codec.models import LidarConditionedCodec  # noqa: E402


def _tiny_model():
    torch.manual_seed(0)
    return LidarConditionedCodec(N=16, M=24, Nz=8, hyper_hidden=8, ctx_ch=(4, 8, 8), p2i_ch=8,
                                 lambdas=(0.001, 0.01))


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((64, 96, 3), np.uint8)
    image[16:48, 24:72] = rng.integers(60, 200, size=3, dtype=np.uint8)  # one flat box on black
    return SimpleNamespace(image=image, name=f'box{seed}')


def test_edge_map_marks_the_outline_only():
    edges = condition_map('edges', _frame())
    assert edges.dtype == np.uint8 and edges.shape == (64, 96)
    assert set(np.unique(edges)) == {0, 255}
    assert not edges[24:40, 32:64].any() and not edges[:8].any()  # flat inside and outside
    assert edges[14:18, 24:72].any()  # the top edge


def test_blur_map_is_dense_and_low_pass():
    frame = _frame()
    blur = condition_map('blur', frame)
    assert blur.min() >= 1  # never read as "no point"
    grey_step = np.abs(np.diff(frame.image[32, :, 1].astype(int))).max()
    assert np.abs(np.diff(blur[32].astype(int))).max() < grey_step


def test_unknown_map_is_refused():
    with pytest.raises(ValueError, match='unknown map'):
        condition_map('depth', _frame())


def test_fresh_parameters_replace_only_the_named_prefix():
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.context_mining.c1.weight.mul_(0.01)
    with_fresh_parameters(model, ['context_mining.'], seed=3)
    after = model.state_dict()
    assert not torch.equal(after['context_mining.c1.weight'], before['context_mining.c1.weight'] * 0.01)
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith('context_mining.'))
    with pytest.raises(ValueError, match='no parameter'):
        with_fresh_parameters(model, ['nothing.'], seed=3)


def test_curves_code_each_arm_at_every_quality():
    model = _tiny_model().eval()
    model.update()
    arms = curves(model, [_frame(0), _frame(1)], 'edges')
    assert set(arms) == {'map', 'zeros'}
    for points in arms.values():
        assert [p['quality'] for p in points] == [0, 1]
        assert all(p['bpp'] > 0 and np.isfinite(p['psnr_db']) for p in points)


def test_bd_rate_of_a_map_that_buys_quality_is_negative():
    zeros = [{'bpp': r, 'psnr_db': 30 + 10 * np.log10(r)} for r in (0.1, 0.2, 0.4, 0.8)]
    better = [dict(p, psnr_db=p['psnr_db'] + 0.5) for p in zeros]
    assert bd_map_vs({'map': zeros, 'zeros': zeros}, 'zeros').percent == pytest.approx(0.0, abs=1e-6)
    assert bd_map_vs({'map': better, 'zeros': zeros}, 'zeros').percent < -5
    assert bd_map_vs({'map': zeros, 'anchor': better}, 'anchor').percent > 5


def test_anchor_curve_codes_a_twin_and_a_lidar_model_alike():
    from xmodal_compress_ros.codec.models import HyperpriorCodec

    torch.manual_seed(0)
    twin = HyperpriorCodec(N=16, M=24, Nz=8, hyper_hidden=8, lambdas=(0.001, 0.01)).eval()
    twin.update()
    lidar = _tiny_model().eval()
    lidar.update()
    frames = [_frame(0), _frame(1)]
    assert [p['quality'] for p in anchor_curve(twin, frames)] == [0, 1]
    # A LiDAR model as anchor is coded with the zeros map: its curve is the zeros arm.
    assert anchor_curve(lidar, frames) == curves(lidar, frames, 'edges')['zeros']


def test_train_defaults_are_the_synthetic_control_recipe():
    args = parse_args(['train', '--map', 'edges', '--data', 'synthetic:d', '--out', 'o'])
    assert (args.steps, args.batch_size, args.crop, args.lr, args.seed, args.fresh) == \
        (4000, 8, 128, 1e-4, 11, 'context_mining.')
    assert (args.from_scratch, args.post_filter) == (False, (32, 8))
    scratch = parse_args(['train', '--map', 'blur', '--data', 'synthetic:d', '--out', 'o', '--from-scratch',
                          '--post-filter', '0,0'])
    assert (scratch.from_scratch, scratch.post_filter) == (True, (0, 0))


def test_from_scratch_training_starts_every_weight_fresh(tmp_path, monkeypatch):
    import side_information

    seen = {}
    monkeypatch.setattr(side_information, 'frame_bank', lambda kind, sources: seen.setdefault('bank', []))
    monkeypatch.setattr('xmodal_compress_ros.train.loop.train',
                        lambda config, bank, progress: seen.update(config=config))
    args = parse_args(['train', '--map', 'blur', '--data', 'synthetic:d', '--out', str(tmp_path / 'o'),
                       '--from-scratch', '--post-filter', '0,0', '--init-from', str(tmp_path / 'absent')])
    assert side_information.train(args) == 0
    assert seen['config'].init_from is None and seen['config'].post_filter == (0, 0)
    assert not list(tmp_path.iterdir())  # no re-initialised copy of a model was written


def test_scan_edges_outline_the_scan_of_a_synthetic_frame():
    from xmodal_compress_ros.bench.sources import load_synthetic

    frame = load_synthetic(1, 3).frames[0]
    outline = condition_map('scan-edges', frame)
    assert outline.shape == frame.image.shape[:2] and set(np.unique(outline)) == {0, 255}
    assert 0.001 < (outline > 0).mean() < 0.05  # lines, not areas


def test_scan_dense_fills_the_scanned_part_of_a_synthetic_frame():
    from xmodal_compress_ros.bench.sources import load_synthetic

    frame = load_synthetic(1, 3).frames[0]
    sparse, dense = condition_map('scan', frame), condition_map('scan-dense', frame)
    assert dense.shape == sparse.shape and dense.dtype == np.uint8
    assert (dense > 0).mean() > 5 * (sparse > 0).mean()  # an area, not scan lines
    rows = slice(frame.image.shape[0] // 2, None)  # the lower half, under the horizon, is all scanned
    assert (dense[rows] > 0).mean() > 0.95


def test_eval_reports_the_map_against_every_anchor(monkeypatch):
    import side_information

    torch.manual_seed(0)  # four levels: a BD-rate needs four points
    lidar = LidarConditionedCodec(N=16, M=24, Nz=8, hyper_hidden=8, ctx_ch=(4, 8, 8), p2i_ch=8,
                                  lambdas=(0.001, 0.004, 0.016, 0.064)).eval()
    lidar.update()
    lidar.metadata = {'model_id': 'tiny'}
    monkeypatch.setattr(side_information, 'load_synthetic',
                        lambda count, seed: SimpleNamespace(frames=[_frame(0), _frame(1)]))
    monkeypatch.setattr(side_information, 'load_model', lambda stem: lidar)
    written = {}
    monkeypatch.setattr(side_information, 'write_model_result',
                        lambda kind, args, model, folder, fields: written.update(fields))
    args = parse_args(['eval', '--map', 'edges', '--model', 'm', '--tag', 't',
                       '--anchor', 'a', '--anchor', 'b'])
    assert side_information.evaluate(args) == 0
    assert [a['model'] for a in written['anchors']] == ['a', 'b']
    # The model as its own anchor is coded with the zeros map, so the BD-rate equals the zeros arm's.
    for anchor in written['anchors']:
        assert anchor['bd_rate_map_vs_anchor_percent'] == written['bd_rate_map_vs_zeros_percent']
    assert written['curves']['anchor:a'] == written['curves']['zeros']


def test_scan_reflectance_marks_the_depth_maps_pixels_with_the_scans_reflectance():
    from xmodal_compress_ros.bench.sources import load_synthetic

    frame = load_synthetic(1, 3).frames[0]
    depth, reflectance = condition_map('scan', frame), condition_map('scan-reflectance', frame)
    assert np.array_equal(reflectance > 0, depth > 0)
    # Materials differ (asphalt, markings, cars), so the map is no copy of the depth ranks.
    assert len(np.unique(reflectance[reflectance > 0])) > 10
    assert abs(np.corrcoef(reflectance[depth > 0], depth[depth > 0])[0, 1]) < 0.9


def test_scan_luminance_is_the_images_luminance_on_the_scans_footprint():
    import cv2
    from xmodal_compress_ros.bench.sources import load_synthetic

    frame = load_synthetic(1, 3).frames[0]
    depth, luminance = condition_map('scan', frame), condition_map('scan-luminance', frame)
    assert np.array_equal(luminance > 0, depth > 0)
    grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
    on = depth > 0
    assert np.array_equal(luminance[on], np.maximum(grey[on], 1))


def test_eval_with_kitti_codes_the_held_out_kitti_frames(monkeypatch):
    import side_information

    named = [('kitti_object/training/000000', _frame(0)), ('kitti_raw/0000000000', _frame(1))]
    monkeypatch.setattr(side_information, 'held_out_frames', lambda stride: iter(named))
    monkeypatch.setattr(side_information, 'load_synthetic', lambda *a: pytest.fail('synthetic frames used'))
    names, frames = side_information.evaluation_frames(
        parse_args(['eval', '--map', 'scan', '--model', 'm', '--tag', 't', '--kitti']))
    assert names == [n for n, _ in named] and frames == [f for _, f in named]
