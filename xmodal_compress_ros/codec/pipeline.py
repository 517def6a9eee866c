"""Encoder and Decoder: camera images and LiDAR scans to packets and back. No ROS, no argparse.

::

    vehicle:  points ─> Draco ─> LiDAR packet (carries the projection) ──────────────> receiver
              decoded scan ─> depth map ─┐
              image ─> pad ─> 'encoder' graph ─> y_g, z ─> latent coding (+ 'mean' graph) ─> image packet
    receiver: LiDAR packet ─> decoded scan ─> depth map (zeros if lost) ─┐
              image packet ─> latent decoding (integers only) ─> 'decoder' graph ─> crop ─> RGB

The float graphs (:mod:`runtime.graphs`) run on any :mod:`runtime` backend, device and precision;
quantisation, the integer scale indexes and rANS (:mod:`codec.latent_coding`) are one shared NumPy
implementation. What decides how a symbol parses never depends on the LiDAR or on a float
network, so an image packet always decodes, with or without its scan (zeros conditioning: lower
quality, never corruption). See ``docs/pipeline.md``.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from xmodal_compress_ros.codec import entropy, lidar_codec
from xmodal_compress_ros.codec.bitstream import (
    FRAME_KEY, FRAME_KINDS, FRAME_PREDICTED, MODEL_ID_BYTES, PAD_MULTIPLE, CameraProjection, ImagePacket,
    pack_image_packet, pack_lidar_packet, parse_image_packet, parse_lidar_packet)
from xmodal_compress_ros.codec.latent_coding import (DEFAULT_Y_SUBSTREAMS, Latents, code_latents,
                                                     decode_latents, encode_latents, quantise_hyper_latent,
                                                     shifted_indexes)
from xmodal_compress_ros.codec.latent_prediction import (LatentPrediction, choose_prediction, pack_prediction,
                                                         parse_prediction, predicted_mean)
from xmodal_compress_ros.codec.latent_refinement import check_steps, refine_latent
from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig, decode_packet, encode_scan
from xmodal_compress_ros.codec.post_filter import check_views
from xmodal_compress_ros.codec.reference import ReferenceFrame, aligned_planes, reference_input
from xmodal_compress_ros.codec.tiers import (DECODER_MODELS, PFRAME_MODEL, QUALITY_FALLBACK_MODEL,
                                             QUALITY_MODEL)
from xmodal_compress_ros.errors import (CalibrationError, ImageFormatError, ModelFileError, PacketError,
                                        ParameterError)
from xmodal_compress_ros.geometry.block_motion import DEFAULT_RANGE, BlockMotion, apply_motion, search_motion
from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.geometry.ego_motion import POSE_BYTES
from xmodal_compress_ros.runtime.base import DEFAULT_RESOLUTIONS, BackendOptions, create_backend

_REPO_ROOT = Path(__file__).resolve().parents[2]
_SCAN_ID_MODULUS = 1 << 32
# 4096 x 2304 (past 4K UHD once padded): a per-decoder cap far below the format's MAX_PIXELS,
# because a declared size turns into float tensors of 12 bytes per pixel and more.
DEFAULT_MAX_PIXELS = 4096 * 2304


#: DecodedImage.degraded_reason of P frames before the first key frame (a late join).
NO_REFERENCE = 'no reference: waiting for a key frame'


def model_available(stem: str) -> bool:
    """True if the model files of ``stem`` exist (as given or relative to the repository)."""
    from xmodal_compress_ros.codec.model_io import model_paths

    return bool(stem) and all(path.is_file() for path in model_paths(resolve_model_stem(stem)))


class UnknownModelError(PacketError):
    """An image packet names a model id the decoder does not hold."""


@dataclass(frozen=True)
class EncoderConfig:
    """Vehicle-side settings.

    Attributes:
        model: stem of the LiDAR-conditioned model (``.safetensors`` + ``.json``).
        fallback_model: stem of the image-only twin used when no scan is available ('' = none:
            the main model then codes with an all-zero LiDAR map).
        backend, device, precision: see :mod:`runtime` (``'torch'``/``'onnxruntime'``/``'tensorrt'``,
            ``'cpu'``/``'cuda'``, ``'fp32'``/``'fp16'``/``'bf16'``).
        quality: default quality level, 0..num_qualities-1.
        lidar: how scans are coded (:class:`LidarCodecConfig`: the predictive codec at 1 cm by default).
        y_substreams: rANS substreams of each image's y section.
        warmup: run each graph once at construction so the first frame is not slow.
        cache_dir: exported ONNX graphs / TensorRT engines ('' = the user cache folder).
        profile: synchronise the GPU between stages so ``last_timings`` splits GPU time correctly.
        threads: CPU threads of the float graphs (0 = default; PyTorch's setting is process-wide).
        refine_steps: encoder-side latent refinement steps per image (0 = off;
            :mod:`codec.latent_refinement`). They run in PyTorch (fp32) on ``device`` whatever the
            backend: fewer bits at the same quality for much more encoder time; decoders are unchanged.
        keyframe_interval: 1 codes every image alone; N > 1 codes a key frame every N images and
            P frames between them with ``pframe_model``, each predicted from the previous decoded
            frame aligned by the scan and the ego-motion (scan registration on the raw scans).
        pframe_model: stem of the P-frame model (``xmodal-pframe``), used when keyframe_interval > 1.
        reference_mode: 'aligned' (the product), or an ablation for benchmarks: 'unaligned' (no motion
            is sent: both ends use the reference as it is) or 'none' (the encoder predicts from no
            reference; decode such streams with the same DecoderConfig.reference_mode).
        motion_search: pixels the encoder searches each way for the block motion that refines the
            aligned reference of a P frame (:mod:`geometry.block_motion`); 0 = no block motion.
    """

    model: str = QUALITY_MODEL
    fallback_model: str = QUALITY_FALLBACK_MODEL
    backend: str = 'torch'
    device: str = 'cpu'
    precision: str = 'fp32'
    quality: int = 5
    lidar: LidarCodecConfig = LidarCodecConfig()
    y_substreams: int = DEFAULT_Y_SUBSTREAMS
    warmup: bool = True
    cache_dir: str = ''
    profile: bool = False
    threads: int = 0
    refine_steps: int = 0
    keyframe_interval: int = 1
    pframe_model: str = PFRAME_MODEL
    reference_mode: str = 'aligned'
    motion_search: int = DEFAULT_RANGE


@dataclass(frozen=True)
class DecoderConfig:
    """Receiver-side settings.

    Attributes:
        models: stems of every model the decoder knows; packets pick one by model id. Stems whose
            files are missing are left out (``Decoder.missing_models``; their packets are refused as
            of an unknown model), so the default, the models of both tiers (:mod:`codec.tiers`) and
            the P-frame model, works where some are not installed.
        backend, device, precision: as in :class:`EncoderConfig`.
        resolutions: image sizes (width, height) to warm up at and to build TensorRT profiles for.
        max_pixels: the largest padded width x height a packet may declare; larger packets are
            refused before anything is allocated (the default admits 4K frames).
        warmup, cache_dir, profile, threads: as in :class:`EncoderConfig`.
        post_filter: run each model's post filter (if it has one). Off, a CPU decodes about twice as
            fast and the image loses the filter's gain (about 15 % more bits for the same PSNR on KITTI).
        post_filter_views: 1, 2, 4 or 8: average the post filter over that many shifted and mirrored
            views of g_s's output (a self-ensemble; docs/method.md). The same packets, a slightly better
            image, and that many times the filter's time.
        reference_mode: 'aligned' (the product) or 'none', the decoder of an EncoderConfig
            ``reference_mode='none'`` ablation (P frames decoded from no reference).
    """

    models: tuple = DECODER_MODELS
    backend: str = 'torch'
    device: str = 'cpu'
    precision: str = 'fp32'
    resolutions: tuple = DEFAULT_RESOLUTIONS
    max_pixels: int = DEFAULT_MAX_PIXELS
    warmup: bool = True
    cache_dir: str = ''
    profile: bool = False
    threads: int = 0
    post_filter: bool = True
    post_filter_views: int = 1
    reference_mode: str = 'aligned'


#: EncoderConfig.reference_mode values; the decoder knows 'aligned' and 'none' ('unaligned' streams
#: carry no motion, which any decoder follows).
REFERENCE_MODES = ('aligned', 'unaligned', 'none')


@dataclass(frozen=True)
class DecodedScan:
    """A scan as the decoder reconstructs it (the encoder conditions images on exactly this)."""

    scan_id: int
    stamp_ns: int
    frame_id: str
    points: np.ndarray = field(repr=False)
    calib: Optional[Calibration] = field(repr=False)
    packet_bytes: int


@dataclass(frozen=True)
class EncodedImage:
    """One image packet and what it holds. ``latents``: the coded integers (for tests and tools)."""

    packet: bytes = field(repr=False)
    image_bytes: int
    bpp: float
    image_only: bool
    quality: int
    scan_id: Optional[int]
    latents: Optional[Latents] = field(default=None, repr=False, compare=False)
    frame_kind: str = 'key'
    frame_number: int = 0


@dataclass(frozen=True)
class DecodedImage:
    """A reconstructed image. ``latents``: the parsed integers (for tests and tools).

    ``frame_kind``: 'key' or 'P'; ``degraded``: the image was reconstructed from a reference, scan or
    motion other than the encoder's (a lost packet or a late join), so it is less accurate than coded,
    until the next key frame; ``degraded_reason`` says why ('' when clean).
    """

    rgb: np.ndarray = field(repr=False)
    stamp_ns: int
    width: int
    height: int
    quality: int
    model_id: str
    image_only: bool
    lidar_missing: bool
    scan_id: Optional[int]
    latents: Optional[Latents] = field(default=None, repr=False, compare=False)
    frame_kind: str = 'key'
    frame_number: int = 0
    degraded: bool = False
    degraded_reason: str = ''


# -- calibration carried by LiDAR packets ------------------------------------------------------------

def projection_of(calib: Calibration) -> CameraProjection:
    """The packet form of a calibration: size, P and T' = R_rect(4x4) @ T_cam_lidar."""
    rect = np.eye(4)
    rect[:3, :3] = calib.R_rect
    return CameraProjection(width=calib.width, height=calib.height, P=tuple(calib.P.ravel().tolist()),
                            T=tuple((rect @ calib.T_cam_lidar).ravel().tolist()))


def calibration_from_projection(projection: CameraProjection) -> Calibration:
    """The calibration both ends project with: ``K = P[:, :3]``, ``R_rect = I``, ``T_cam_lidar = T'``."""
    P = np.array(projection.P, dtype=np.float64).reshape(3, 4)
    return Calibration(width=projection.width, height=projection.height, K=P[:, :3], P=P,
                       T_cam_lidar=np.array(projection.T, dtype=np.float64).reshape(4, 4))


def compact_calibration(calib: Calibration) -> Calibration:
    """``calib`` as the decoder will see it after a round trip through a LiDAR packet."""
    return calibration_from_projection(projection_of(calib))


# -- shared pieces --------------------------------------------------------------------------------------

class _Stopwatch:
    """Milliseconds per named stage; optionally waits for the GPU at each stage end."""

    def __init__(self, synchronize=None):
        self.times: Dict[str, float] = {}
        self._synchronize = synchronize

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        if self._synchronize is not None:
            self._synchronize()
        self.times[name] = self.times.get(name, 0.0) + (time.perf_counter() - start) * 1e3


def resolve_model_stem(stem: str) -> str:
    """``stem`` as given if its files exist, else relative to the repository (``models/...``)."""
    from xmodal_compress_ros.codec.model_io import model_paths

    if model_paths(stem)[1].is_file() or Path(stem).is_absolute():
        return stem
    candidate = _REPO_ROOT / stem
    return str(candidate) if model_paths(candidate)[1].is_file() else stem


class _Codec:
    """One loaded model, the backend running its graphs, and its per-quality gains on that device."""

    def __init__(self, stem: str, backend: str, options: BackendOptions, post_filter: bool = True,
                 post_filter_views: int = 1):
        from xmodal_compress_ros.codec.model_io import load_model
        from xmodal_compress_ros.runtime.graphs import quality_gains, quality_plane

        self.stem = stem
        self.model = load_model(resolve_model_stem(stem))
        self.model_id = self.model.metadata['model_id']
        self.id_bytes = bytes.fromhex(self.model_id)
        if len(self.id_bytes) != MODEL_ID_BYTES:
            raise ModelFileError(f'{stem}: model_id {self.model_id} is not {MODEL_ID_BYTES} bytes of hex')
        self.uses_lidar = bool(self.model.uses_lidar)
        self.levels = self.model.quality_levels
        self.tables = self.model.entropy_tables
        graphs = self.model
        if not post_filter and self.model.post_filter is not None:
            graphs = self.model.without_post_filter()
        elif post_filter_views > 1 and self.model.post_filter is not None:
            graphs = self.model.with_post_filter_views(post_filter_views)
        self.backend = create_backend(backend, graphs, options)
        gains = [quality_gains(self.model, q) for q in range(self.levels)]
        self.gain_enc = [self.backend.to_input(g) for g, _ in gains]
        self.gain_dec = [self.backend.to_input(g) for _, g in gains]
        has_filter = graphs.post_filter is not None
        self.planes = [self.backend.to_input(quality_plane(self.model, q)) if has_filter else None
                       for q in range(self.levels)]
        self._device_model = None

    def mean(self, z_hat: np.ndarray, encoder_outputs: Dict[str, torch.Tensor]) -> np.ndarray:
        """The 'mean' graph on ``z_hat``, with the encoder graph's ``c_hyper`` where the model has one."""
        feed = {'z_hat': z_hat}
        if 'c_hyper' in encoder_outputs:
            feed['c_hyper'] = encoder_outputs['c_hyper']
        return self.backend.run('mean', feed)['mu'].float().cpu().numpy()

    def decoder_quality_inputs(self, quality: int) -> Dict[str, torch.Tensor]:
        """The decoder graph's per-quality inputs: the gain, and the post filter's plane if it has one."""
        inputs = {'gain': self.gain_dec[quality]}
        if self.planes[quality] is not None:
            inputs['quality'] = self.planes[quality]
        return inputs

    def prediction_inputs(self, quality: int, prediction: LatentPrediction,
                          shape: Tuple[int, ...]) -> Dict[str, torch.Tensor]:
        """A P-frame decoder graph's latent-prediction inputs: the encoder's gain and the weights."""
        return {'analysis_gain': self.gain_enc[quality],
                'weight': self.backend.to_input(prediction.weight_map(shape))}

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def refine(self, x: torch.Tensor, depth: Optional[torch.Tensor], y_g: np.ndarray, z: np.ndarray,
               quality: int, size: Tuple[int, int], steps: int) -> np.ndarray:
        """``y_g`` refined for the padded image ``x`` (:func:`refine_latent`), in PyTorch fp32 on the
        backend's device."""
        model = self._refiner()
        device = self.device
        with torch.no_grad():
            ctx = model.context(None if depth is None else depth.to(device, torch.float32), x)
        y = refine_latent(model, x.to(device, torch.float32), torch.from_numpy(y_g).to(device), z,
                          self.tables, quality, ctx, steps, size)
        return y.float().cpu().numpy()

    def _refiner(self):
        """The fp32 PyTorch model on the backend's device (the loaded model itself on the CPU)."""
        if self.device.type == 'cpu':
            return self.model
        if self._device_model is None:
            self._device_model = copy.deepcopy(self.model).to(self.device).eval()
        return self._device_model


def _padded(height: int, width: int) -> Tuple[int, int]:
    return height + (-height) % PAD_MULTIPLE, width + (-width) % PAD_MULTIPLE


def _depth_input(scan: Optional['DecodedScan'], height: int, width: int,
                 device: torch.device) -> torch.Tensor:
    """The padded (1, 1, Hp, Wp) float conditioning map of ``scan`` (projected with its own
    calibration) on ``device``; zeros without a scan."""
    ph, pw = _padded(height, width)
    if scan is None or scan.calib is None:
        return torch.zeros(1, 1, ph, pw, device=device)
    calib = scan.calib
    if device.type == 'cuda':
        from xmodal_compress_ros.geometry.projection_torch import depth_condition_torch

        depth = depth_condition_torch(scan.points, calib, device=device)
    else:
        from xmodal_compress_ros.geometry.projection import depth_condition

        depth = torch.from_numpy(depth_condition(scan.points, calib))
    return F.pad(depth.to(torch.float32)[None, None], (0, pw - width, 0, ph - height))


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, 'shape', None)
        dtype = getattr(image, 'dtype', type(image).__name__)
        raise ImageFormatError(f'image must be an (H, W, 3) uint8 RGB array, got shape {shape} dtype '
                               f'{dtype}: convert it (e.g. ros.conversions) before encoding')
    height, width = image.shape[:2]
    if not (1 <= height <= 0xFFFF and 1 <= width <= 0xFFFF):
        raise ImageFormatError(f'image is {width}x{height}; width and height must be in 1..65535')
    return image


# -- encoder --------------------------------------------------------------------------------------------

class Encoder:
    """Codes LiDAR scans and camera images for one calibrated camera/LiDAR pair.

    ``last_timings``: milliseconds per stage of the latest ``encode_image`` (preprocess, projection,
    encoder_network, mean_network, entropy_encode, total).
    """

    def __init__(self, config: EncoderConfig, calib: Calibration):
        if not isinstance(calib, Calibration):
            raise CalibrationError(f'the encoder needs a Calibration, got {type(calib).__name__}')
        self.config = config
        # The decoder rebuilds the calibration from the LiDAR packet: project with that very one.
        self.calib = compact_calibration(calib)
        self._projection = projection_of(self.calib)
        # The camera's size first (TensorRT's optimal profile shape); the defaults widen the profile
        # for images of other sizes, which are coded image-only.
        options = BackendOptions(device=config.device, precision=config.precision, cache_dir=config.cache_dir,
                                 resolutions=((calib.width, calib.height),) + DEFAULT_RESOLUTIONS,
                                 threads=config.threads)
        self._main = _Codec(config.model, config.backend, options)
        self._fallback = None
        if config.fallback_model and self._main.uses_lidar:
            self._fallback = _Codec(config.fallback_model, config.backend, options)
            if self._fallback.levels != self._main.levels:
                raise ModelFileError(f'{config.fallback_model} has {self._fallback.levels} quality levels '
                                     f'but {config.model} has {self._main.levels}: use a matching twin')
        self._check_quality(config.quality)
        try:
            self._refine_steps = check_steps(config.refine_steps)
        except ValueError as error:
            raise ParameterError(str(error)) from None
        self._next_scan_id = 0
        self._stream = _EncoderStream(config, self._main, options, self.calib) \
            if config.keyframe_interval > 1 else None
        self.last_timings: Dict[str, float] = {}
        if config.warmup:
            self._warm_up()

    @property
    def num_qualities(self) -> int:
        return self._main.levels

    @property
    def needs_scans(self) -> bool:
        """True if images are coded with scans (a LiDAR-conditioned model, or P frames aligned by the
        scans' motion); False: an image packet never depends on a scan, so scans may be coded at the
        same time as images (``encode_scan`` and ``encode_image`` then share no state)."""
        return self._main.uses_lidar or self._stream is not None

    @property
    def reference(self) -> Optional[np.ndarray]:
        """The decoded frame the next P frame is predicted from, (H, W, 3) uint8; None outside a stream."""
        return None if self._stream is None or self._stream.reference is None else self._stream.reference.rgb

    def _check_quality(self, quality: int) -> int:
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
                or not 0 <= quality < self.num_qualities:
            raise ParameterError(f'quality {quality!r} is out of range: the model has levels '
                                 f'0..{self.num_qualities - 1}')
        return int(quality)

    def encode_scan(self, points: np.ndarray, stamp_ns: int, frame_id: str = 'lidar',
                    intensity_max: Optional[float] = None,
                    rings: Optional[np.ndarray] = None) -> Tuple[bytes, DecodedScan]:
        """Code a scan; returns its LiDAR packet and the decoded scan to condition images on.

        Invalid points are dropped; an empty cloud is valid. Bad arrays raise PointCloudError.
        ``intensity_max``, if given, replaces the configured one for this scan (it travels in the packet).
        ``rings``: the laser index of each point (PointCloud2 ``ring``), when the driver gives it.
        """
        lidar = self.config.lidar if intensity_max is None else replace(self.config.lidar,
                                                                        intensity_max=intensity_max)
        encoded = encode_scan(points, lidar, calib=self.calib, rings=rings)
        scan_id = self._next_scan_id
        packet = replace(encoded.to_packet(scan_id, int(stamp_ns), frame_id), projection=self._projection)
        data = pack_lidar_packet(packet)
        self._next_scan_id = (scan_id + 1) % _SCAN_ID_MODULUS
        if self._stream is not None:
            self._stream.register(scan_id, points)
        return data, DecodedScan(scan_id, int(stamp_ns), frame_id, encoded.points, self.calib, len(data))

    def encode_image(self, image: np.ndarray, stamp_ns: int, scan: Optional[DecodedScan],
                     quality: Optional[int] = None) -> EncodedImage:
        """Code one (H, W, 3) uint8 RGB image, conditioned on ``scan`` when it fits the image.

        Without a scan, or when the image size does not match the scan's calibration, the image is
        coded image-only (with the twin if configured). Bad arrays raise ImageFormatError.
        """
        rgb = _check_image(image)
        quality = self._check_quality(self.config.quality if quality is None else quality)
        height, width = rgb.shape[:2]
        if self._stream is not None and self._stream.predicts(width, height):
            return self._stream.encode_predicted(rgb, int(stamp_ns), scan, quality, self.config)
        conditioned = (self._main.uses_lidar and scan is not None and scan.calib is not None
                       and (scan.calib.width, scan.calib.height) == (width, height))
        codec = self._main if conditioned or self._fallback is None else self._fallback
        watch = _Stopwatch(codec.backend.synchronize if self.config.profile else None)
        start = time.perf_counter()
        ph, pw = _padded(height, width)
        with watch.stage('preprocess'):
            inputs = {'x': _image_input(rgb, ph, pw, codec.device)}
        with watch.stage('projection'):
            if codec.uses_lidar:
                inputs['depth'] = _depth_input(scan if conditioned else None, height, width, codec.device)
            inputs['gain'] = codec.gain_enc[quality]
        with watch.stage('encoder_network'):
            out = codec.backend.run('encoder', inputs)
            y_g, z = out['y_g'].float().cpu().numpy(), out['z'].float().cpu().numpy()
        if self._refine_steps:
            with watch.stage('refinement'):
                y_g = codec.refine(inputs['x'], inputs.get('depth'), y_g, z, quality, (height, width),
                                   self._refine_steps)

        def mean(z_hat: np.ndarray) -> np.ndarray:
            with watch.stage('mean_network'):
                return codec.mean(z_hat, out)

        coding_start = time.perf_counter()
        encoded = encode_latents(y_g, z, mean, codec.tables, self.config.y_substreams)
        coding_ms = (time.perf_counter() - coding_start) * 1e3
        watch.times['entropy_encode'] = coding_ms - watch.times['mean_network']
        number = 0 if self._stream is None else self._stream.next_number
        packet = pack_image_packet(ImagePacket(
            model_id=codec.id_bytes, quality=quality, width=width, height=height, padded_width=pw,
            padded_height=ph, image_stamp_ns=int(stamp_ns), lidar_conditioned=conditioned,
            scan_id=scan.scan_id if conditioned else 0, scan_stamp_ns=scan.stamp_ns if conditioned else 0,
            num_y_substreams=self.config.y_substreams, z_bytes=encoded.z_bytes, y_bytes=encoded.y_bytes,
            frame_kind=FRAME_KEY, frame_number=number))
        if self._stream is not None:
            with watch.stage('reference'):
                condition = {'depth': inputs['depth']} if 'depth' in inputs else {}
                self._stream.keep(codec, encoded.latents, condition, quality, (height, width),
                                  scan.scan_id if scan is not None else None)
        watch.times['total'] = (time.perf_counter() - start) * 1e3
        self.last_timings = watch.times
        return EncodedImage(packet, len(packet), 8.0 * len(packet) / (width * height), not conditioned,
                            quality, scan.scan_id if conditioned else None, encoded.latents,
                            frame_kind='key', frame_number=number)

    def _warm_up(self) -> None:
        """The LiDAR codec, then one image with an (empty) scan and one without, at the calibration size."""
        lidar_codec.warm_up(self.config.lidar)
        gray = np.full((self.calib.height, self.calib.width, 3), 128, np.uint8)
        empty = DecodedScan(0, 0, 'warmup', np.zeros((0, 4), np.float32), self.calib, 0)
        # One refinement step readies its backward pass; all of them would delay start-up by seconds.
        steps, self._refine_steps = self._refine_steps, min(self._refine_steps, 1)
        try:
            # A stream codes the second as a P frame: both graphs warm up.
            for scan in (empty, None):
                self.encode_image(gray, 0, scan)
        finally:
            self._refine_steps = steps
            if self._stream is not None:
                self._stream.restart()
        self.last_timings = {}


class _EncoderStream:
    """The encoder's side of a P-frame stream: frame numbers, the decoded reference it shares with the
    decoder, and the vehicle's motion from registering each raw scan to the one before."""

    def __init__(self, config: EncoderConfig, intra: _Codec, options: BackendOptions, calib: Calibration):
        from xmodal_compress_ros.geometry.ego_motion import ScanRegistration

        if config.reference_mode not in REFERENCE_MODES:
            raise ParameterError(f'reference_mode {config.reference_mode!r}: use one of {REFERENCE_MODES}')
        self.interval = int(config.keyframe_interval)
        self.mode = config.reference_mode
        self.codec = _Codec(config.pframe_model, config.backend, options)
        if self.codec.model.condition_name != 'reference':
            raise ModelFileError(f'{config.pframe_model} is a {self.codec.model.registry_name} model, not a '
                                 'P-frame model (xmodal-pframe)')
        if self.codec.levels != intra.levels:
            raise ModelFileError(f'{config.pframe_model} has {self.codec.levels} quality levels but '
                                 f'{config.model} has {intra.levels}: use a P-frame model of the same levels')
        self.calib = calib
        self.registration = ScanRegistration()
        self.odometry = np.eye(4)
        self.poses: Dict[int, np.ndarray] = {}
        self.next_number = 0
        self.since_key = 0
        self.reference: Optional[ReferenceFrame] = None
        self.reference_scan: Optional[int] = None

    def restart(self) -> None:
        """Forget the reference: the next image is key frame 0 of a new stream."""
        self.next_number, self.since_key = 0, 0
        self.reference, self.reference_scan = None, None

    def register(self, scan_id: int, points: np.ndarray) -> None:
        """Chain the scan's motion onto the odometry (the world frame is the first scan's)."""
        self.odometry = self.odometry @ self.registration.register(points)
        self.poses[scan_id] = self.odometry.copy()
        for old in [k for k in self.poses if k not in (scan_id, self.reference_scan)]:
            del self.poses[old]

    def predicts(self, width: int, height: int) -> bool:
        """True if the next image is a P frame: a reference of its size, inside the key-frame interval."""
        return (self.reference is not None and self.reference.size == (width, height)
                and self.since_key < self.interval)

    def motion(self, scan: Optional['DecodedScan']) -> bytes:
        """The camera's motion from ``scan``'s frame to the reference's, encoded; b'' when unknown."""
        from xmodal_compress_ros.geometry.ego_motion import encode_pose, lidar_to_camera_motion
        from xmodal_compress_ros.geometry.warp import camera_intrinsics

        if scan is None or scan.scan_id not in self.poses or self.reference_scan not in self.poses:
            return b''
        T_lidar = np.linalg.inv(self.poses[self.reference_scan]) @ self.poses[scan.scan_id]
        try:
            return encode_pose(lidar_to_camera_motion(T_lidar, camera_intrinsics(scan.calib)[1]))
        except ValueError:  # a failed registration: send the unaligned reference instead
            return b''

    def encode_predicted(self, rgb: np.ndarray, stamp_ns: int, scan: Optional['DecodedScan'], quality: int,
                         config: EncoderConfig) -> EncodedImage:
        codec, reference = self.codec, self.reference
        height, width = rgb.shape[:2]
        aligned = scan is not None and scan.calib is not None and \
            (scan.calib.width, scan.calib.height) == (width, height)
        pose = self.motion(scan) if aligned and self.mode == 'aligned' else b''
        aligned = aligned and bool(pose)
        planes, block_motion = self._reference_planes(rgb, scan if aligned else None, pose,
                                                      config.motion_search)
        ph, pw = _padded(height, width)
        condition = {'reference': reference_input(planes, height, width, (ph, pw), codec.device)}
        inputs = dict(condition, x=_image_input(rgb, ph, pw, codec.device), gain=codec.gain_enc[quality])
        out = codec.backend.run('encoder', inputs)
        y_g, z, y_ref = (out[name].float().cpu().numpy() for name in ('y_g', 'z', 'y_ref'))
        z_hat = quantise_hyper_latent(z, codec.tables)
        mu, indexes = codec.mean(z_hat, out), codec.tables[2](z_hat)
        prediction = LatentPrediction.none(y_g.shape[1], (ph, pw))
        if planes is not None:
            prediction = choose_prediction(y_g, mu, y_ref, indexes, codec.tables[1], block_motion)
        encoded = code_latents(y_g, z_hat, predicted_mean(mu, y_ref, prediction),
                               shifted_indexes(indexes, prediction.index_shift(y_g.shape)), codec.tables,
                               config.y_substreams)
        number = self.next_number
        packet = pack_image_packet(ImagePacket(
            model_id=codec.id_bytes, quality=quality, width=width, height=height, padded_width=pw,
            padded_height=ph, image_stamp_ns=stamp_ns, lidar_conditioned=aligned,
            scan_id=scan.scan_id if aligned else 0, scan_stamp_ns=scan.stamp_ns if aligned else 0,
            num_y_substreams=config.y_substreams, z_bytes=encoded.z_bytes, y_bytes=encoded.y_bytes,
            frame_kind=FRAME_PREDICTED, frame_number=number, reference_number=reference.number, pose=pose,
            prediction=pack_prediction(prediction) if planes is not None else b''))
        self.keep(codec, encoded.latents,
                  dict(condition, **codec.prediction_inputs(quality, prediction, y_g.shape)),
                  quality, (height, width), scan.scan_id if scan is not None else None, predicted=True)
        return EncodedImage(packet, len(packet), 8.0 * len(packet) / (width * height), not aligned, quality,
                            scan.scan_id if aligned else None, encoded.latents, frame_kind='P',
                            frame_number=number)

    def _reference_planes(self, rgb: np.ndarray, scan: Optional['DecodedScan'], pose: bytes,
                          search_range: int) -> Tuple[Optional[np.ndarray], Optional[BlockMotion]]:
        """The reference's condition map for ``rgb`` (aligned by ``scan`` and ``pose`` when given, then
        moved by the block motion searched within ``search_range``; 0: none) and that motion; (None,
        None) in the 'none' ablation."""
        if self.mode == 'none':
            return None, None
        planes = aligned_planes(self.reference.rgb, scan.points if scan is not None else None,
                                scan.calib if scan is not None else None, pose)
        if search_range <= 0:
            return planes, None
        motion = search_motion(rgb, planes, search_range=search_range)
        return apply_motion(planes, motion), motion

    def keep(self, codec: _Codec, latents: Latents, condition: Dict[str, torch.Tensor], quality: int,
             size: Tuple[int, int], scan_id: Optional[int], predicted: bool = False) -> None:
        """Decode the frame just coded, as the decoder will, and keep it as the next reference."""
        inputs = dict(condition, z_hat=latents.z_hat, symbols=latents.symbols)
        inputs.update(codec.decoder_quality_inputs(quality))
        rgb = _to_rgb(codec.backend.run('decoder', inputs)['x_hat'], *size)
        self.reference = ReferenceFrame(self.next_number, rgb)
        self.reference_scan = scan_id
        self.since_key = self.since_key + 1 if predicted else 1
        self.next_number = (self.next_number + 1) % _SCAN_ID_MODULUS


def _image_input(rgb: np.ndarray, ph: int, pw: int, device: torch.device) -> torch.Tensor:
    """(1, 3, Hp, Wp) float32 in [0, 1] on ``device``, edge-replicated to the padded size."""
    height, width = rgb.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float().div_(255.0)
    return F.pad(x, (0, pw - width, 0, ph - height), mode='replicate') if (ph, pw) != (height, width) else x


# -- decoder --------------------------------------------------------------------------------------------

class Decoder:
    """Decodes LiDAR and image packets with the models it holds (matched by model id).

    ``last_timings``: milliseconds per stage of the latest ``decode_image`` (entropy_decode,
    projection, decoder_network, total).
    """

    def __init__(self, config: DecoderConfig):
        self.config = config
        if not config.models:
            raise ParameterError('the decoder needs at least one model stem in DecoderConfig.models')
        try:
            check_views(config.post_filter_views)
        except ValueError as error:
            raise ParameterError(f'DecoderConfig.post_filter_views: {error}') from None
        if config.reference_mode not in ('aligned', 'none'):
            raise ParameterError(f"DecoderConfig.reference_mode {config.reference_mode!r}: "
                                 "use 'aligned' or 'none'")
        options = BackendOptions(device=config.device, precision=config.precision, cache_dir=config.cache_dir,
                                 resolutions=tuple(config.resolutions), threads=config.threads)
        self._codecs: Dict[bytes, _Codec] = {}
        self.missing_models = tuple(stem for stem in config.models if not model_available(stem))
        if len(self.missing_models) == len(config.models):
            raise ModelFileError(f'none of the decoder\'s models is there: {", ".join(config.models)} '
                                 '(each a .safetensors + .json stem)')
        for stem in config.models:
            if stem in self.missing_models:
                continue
            codec = _Codec(stem, config.backend, options, config.post_filter, config.post_filter_views)
            self._codecs.setdefault(codec.id_bytes, codec)
        # The stream: the last decoded frame (a P frame's reference) and why the stream is degraded.
        self._reference: Optional[ReferenceFrame] = None
        self._stream_damage = 'no key frame received yet'
        self.last_timings: Dict[str, float] = {}
        if config.warmup:
            self._warm_up(options.resolutions)

    @property
    def model_ids(self) -> Dict[str, str]:
        """Model id (hex) -> model stem, for every model the decoder holds."""
        return {codec.model_id: codec.stem for codec in self._codecs.values()}

    def decode_lidar(self, packet: bytes) -> DecodedScan:
        """The scan a LiDAR packet carries; PacketError for bad packets."""
        parsed = parse_lidar_packet(packet)
        points = decode_packet(parsed)
        calib = None
        if parsed.projection is not None:
            try:
                calib = calibration_from_projection(parsed.projection)
            except CalibrationError as exc:
                raise PacketError(f'LiDAR packet carries an invalid projection: {exc}') from None
        return DecodedScan(parsed.scan_id, parsed.stamp_ns, parsed.frame_id, points, calib, len(packet))

    def scan_reference(self, packet: bytes) -> Optional[Tuple[int, int]]:
        """(scan_id, scan_stamp_ns) an image packet was conditioned on; None if image-only."""
        parsed = self._parse(packet)
        return (parsed.scan_id, parsed.scan_stamp_ns) if parsed.lidar_conditioned else None

    def decode_image(self, packet: bytes, scan: Optional[DecodedScan]) -> DecodedImage:
        """Reconstruct an image packet.

        ``scan`` must be the decoded LiDAR packet the image references (same scan id and stamp);
        if it is None, another scan, or lacks a projection, a LiDAR-conditioned packet decodes with
        an all-zero map and ``lidar_missing=True``. Corrupt packets raise PacketError, packets of a
        model this decoder lacks UnknownModelError.
        """
        start = time.perf_counter()
        parsed = self._parse(packet)
        codec = self._codec_for(parsed)
        watch = _Stopwatch(codec.backend.synchronize if self.config.profile else None)
        prediction = _parse_prediction(parsed, codec)
        with watch.stage('entropy_decode'):
            latents = _parse_latents(parsed, codec, prediction)
        usable = (scan is not None and scan.calib is not None and scan.scan_id == parsed.scan_id
                  and scan.stamp_ns == parsed.scan_stamp_ns
                  and (scan.calib.width, scan.calib.height) == (parsed.width, parsed.height))
        conditioned = parsed.lidar_conditioned and codec.uses_lidar and usable
        inputs = {'z_hat': latents.z_hat, 'symbols': latents.symbols}
        damage = ''
        with watch.stage('projection'):
            if codec.uses_lidar:
                inputs['depth'] = _depth_input(scan if conditioned else None, parsed.height, parsed.width,
                                               codec.device)
            if parsed.predicted:
                planes, damage = self._reference_planes(parsed, scan if usable else None)
                if planes is None:
                    # Nothing to predict the latent from: the intra model's means decode it best.
                    prediction = LatentPrediction.none(prediction.weights.size,
                                                       (parsed.padded_height, parsed.padded_width))
                elif prediction.motion is not None:
                    planes = apply_motion(planes, prediction.motion)
                inputs['reference'] = reference_input(planes, parsed.height, parsed.width,
                                                      _padded(parsed.height, parsed.width), codec.device)
                inputs.update(codec.prediction_inputs(parsed.quality, prediction, latents.symbols.shape))
            inputs.update(codec.decoder_quality_inputs(parsed.quality))
        with watch.stage('decoder_network'):
            x_hat = codec.backend.run('decoder', inputs)['x_hat']
            rgb = _to_rgb(x_hat, parsed.height, parsed.width)
        lidar_missing = parsed.lidar_conditioned and codec.uses_lidar and not usable
        damage = self._keep(parsed, rgb, damage, lidar_missing)
        watch.times['total'] = (time.perf_counter() - start) * 1e3
        self.last_timings = watch.times
        return DecodedImage(
            rgb=rgb, stamp_ns=parsed.image_stamp_ns, width=parsed.width, height=parsed.height,
            quality=parsed.quality, model_id=codec.model_id, image_only=not parsed.lidar_conditioned,
            lidar_missing=lidar_missing,
            scan_id=parsed.scan_id if parsed.lidar_conditioned else None, latents=latents,
            frame_kind=FRAME_KINDS[parsed.frame_kind], frame_number=parsed.frame_number,
            degraded=bool(damage), degraded_reason=damage)

    def _reference_planes(self, parsed: ImagePacket,
                          scan: Optional[DecodedScan]) -> Tuple[Optional[np.ndarray], str]:
        """A P packet's condition map from the held reference, and what is wrong with it ('' if nothing).

        Whatever is missing, the packet still parses: the map only moves the reconstruction.
        """
        reference = self._reference
        if self.config.reference_mode == 'none':
            return None, ''
        if reference is None:
            return None, NO_REFERENCE
        if reference.size != (parsed.width, parsed.height):
            return None, (f'the held reference is {reference.size[0]}x{reference.size[1]}, '
                          "not the P frame's size")
        damage = ''
        if reference.number != parsed.reference_number:
            damage = f'reference frame {parsed.reference_number} is lost (holding frame {reference.number})'
        if parsed.lidar_conditioned and scan is None:
            damage = damage or f'scan {parsed.scan_id} is lost: the reference is not aligned'
        if parsed.lidar_conditioned and not parsed.pose:
            damage = damage or 'the P frame carries no motion: the reference is not aligned'
        aligned = parsed.lidar_conditioned and scan is not None
        planes = aligned_planes(reference.rgb, scan.points if aligned else None,
                                scan.calib if aligned else None,
                                parsed.pose if aligned else b'')
        return planes, damage

    def _keep(self, parsed: ImagePacket, rgb: np.ndarray, damage: str, lidar_missing: bool) -> str:
        """Hold the decoded frame as the next reference; returns the frame's damage, which a P frame
        inherits from its reference until the next key frame."""
        if parsed.predicted:
            damage = damage or self._stream_damage
        elif lidar_missing:
            damage = 'key frame decoded without its scan'
        self._reference = ReferenceFrame(parsed.frame_number, rgb)
        self._stream_damage = damage
        return damage

    def parse_latents(self, packet: bytes) -> Latents:
        """The integers an image packet holds (integer-only: identical on every backend)."""
        parsed = self._parse(packet)
        codec = self._codec_for(parsed)
        return _parse_latents(parsed, codec, _parse_prediction(parsed, codec))

    def _parse(self, packet: bytes) -> ImagePacket:
        return parse_image_packet(packet, max_pixels=self.config.max_pixels)

    def _codec_for(self, parsed: ImagePacket) -> _Codec:
        codec = self._codecs.get(parsed.model_id)
        if codec is None:
            known = ', '.join(f'{c.model_id} ({c.stem})' for c in self._codecs.values())
            raise UnknownModelError(f'image packet was coded with model id {parsed.model_id.hex()}, which '
                                    f'this decoder does not hold; known: {known}. Add that model to '
                                    'DecoderConfig.models')
        if parsed.quality >= codec.levels:
            raise PacketError(f'image packet quality {parsed.quality} is out of range for model '
                              f'{codec.model_id} (levels 0..{codec.levels - 1})')
        if parsed.predicted != (codec.model.condition_name == 'reference'):
            raise PacketError(f'a {FRAME_KINDS[parsed.frame_kind]} frame packet names model {codec.model_id} '
                              f'({codec.model.registry_name}): P frames need a P-frame model, key frames an '
                              'intra model')
        if parsed.pose and len(parsed.pose) != POSE_BYTES:
            raise PacketError(f'a P frame carries {len(parsed.pose)} bytes of motion; the pose takes '
                              f'{POSE_BYTES}')
        # The encoder pads minimally; larger declared sizes would only make the decoder do more work.
        if (parsed.padded_height, parsed.padded_width) != _padded(parsed.height, parsed.width):
            height, width = _padded(parsed.height, parsed.width)
            raise PacketError(f'image packet declares padded size {parsed.padded_width}x'
                              f'{parsed.padded_height} for a {parsed.width}x{parsed.height} image; expected '
                              f'{width}x{height}')
        return codec

    def _warm_up(self, resolutions) -> None:
        """Run each model's decoder graph once per configured resolution, the entropy decoder and the
        integer hyper-synthesis and the LiDAR codec (these compile on first use)."""
        entropy.warm_up()
        lidar_codec.warm_up()
        for codec in self._codecs.values():
            z_table, _, hyper = codec.tables
            hyper(np.zeros((1, z_table.num_rows, 1, 1), np.int32))
            spec = codec.backend.specs['decoder']
            for width, height in resolutions:
                ph, pw = _padded(height, width)
                inputs = {t.name: torch.zeros(t.concrete_shape(ph, pw)) for t in spec.inputs}
                inputs.update(codec.decoder_quality_inputs(0))
                codec.backend.run('decoder', inputs)
        for codec in self._codecs.values():
            codec.backend.synchronize()


def _parse_prediction(parsed: ImagePacket, codec: _Codec) -> Optional[LatentPrediction]:
    """A P packet's latent prediction (its block's, or the intra model's means and scales); None for a
    key frame. Read from the packet's own bytes only."""
    if not parsed.predicted:
        return None
    channels, padded = codec.model.config['M'], (parsed.padded_height, parsed.padded_width)
    if not parsed.prediction:
        return LatentPrediction.none(channels, padded)
    return parse_prediction(parsed.prediction, channels, (parsed.width, parsed.height), padded)


def _parse_latents(parsed: ImagePacket, codec: _Codec, prediction: Optional[LatentPrediction]) -> Latents:
    shape = (1, codec.model.config['M'], parsed.padded_height // 16, parsed.padded_width // 16)
    shift = None if prediction is None else prediction.index_shift(shape)
    try:
        return decode_latents(parsed.z_bytes, parsed.y_bytes, (parsed.padded_height, parsed.padded_width),
                              codec.tables, shift)
    except PacketError:
        raise
    except (ValueError, RuntimeError, OverflowError) as exc:
        # The coder's own checks raise PacketError; anything else from hostile bytes is still a bad packet.
        raise PacketError(f'image packet sections do not decode: {exc}') from None


def _to_rgb(x_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(1, 3, Hp, Wp) in [0, 1] -> cropped (H, W, 3) uint8 on the host (rounded half up)."""
    x = x_hat[0, :, :height, :width].float().mul(255.0).add_(0.5).floor_().clamp_(0, 255)
    return x.to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
