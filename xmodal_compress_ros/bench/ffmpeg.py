"""Runs the ffmpeg command-line encoders and decoders on raw YCbCr planes through pipes.

Only raw planes cross the pipe in either direction (``-f rawvideo`` with ``yuv420p``/``yuv444p``
and explicit full-range flags), so ffmpeg never converts colour: see :mod:`.colour`. The decoder's
native output format is kept (no ``-pix_fmt`` on the output): asking for ``yuv420p`` from a
full-range H.264 stream, which decodes as ``yuvj420p``, would make swscale squeeze the range.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import time
from typing import List, Optional, Sequence, Tuple

from xmodal_compress_ros.bench.colour import YuvPlanes, frame_bytes, planes_from_bytes
from xmodal_compress_ros.errors import DatasetError

_QUIET = ('-hide_banner', '-loglevel', 'error')
# BT.601 full range, centred chroma: the metadata matching what colour.py does.
_COLOUR_FLAGS = ('-color_range', 'pc', '-colorspace', 'bt470bg', '-color_primaries', 'bt470bg',
                 '-color_trc', 'smpte170m', '-chroma_sample_location', 'center')


class FfmpegError(DatasetError):
    """ffmpeg failed on a stream the benchmark produced (stderr is in the message)."""


def ffmpeg_path() -> Optional[str]:
    """The ``ffmpeg`` executable on PATH, or None."""
    return shutil.which('ffmpeg')


@functools.lru_cache(maxsize=1)
def available_encoders() -> frozenset:
    """Names of the encoders the installed ffmpeg offers (empty when ffmpeg is absent)."""
    return _codec_names('-encoders')


@functools.lru_cache(maxsize=1)
def available_decoders() -> frozenset:
    """Names of the decoders the installed ffmpeg offers (empty when ffmpeg is absent)."""
    return _codec_names('-decoders')


def _codec_names(flag: str) -> frozenset:
    exe = ffmpeg_path()
    if exe is None:
        return frozenset()
    out = subprocess.run([exe, '-hide_banner', flag], capture_output=True, text=True, check=False).stdout
    names = set()
    # Lines look like " V....D libx264   description"; the list starts after the " ------" rule.
    started = False
    for line in out.splitlines():
        if line.strip().startswith('------'):
            started = True
            continue
        parts = line.split()
        if started and len(parts) >= 2:
            names.add(parts[1])
    return frozenset(names)


def ffmpeg_version() -> str:
    """First line of ``ffmpeg -version`` (for the report), or '' when absent."""
    exe = ffmpeg_path()
    if exe is None:
        return ''
    out = subprocess.run([exe, '-version'], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else ''


def _run(cmd: Sequence[str], data: bytes) -> Tuple[bytes, float]:
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), input=data, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise FfmpegError(f'{" ".join(cmd[:12])} ... failed ({proc.returncode}): '
                          f'{proc.stderr.decode(errors="replace").strip()[-800:]}')
    return proc.stdout, seconds


def encode(frames: Sequence[YuvPlanes], width: int, height: int, fps: float,
           codec_args: Sequence[str], stream_format: str,
           bitstream_filter: Optional[str] = None) -> Tuple[bytes, float]:
    """Encodes raw planes into an elementary stream; returns (stream bytes, wall seconds)."""
    exe = ffmpeg_path()
    if exe is None:
        raise FfmpegError('ffmpeg is not installed; install it (apt-get install ffmpeg) '
                          'or drop the ffmpeg codecs')
    pix_fmt = 'yuv420p' if frames[0].chroma == '420' else 'yuv444p'
    cmd = [exe, *_QUIET, '-nostdin', '-f', 'rawvideo', '-pix_fmt', pix_fmt, *_COLOUR_FLAGS,
           '-s', f'{width}x{height}', '-r', f'{fps:g}', '-i', 'pipe:0',
           '-fps_mode', 'passthrough', *codec_args, *_COLOUR_FLAGS]
    if bitstream_filter:
        cmd += ['-bsf:v', bitstream_filter]
    cmd += ['-f', stream_format, 'pipe:1']
    return _run(cmd, b''.join(f.tobytes() for f in frames))


def decode(stream: bytes, stream_format: str, width: int, height: int, chroma: str,
           decoder: Optional[str] = None) -> Tuple[List[YuvPlanes], float]:
    """Decodes an elementary stream to raw planes in the decoder's native layout."""
    exe = ffmpeg_path()
    if exe is None:
        raise FfmpegError('ffmpeg is not installed; install it (apt-get install ffmpeg)')
    cmd = [exe, *_QUIET, '-nostdin', '-f', stream_format]
    if decoder:
        cmd += ['-c:v', decoder]
    cmd += ['-i', 'pipe:0', '-fps_mode', 'passthrough', '-f', 'rawvideo', 'pipe:1']
    raw, seconds = _run(cmd, stream)
    size = frame_bytes(width, height, chroma)
    if len(raw) % size:
        raise FfmpegError(
            f'decoded {len(raw)} bytes, not a multiple of one {width}x{height} {chroma} frame '
            f'({size} bytes): '
            'the decoder changed the pixel format')
    frames = [planes_from_bytes(raw[i:i + size], width, height, chroma) for i in range(0, len(raw), size)]
    return frames, seconds


def packet_sizes(stream: bytes, stream_format: str) -> List[int]:
    """Bytes of each coded frame (access unit) in an elementary stream, in decoding order."""
    exe = shutil.which('ffprobe')
    if exe is None:
        raise FfmpegError('ffprobe (part of ffmpeg) is not installed')
    cmd = [exe, *_QUIET, '-f', stream_format, '-i', 'pipe:0',
           '-show_entries', 'packet=size', '-of', 'csv=p=0']
    out, _ = _run(cmd, stream)
    return [int(line) for line in out.decode().split() if line.strip()]
