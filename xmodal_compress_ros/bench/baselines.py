"""The codecs ROS users use today, run as real encoders and decoders.

* ``jpeg``/``jpeg-444``: libjpeg-turbo through OpenCV's ``imencode``, as compressed_image_transport
  does (its defaults: baseline, no Huffman optimisation, no restart markers; 4:2:0 unless ``-444``).
* ``webp``: libwebp through OpenCV (lossy WebP is always 4:2:0).
* ``h264``, ``h265``, ``av1`` (+ ``-444``): libx264, libx265, libaom through the ffmpeg CLI, as
  ffmpeg_image_transport does. Intra-only by default; ``-p`` appends low-delay P coding
  (no B-frames, no lookahead: x264/x265 ``-tune zerolatency``, libaom ``-usage realtime``) with a GOP of
  ``gop`` frames. AV1 intra codes every frame as a still picture (``-usage allintra -still-picture``).

Every encoder runs single-threaded so that its bytes do not depend on the machine. Encoder-info
SEI (x264 and x265 write their settings as text) is removed before bytes are counted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from xmodal_compress_ros.bench import colour, ffmpeg
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import DatasetError


@dataclass(frozen=True)
class CodedRun:
    """One codec at one setting over a list of frames: real byte counts and decoded images."""

    sizes: Tuple[int, ...]          # bytes of each frame's coded message
    decoded: Tuple[np.ndarray, ...]  # (H, W, 3) uint8 RGB, same size as the inputs
    encode_s: Tuple[float, ...]     # seconds per frame
    decode_s: Tuple[float, ...]
    kinds: Tuple[str, ...] = ()     # 'key' or 'P' per frame, where the codec says (our stream modes)


@dataclass(frozen=True)
class ImageCodec:
    """JPEG or WebP through OpenCV: one self-contained message per frame."""

    name: str
    ext: str                        # '.jpg' | '.webp'
    chroma: str
    settings: Tuple[float, ...]
    setting_name: str = 'quality'
    family: str = ''

    def unavailable_reason(self) -> Optional[str]:
        """None: OpenCV always has libjpeg-turbo and libwebp."""
        return None

    def describe(self) -> Dict[str, object]:
        """Encoder and options, for the report."""
        lib = 'libjpeg-turbo' if self.ext == '.jpg' else 'libwebp'
        return {'encoder': f'{lib} (OpenCV {cv2.__version__} imencode)', 'chroma': self.chroma,
                'mode': 'intra', 'setting': self.setting_name}

    def _params(self, setting: float) -> List[int]:
        if self.ext == '.webp':
            return [cv2.IMWRITE_WEBP_QUALITY, int(setting)]
        sampling = (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if self.chroma == '444'
                    else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420)
        return [cv2.IMWRITE_JPEG_QUALITY, int(setting), cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]

    def run(self, frames: Sequence[SensorFrame], setting: float, fps: float) -> CodedRun:
        """Encodes and decodes each frame's image on its own."""
        images = [f.image for f in frames]
        params = self._params(setting)
        sizes, decoded, enc_s, dec_s = [], [], [], []
        for rgb in images:
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            start = time.perf_counter()
            ok, buf = cv2.imencode(self.ext, bgr, params)
            enc_s.append(time.perf_counter() - start)
            if not ok:
                raise DatasetError(f'OpenCV could not encode a {rgb.shape} image as {self.ext}')
            start = time.perf_counter()
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            dec_s.append(time.perf_counter() - start)
            sizes.append(int(buf.size))
            decoded.append(np.ascontiguousarray(out[..., ::-1]))
        return CodedRun(tuple(sizes), tuple(decoded), tuple(enc_s), tuple(dec_s))


@dataclass(frozen=True)
class FfmpegCodec:
    """A video encoder fed raw full-range YCbCr planes; bytes counted per access unit."""

    name: str
    family: str                     # 'h264' | 'h265' | 'av1'
    chroma: str
    mode: str                       # 'intra' | 'p'
    settings: Tuple[float, ...]
    encoder: str                    # ffmpeg encoder name
    decoder: Optional[str]          # ffmpeg decoder name (None: ffmpeg's default)
    stream_format: str              # elementary stream muxer: 'h264' | 'hevc' | 'obu'
    codec_args: Tuple[str, ...]     # everything but the rate setting
    bitstream_filter: Optional[str] = None
    per_frame_process: bool = False  # AV1 still pictures: one encoder run per frame
    setting_name: str = 'crf'

    def unavailable_reason(self) -> Optional[str]:
        """Why this codec cannot run here, or None."""
        if ffmpeg.ffmpeg_path() is None:
            return 'ffmpeg is not installed (apt-get install ffmpeg)'
        if self.encoder not in ffmpeg.available_encoders():
            return f'the installed ffmpeg has no {self.encoder} encoder'
        if self.decoder and self.decoder not in ffmpeg.available_decoders():
            return f'the installed ffmpeg has no {self.decoder} decoder'
        return None

    def describe(self) -> Dict[str, object]:
        """Encoder and options, for the report."""
        return {'encoder': self.encoder, 'decoder': self.decoder or 'ffmpeg default', 'chroma': self.chroma,
                'mode': self.mode, 'setting': self.setting_name, 'args': ' '.join(self.codec_args),
                'bitstream_filter': self.bitstream_filter or '', 'stream': self.stream_format}

    def _encode_decode(self, planes: Sequence[colour.YuvPlanes], width: int, height: int, setting: float,
                       fps: float) -> Tuple[List[int], List[colour.YuvPlanes], float, float]:
        args = ['-c:v', self.encoder, *self.codec_args, '-crf', f'{setting:g}']
        stream, enc = ffmpeg.encode(planes, width, height, fps, args, self.stream_format,
                                    self.bitstream_filter)
        sizes = ffmpeg.packet_sizes(stream, self.stream_format)
        if sum(sizes) != len(stream) or len(sizes) != len(planes):
            raise ffmpeg.FfmpegError(
                f'{self.name}: {len(planes)} frames gave {len(sizes)} packets of {sum(sizes)} bytes in a '
                f'{len(stream)}-byte stream; the per-frame split is unreliable')
        out, dec = ffmpeg.decode(stream, self.stream_format, width, height, self.chroma, self.decoder)
        if len(out) != len(planes):
            raise ffmpeg.FfmpegError(f'{self.name}: {len(planes)} frames encoded but {len(out)} decoded')
        return sizes, out, enc, dec

    def run(self, frames: Sequence[SensorFrame], setting: float, fps: float) -> CodedRun:
        """Encodes the frames' images as one stream (or one stream per frame) and decodes it back.

        The images must share one size (a video stream has one size). Odd sides are padded by
        edge replication for coding and cropped after decoding; the padding's bytes count.
        """
        images = [f.image for f in frames]
        height, width = images[0].shape[:2]
        if any(im.shape[:2] != (height, width) for im in images):
            raise DatasetError(f'{self.name}: a video stream needs one image size; '
                               'crop the frames to a common size')
        padded = [colour.pad_to_even(im) for im in images]
        ph, pw = padded[0].shape[:2]
        planes = [colour.rgb_to_planes(im, self.chroma) for im in padded]
        groups = [[p] for p in planes] if self.per_frame_process else [planes]
        sizes: List[int] = []
        decoded: List[np.ndarray] = []
        enc_s: List[float] = []
        dec_s: List[float] = []
        for group in groups:
            g_sizes, g_out, enc, dec = self._encode_decode(group, pw, ph, setting, fps)
            sizes += g_sizes
            decoded += [colour.planes_to_rgb(p)[:height, :width] for p in g_out]
            # Wall time of the ffmpeg process (start-up included), shared evenly by its frames.
            enc_s += [enc / len(group)] * len(group)
            dec_s += [dec / len(group)] * len(group)
        return CodedRun(tuple(sizes), tuple(decoded), tuple(enc_s), tuple(dec_s))


JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
WEBP_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
H264_CRFS = (14, 18, 22, 26, 30, 34, 38, 42, 46)
H265_CRFS = (16, 20, 24, 28, 32, 36, 40, 44, 48)
AV1_CRFS = (12, 20, 28, 36, 44, 52, 60)

X264_PRESET = 'medium'
X265_PRESET = 'medium'
AOM_CPU_USED = 6


def _ffmpeg_codecs(gop: int) -> List[FfmpegCodec]:
    """Every H.264/H.265/AV1 variant: intra and low-delay P, 4:2:0 and 4:4:4."""
    codecs = []
    for chroma in colour.CHROMA_FORMATS:
        suffix = '' if chroma == '420' else '-444'
        for mode in ('intra', 'p'):
            tail = '' if mode == 'intra' else '-p'
            x264_gop = ['-g', '1'] if mode == 'intra' else ['-g', str(gop), '-tune', 'zerolatency']
            codecs.append(FfmpegCodec(
                name=f'h264{suffix}{tail}', family='h264', chroma=chroma, mode=mode, settings=H264_CRFS,
                encoder='libx264', decoder='h264', stream_format='h264',
                codec_args=('-preset', X264_PRESET, '-threads', '1', *x264_gop),
                bitstream_filter='filter_units=remove_types=6'))
            # repeat-headers: every key frame carries VPS/SPS/PPS, as x264 does by default.
            x265_params = 'repeat-headers=1:pools=1:frame-threads=1:log-level=error:' + (
                'keyint=1' if mode == 'intra' else f'keyint={gop}')
            x265_tune = [] if mode == 'intra' else ['-tune', 'zerolatency']
            codecs.append(FfmpegCodec(
                name=f'h265{suffix}{tail}', family='h265', chroma=chroma, mode=mode, settings=H265_CRFS,
                encoder='libx265', decoder='hevc', stream_format='hevc',
                codec_args=('-preset', X265_PRESET, *x265_tune, '-x265-params', x265_params),
                bitstream_filter='filter_units=remove_types=39'))
            if mode == 'intra':
                aom = ('-usage', 'allintra', '-still-picture', '1', '-cpu-used', str(AOM_CPU_USED),
                       '-threads', '1')
            else:
                # 'realtime': libaom's low-delay mode. 'good' with lag-in-frames 0 ignores the crf
                # erratically (later P frames grow larger than the key frame as the crf rises).
                aom = ('-usage', 'realtime', '-cpu-used', str(AOM_CPU_USED), '-g', str(gop), '-threads', '1')
            codecs.append(FfmpegCodec(
                name=f'av1{suffix}{tail}', family='av1', chroma=chroma, mode=mode, settings=AV1_CRFS,
                encoder='libaom-av1', decoder='libdav1d', stream_format='obu', codec_args=aom,
                per_frame_process=mode == 'intra'))
    return codecs


def baseline_codecs(gop: int = 10) -> Dict[str, object]:
    """Name -> codec for every baseline; ``gop`` is the key-frame interval of the ``-p`` modes."""
    codecs: Dict[str, object] = {
        'jpeg': ImageCodec('jpeg', '.jpg', '420', JPEG_QUALITIES, family='jpeg'),
        'jpeg-444': ImageCodec('jpeg-444', '.jpg', '444', JPEG_QUALITIES, family='jpeg'),
        'webp': ImageCodec('webp', '.webp', '420', WEBP_QUALITIES, family='webp'),
    }
    for codec in _ffmpeg_codecs(gop):
        codecs[codec.name] = codec
    return codecs
