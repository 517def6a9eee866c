"""Real round trips of the baseline codecs on a tiny image (ffmpeg ones skip without ffmpeg)."""
import numpy as np
import pytest

from xmodal_compress_ros.bench import baselines, colour, ffmpeg
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import DatasetError

needs_ffmpeg = pytest.mark.skipif(ffmpeg.ffmpeg_path() is None, reason='ffmpeg is not installed')


def _image(height=48, width=64, seed=0):
    """A smooth colour gradient with a little texture: compresses well, not trivially."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    noise = np.random.default_rng(seed).normal(0, 4, (height, width, 3))
    rgb = np.stack([xx * 255 / width, yy * 255 / height, 128 + 60 * np.sin(xx / 5)], axis=-1) + noise
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _frames(count=2, **kwargs):
    return [SensorFrame(image=_image(seed=i, **kwargs), points=np.zeros((0, 4), np.float32), calib=None,
                        name=str(i)) for i in range(count)]


def _psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@pytest.mark.parametrize('name', ['jpeg', 'jpeg-444', 'webp'])
def test_image_codecs_round_trip(name):
    codec = baselines.baseline_codecs()[name]
    frames = _frames()
    low, high = codec.run(frames, 20, 10.0), codec.run(frames, 95, 10.0)
    for run in (low, high):
        assert len(run.sizes) == 2 and all(s > 0 for s in run.sizes)
        assert run.decoded[0].shape == frames[0].image.shape and run.decoded[0].dtype == np.uint8
    assert sum(high.sizes) > sum(low.sizes)
    assert _psnr(frames[0].image, high.decoded[0]) > _psnr(frames[0].image, low.decoded[0]) > 20


def test_codec_names_follow_the_spec():
    names = set(baselines.baseline_codecs())
    for family in ('h264', 'h265', 'av1'):
        for suffix in ('', '-444', '-p', '-444-p'):
            assert family + suffix in names
    assert {'jpeg', 'jpeg-444', 'webp'} <= names


@needs_ffmpeg
@pytest.mark.parametrize('name', ['h264', 'h264-444-p', 'h265', 'h265-444', 'h265-p', 'av1', 'av1-444'])
def test_ffmpeg_codecs_round_trip(name):
    codec = baselines.baseline_codecs(gop=2)[name]
    reason = codec.unavailable_reason()
    if reason:
        pytest.skip(reason)
    frames = _frames(count=3)
    run = codec.run(frames, codec.settings[2], 10.0)
    assert len(run.sizes) == len(run.decoded) == 3
    assert all(d.shape == frames[0].image.shape for d in run.decoded)
    assert min(_psnr(f.image, d) for f, d in zip(frames, run.decoded)) > 28


@needs_ffmpeg
def test_odd_sizes_are_padded_and_cropped_back():
    codec = baselines.baseline_codecs()['h264']
    frames = _frames(count=2, height=47, width=63)
    run = codec.run(frames, 18, 10.0)
    assert run.decoded[1].shape == (47, 63, 3)
    assert _psnr(frames[1].image, run.decoded[1]) > 30


@needs_ffmpeg
def test_encoder_info_sei_is_stripped_and_stream_decodes():
    planes = [colour.rgb_to_planes(_image(), '420')]
    for encoder, fmt, bsf, marker in (('libx264', 'h264', 'filter_units=remove_types=6', b'x264'),
                                      ('libx265', 'hevc', 'filter_units=remove_types=39', b'x265')):
        if encoder not in ffmpeg.available_encoders():
            continue
        raw, _ = ffmpeg.encode(planes, 64, 48, 10, ['-c:v', encoder, '-crf', '20'], fmt)
        stripped, _ = ffmpeg.encode(planes, 64, 48, 10, ['-c:v', encoder, '-crf', '20'], fmt, bsf)
        assert marker in raw and marker not in stripped
        assert len(stripped) < len(raw)
        decoded, _ = ffmpeg.decode(stripped, fmt, 64, 48, '420')
        assert len(decoded) == 1


@needs_ffmpeg
@pytest.mark.parametrize('chroma', ['444', '420'])
def test_lossless_round_trip_keeps_full_range(chroma):
    # Lossless x264 on our planes: any range squeeze by ffmpeg would show as a large error.
    if 'libx264' not in ffmpeg.available_encoders():
        pytest.skip('no libx264')
    rgb = _image()
    planes = colour.rgb_to_planes(rgb, chroma)
    stream, _ = ffmpeg.encode([planes], 64, 48, 10, ['-c:v', 'libx264', '-qp', '0'], 'h264')
    decoded, _ = ffmpeg.decode(stream, 'h264', 64, 48, chroma)
    assert np.array_equal(decoded[0].y, planes.y) and np.array_equal(decoded[0].cr, planes.cr)
    if chroma == '444':
        assert _psnr(rgb, colour.planes_to_rgb(decoded[0])) > 48


def test_video_codecs_need_one_size():
    frames = _frames(count=1) + _frames(count=1, height=50)
    with pytest.raises(DatasetError, match='one image size'):
        baselines.baseline_codecs()['h264'].run(frames, 30, 10.0)
