"""Training loop: a few steps on tiny tensors export a loadable model, and checkpoints resume."""
import json

import numpy as np
import pytest
import torch

from xmodal_compress_ros.codec.model_io import load_model, read_metadata
from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.train.crops import FrameBank
from xmodal_compress_ros.train.loop import TrainConfig, train
from xmodal_compress_ros.train.losses import (affine_invariant_mse, colour_randomised_target,
                                              correlation_loss, rd_loss)

TINY = dict(N=16, M=24, Nz=8, hyper_hidden=8, batch_size=2, crop=64, checkpoint_every=2, threads=1)


def _bank(count=2, h=70, w=90):
    rng = np.random.default_rng(0)
    bank = FrameBank()
    for i in range(count):
        depth = (rng.integers(1, 256, size=(h, w)) * (rng.random((h, w)) < 0.05)).astype(np.uint8)
        bank.add(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), depth, f'synthetic/{i:06d}')
    return bank


def test_crops_keep_image_and_depth_aligned():
    bank = FrameBank()
    image = np.zeros((70, 90, 3), np.uint8)
    image[..., 0] = np.arange(90, dtype=np.uint8)[None, :]
    bank.add(image, image[..., 0].copy(), 'ramp')
    x, depth, _ = bank.sample(6, 64, np.random.default_rng(1))
    assert x.shape == (6, 3, 64, 64) and depth.shape == (6, 1, 64, 64)
    torch.testing.assert_close(x[:, 0:1] * 255, depth)
    with pytest.raises(DatasetError, match='crop'):
        bank.sample(1, 128, np.random.default_rng(0))


def test_colour_target_and_loss_terms():
    x = torch.rand(4, 3, 16, 16)
    target = colour_randomised_target(x, torch.Generator().manual_seed(0))
    assert target.shape == x.shape and target.min() >= 0 and target.max() <= 1

    class Result:
        prediction = torch.rand(4, 3, 16, 16)

        def __getitem__(self, key):
            return {'x_hat': x, 'likelihoods': {'y': torch.full((4, 2, 2, 2), 0.5)}}[key]

    terms = rd_loss(x, Result(), torch.full((4,), 0.01), alpha=1.0, target=target)
    # Perfect reconstruction: loss = bpp (8 bits over 256 px) + the prediction term.
    assert terms['mse'] == 0 and terms['bpp'] == pytest.approx(8 / 256)
    assert terms['loss'].item() == pytest.approx(8 / 256 + terms['prediction'].item(), rel=1e-5)


def test_prediction_loss_rewards_structure_under_any_colouring():
    # Mid-range images, so the jitter's clamp leaves the target an exact affine map of x.
    x = (0.5 + 0.05 * torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))).clamp(0.3, 0.7)
    targets = [colour_randomised_target(x, torch.Generator().manual_seed(s)) for s in range(4)]
    for target in targets:
        structure = affine_invariant_mse(x, target).item()
        inverted = affine_invariant_mse(1.0 - x, target).item()
        flat = affine_invariant_mse(torch.full_like(x, 0.5), target).item()
        assert structure < 1e-3 * flat and inverted < 1e-3 * flat
        assert flat == pytest.approx(target.flatten(2).var(dim=-1, unbiased=False).mean().item(), rel=1e-4)
    # What the plain MSE did: averaged over colourings, flat grey beats the true structure.
    plain = [(torch.full_like(x, 0.5) - t).square().mean() - (x - t).square().mean() for t in targets]
    assert sum(plain) < 0


def test_correlation_loss_is_colour_invariant_and_keeps_a_gradient_where_the_affine_one_vanishes():
    gen = torch.Generator().manual_seed(1)
    x = (0.5 + 0.05 * torch.randn(8, 3, 32, 32, generator=gen)).clamp(0.3, 0.7)
    for seed in range(4):
        target = colour_randomised_target(x, torch.Generator().manual_seed(seed))
        variance = target.flatten(2).var(dim=-1, unbiased=False).mean().item()
        assert correlation_loss(x, target).item() < 1e-3 * variance
        assert correlation_loss(1.0 - x, target).item() < 1e-3 * variance
        assert correlation_loss(torch.full_like(x, 0.5), target).item() == pytest.approx(variance, rel=1e-4)
    # A prediction unrelated to the target: both losses near var(t), but only |r| still pulls.
    target = colour_randomised_target(x, torch.Generator().manual_seed(0))
    unrelated = torch.randn(x.shape, generator=gen).requires_grad_()
    grads = []
    for loss in (affine_invariant_mse, correlation_loss):
        unrelated.grad = None
        loss(unrelated, target).backward()
        grads.append(unrelated.grad.norm().item())
    assert grads[1] > 10 * grads[0]


def test_train_uses_the_chosen_prediction_loss(monkeypatch, tmp_path):
    import xmodal_compress_ros.train.loop as loop

    seen = []
    real = loop.rd_loss
    monkeypatch.setattr(loop, 'rd_loss', lambda *a: seen.append(a[-1]) or real(*a))
    train(TrainConfig(arch='xmodal-lidar', out=str(tmp_path / 'm'), steps=1, prediction_loss='correlation',
                      **TINY), _bank(), progress=False)
    assert seen == ['correlation']
    assert read_metadata(tmp_path / 'm')['training']['config']['prediction_loss'] == 'correlation'


@pytest.mark.parametrize('arch', ['xmodal-hyperprior', 'xmodal-lidar'])
def test_train_exports_loadable_model_and_resumes(tmp_path, arch, capsys):
    out = tmp_path / arch
    bank = _bank()
    train(TrainConfig(arch=arch, out=str(out), steps=3, **TINY), bank, progress=False)
    # Without a progress bar, one line of mean loss terms per checkpoint (every 2 steps, and the last).
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('step ')]
    assert [line.split(' ')[1] for line in lines] == ['2/3', '3/3']
    assert all('mse=' in line and 'bpp=' in line and 'loss=' in line for line in lines)
    meta = read_metadata(out)
    assert meta['training']['steps'] == 3 and meta['training']['frames'] == bank.names
    speed = meta['training_speed']
    assert speed['device'] == 'cpu' and speed['steps_per_second_last_session'] > 0
    model = load_model(out)
    decoded = model.decompress(model.compress(torch.rand(1, 3, 40, 50), quality=1))
    assert decoded.shape == (1, 3, 40, 50)
    ckpt = json.loads((tmp_path / f'{arch}.ckpt.json').read_text())
    assert ckpt['step'] == 3
    train(TrainConfig(arch=arch, out=str(out), steps=5, resume=True, **TINY), bank, progress=False)
    assert read_metadata(out)['training']['steps'] == 5
    assert json.loads((tmp_path / f'{arch}.ckpt.json').read_text())['step'] == 5


def test_lidar_model_starts_from_twin(tmp_path):
    bank = _bank(1)
    train(TrainConfig(arch='xmodal-hyperprior', out=str(tmp_path / 'twin'), steps=1, **TINY), bank,
          progress=False)
    model = train(TrainConfig(arch='xmodal-lidar', out=str(tmp_path / 'lidar'), steps=1,
                              init_from=str(tmp_path / 'twin'), **TINY), bank, progress=False)
    assert model.registry_name == 'xmodal-lidar'
    assert read_metadata(tmp_path / 'lidar')['training']['config']['init_from'] == str(tmp_path / 'twin')


@pytest.mark.kitti
def test_cli_trains_on_real_frames(kitti_root, tmp_path):
    from xmodal_compress_ros.cli.__main__ import main

    out = tmp_path / 'cli-model'
    data = f'kitti-object:{kitti_root}/kitti_object_fov/training'
    code = main(['train', '--arch', 'xmodal-lidar', '--data', data, '--max-frames', '1', '--steps', '1',
                 '--batch-size', '1', '--crop', '64', '--N', '16', '--M', '24', '--threads', '1',
                 '--no-progress', '--out', str(out)])
    assert code == 0
    assert read_metadata(out)['training']['frames'] == ['kitti_object_fov/training/000011']


def test_resident_frames_cut_the_same_crops_as_the_bank():
    bank = _bank(3)
    x, depth, _ = bank.sample(5, 64, np.random.default_rng(4))
    x_res, depth_res, _ = bank.resident('cpu').sample(5, 64, np.random.default_rng(4))
    torch.testing.assert_close(x_res, x)
    torch.testing.assert_close(depth_res, depth)


def test_bf16_autocast_is_refused_on_the_cpu(tmp_path):
    with pytest.raises(ValueError, match='CUDA'):
        train(TrainConfig(out=str(tmp_path / 'm'), steps=1, amp='bf16', **TINY), _bank(), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('amp', ['none', 'bf16'])
def test_cuda_training_exports_a_cpu_loadable_model(tmp_path, amp):
    out = tmp_path / 'm'
    train(TrainConfig(arch='xmodal-lidar', out=str(out), steps=3, device='cuda', amp=amp, **TINY), _bank(),
          progress=False)
    assert read_metadata(out)['training_speed']['device'].startswith('cuda')
    model = load_model(out)
    assert model.decompress(model.compress(torch.rand(1, 3, 64, 64), quality=0)).shape == (1, 3, 64, 64)


def test_train_only_the_post_filter_keeps_the_codec_and_its_bytes(tmp_path):
    bank = _bank(1)
    train(TrainConfig(out=str(tmp_path / 'twin'), steps=1, **TINY), bank, progress=False)
    model = train(TrainConfig(out=str(tmp_path / 'filtered'), steps=3, init_from=str(tmp_path / 'twin'),
                              post_filter=(8, 1), train_only='post_filter', lr=1e-2, **TINY), bank,
                  progress=False)
    twin, filtered = load_model(tmp_path / 'twin'), load_model(tmp_path / 'filtered')
    assert filtered.config['post_filter'] == [8, 1] and model.post_filter is not None
    backbone = {k: v for k, v in filtered.state_dict().items() if not k.startswith('post_filter.')}
    assert backbone.keys() == twin.state_dict().keys()
    assert all(torch.equal(v, twin.state_dict()[k]) for k, v in backbone.items())
    assert filtered.post_filter.tail.weight.abs().max() > 0  # trained away from its identity start
    x = torch.rand(1, 3, 40, 50)
    assert filtered.compress(x, quality=1).y_bytes == twin.compress(x, quality=1).y_bytes
    with pytest.raises(ValueError, match='matches no parameter'):
        train(TrainConfig(out=str(tmp_path / 'none'), steps=1, train_only='post_filter', **TINY), bank,
              progress=False)


def test_a_deeper_post_filter_starts_as_the_shallower_one_it_grows_from(tmp_path):
    from xmodal_compress_ros.train.loop import build_model

    bank = _bank(1)
    train(TrainConfig(out=str(tmp_path / 'twin'), steps=1, **TINY), bank, progress=False)
    train(TrainConfig(out=str(tmp_path / 'f1'), steps=3, init_from=str(tmp_path / 'twin'), post_filter=(8, 1),
                      train_only='post_filter', lr=1e-2, **TINY), bank, progress=False)
    shallow = load_model(tmp_path / 'f1')
    deeper = build_model(TrainConfig(init_from=str(tmp_path / 'f1'), post_filter=(8, 3), **TINY)).eval()
    deeper.update()
    assert len(deeper.post_filter.body) == 3 and deeper.post_filter.body[2].conv1.weight.abs().max() > 0
    x = torch.rand(1, 3, 40, 50)
    compressed = shallow.compress(x, quality=1)
    torch.testing.assert_close(deeper.decompress(compressed), shallow.decompress(compressed),
                               atol=1e-6, rtol=0)


def test_a_post_filter_of_other_channels_starts_afresh_on_the_copied_codec(tmp_path):
    """The fast tier's smaller filter: every other tensor copied, the new filter an identity at first."""
    from xmodal_compress_ros.train.loop import build_model

    bank = _bank(1)
    train(TrainConfig(out=str(tmp_path / 'f1'), steps=2, post_filter=(8, 1), lr=1e-2, **TINY), bank,
          progress=False)
    source = load_model(tmp_path / 'f1')
    small = build_model(TrainConfig(init_from=str(tmp_path / 'f1'), post_filter=(4, 2), **TINY)).eval()
    small.update()
    assert small.post_filter.head.out_channels == 4 and len(small.post_filter.body) == 2
    x = torch.rand(1, 3, 40, 50)
    compressed = source.compress(x, quality=1)
    assert small.compress(x, quality=1).y_bytes == compressed.y_bytes
    torch.testing.assert_close(small.decompress(compressed),
                               source.without_post_filter().decompress(compressed), atol=1e-6, rtol=0)


def test_a_shallower_post_filter_keeps_the_first_blocks_of_the_deeper_one(tmp_path):
    from xmodal_compress_ros.train.loop import build_model

    bank = _bank(1)
    train(TrainConfig(out=str(tmp_path / 'f3'), steps=2, post_filter=(8, 3), lr=1e-2, **TINY), bank,
          progress=False)
    deep = load_model(tmp_path / 'f3')
    shallow = build_model(TrainConfig(init_from=str(tmp_path / 'f3'), post_filter=(8, 1), **TINY))
    assert len(shallow.post_filter.body) == 1
    for name, tensor in shallow.state_dict().items():
        torch.testing.assert_close(tensor, deep.state_dict()[name], atol=0, rtol=0)


@pytest.mark.parametrize('arch', ['xmodal-hyperprior', 'xmodal-lidar'])
def test_training_the_decoder_side_alone_keeps_every_byte(tmp_path, arch):
    """Several prefixes: g_s, the post filter and the decoder's gains train; the packets stay the same."""
    bank = _bank(1)
    train(TrainConfig(arch=arch, out=str(tmp_path / 'base'), steps=1, post_filter=(8, 1), **TINY), bank,
          progress=False)
    train(TrainConfig(arch=arch, out=str(tmp_path / 'tuned'), steps=3, init_from=str(tmp_path / 'base'),
                      post_filter=(8, 1), train_only='g_s.,post_filter.,gain.log_gain_dec', lr=1e-2, **TINY),
          bank, progress=False)
    base, tuned = load_model(tmp_path / 'base'), load_model(tmp_path / 'tuned')
    decoder_side = ('g_s.', 'post_filter.', 'gain.log_gain_dec')
    changed = {k for k, v in tuned.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    assert changed and all(k.startswith(decoder_side) for k in changed)
    assert any(k.startswith('g_s.') for k in changed) and any(k.startswith('post_filter.') for k in changed)
    x, depth = torch.rand(1, 3, 40, 50), torch.randint(0, 256, (40, 50)).float()
    depth = depth if base.uses_lidar else None
    before, after = base.compress(x, depth, quality=1), tuned.compress(x, depth, quality=1)
    assert (after.z_bytes, after.y_bytes) == (before.z_bytes, before.y_bytes)
    assert not torch.equal(tuned.decompress(after, depth), base.decompress(before, depth))
    with pytest.raises(ValueError, match='empty prefix'):
        train(TrainConfig(arch=arch, out=str(tmp_path / 'bad'), steps=1, train_only='g_s.,,post_filter.',
                          **TINY), bank, progress=False)


def test_added_quality_levels_train_alone_and_the_old_ones_keep_their_bytes(tmp_path):
    bank = _bank(1)
    old_lambdas = (0.004, 0.03)
    train(TrainConfig(out=str(tmp_path / 'two'), steps=1, lambdas=old_lambdas, post_filter=(8, 1), **TINY),
          bank, progress=False)
    train(TrainConfig(out=str(tmp_path / 'three'), steps=3, init_from=str(tmp_path / 'two'),
                      lambdas=(0.001,) + old_lambdas, post_filter=(8, 1), train_only='gain.',
                      train_qualities=(0,), lr=1e-2, **TINY), bank, progress=False)
    two, three = load_model(tmp_path / 'two'), load_model(tmp_path / 'three')
    assert three.lambdas == (0.001,) + old_lambdas and three.quality_levels == 3
    assert three.config['quality_planes'][1:] == [0.0, 1.0] and three.config['quality_planes'][0] < 0
    start = two.with_lambdas(three.lambdas).gain.log_gain_enc.detach()
    trained = three.gain.log_gain_enc.detach()
    assert torch.equal(trained[1:], two.gain.log_gain_enc) and not torch.equal(trained[0], start[0])
    rest = {k: v for k, v in three.state_dict().items() if not k.startswith('gain.')}
    assert all(torch.equal(v, two.state_dict()[k]) for k, v in rest.items())
    x = torch.rand(1, 3, 40, 50)
    assert three.compress(x, quality=2).y_bytes == two.compress(x, quality=1).y_bytes
    with pytest.raises(ValueError, match='train_qualities'):
        train(TrainConfig(out=str(tmp_path / 'bad'), steps=1, lambdas=old_lambdas, train_qualities=(2,),
                          **TINY), bank, progress=False)


def test_cli_lambdas_default_to_the_init_from_model_and_bad_lists_are_refused(tmp_path, capsys):
    from xmodal_compress_ros.cli.__main__ import main
    from xmodal_compress_ros.cli.train import _lambdas
    from xmodal_compress_ros.codec.models import DEFAULT_LAMBDAS

    train(TrainConfig(out=str(tmp_path / 'two'), steps=1, lambdas=(0.004, 0.03), **TINY), _bank(1),
          progress=False)
    assert _lambdas(None, str(tmp_path / 'two')) == (0.004, 0.03)
    assert _lambdas(None, None) == DEFAULT_LAMBDAS
    assert _lambdas('0.001,0.004', None) == (0.001, 0.004)
    base = ['train', '--data', f'synthetic:{tmp_path}', '--out', str(tmp_path / 'm')]
    for option, value in (('--lambdas', '0.01,0.005'), ('--lambdas', 'a,b'), ('--train-qualities', '0,x')):
        assert main(base + [option, value]) == 2
        assert option in capsys.readouterr().err


def test_fine_tuned_models_record_the_runs_they_started_from(tmp_path):
    bank = _bank(1)
    train(TrainConfig(out=str(tmp_path / 'a'), steps=1, **TINY), bank, progress=False)
    train(TrainConfig(out=str(tmp_path / 'b'), steps=1, init_from=str(tmp_path / 'a'), post_filter=(8, 1),
                      train_only='post_filter', **TINY), bank, progress=False)
    train(TrainConfig(out=str(tmp_path / 'c'), steps=1, init_from=str(tmp_path / 'b'), post_filter=(8, 1),
                      **TINY), bank, progress=False)
    metas = {name: read_metadata(tmp_path / name) for name in 'abc'}
    assert 'history' not in metas['a']
    history = [run['model_id'] for run in metas['c']['history']]
    assert history == [metas['b']['model_id'], metas['a']['model_id']]
    assert metas['c']['history'][0]['training'] == metas['b']['training']
    assert metas['c']['history'][0]['training']['config']['train_only'] == 'post_filter'
