"""Our codec in the benchmark, through :mod:`xmodal_compress_ros.codec.pipeline` like the nodes use it.

* ``xmodal``: the LiDAR-conditioned model; each frame's scan is coded first (its LiDAR packet is
  counted separately, see :mod:`.lidar`) and the image is conditioned on the decoded scan.
* ``xmodal-image-only``: the image-only twin (the encoder given no scan).
* ``xmodal-zeros``: the LiDAR model with an all-zero conditioning map on both ends (an encoder
  without a twin, given no scan): what the LiDAR branch is worth at equal weights.
* ``xmodal-refined``: ``xmodal`` with encoder-side latent refinement (``refine_steps`` per image,
  :mod:`xmodal_compress_ros.codec.latent_refinement`); the same decoder.
* ``xmodal-ensemble``: ``xmodal``'s packets, decoded with the post filter averaged over
  ``post_filter_views`` shifted and mirrored views (:mod:`xmodal_compress_ros.codec.post_filter`).
* ``xmodal-p``: the stream mode: ``xmodal`` key frames every ``gop`` frames and P frames between them
  (the P-frame model, each predicted from the previous decoded frame aligned by the scan and the
  registered ego-motion); a fresh encoder and decoder per setting, so each run starts with a key frame.
* ``xmodal-p-unaligned``: the same with the alignment disabled (the reference as it is, no motion sent;
  the block motion still searched): what the LiDAR depth and the pose buy.
* ``xmodal-p-nomotion``: ``xmodal-p`` without block motion (:mod:`xmodal_compress_ros.geometry.block_motion`):
  what the encoder's motion search buys on top of the alignment.
* ``xmodal-p-noref``: P frames predicted from no reference on both ends: what the network does
  without a previous frame.
* ``xmodal-fast`` and ``xmodal-p-fast``: the fast tier (:mod:`xmodal_compress_ros.codec.tiers`): its
  image-only model on every frame, and its stream (that model's key frames, the fast P-frame model's
  P frames); the scans are coded for the alignment only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from xmodal_compress_ros.bench.baselines import CodedRun
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import DatasetError, XmodalError

VARIANTS = {'xmodal': 'lidar', 'xmodal-image-only': 'image-only', 'xmodal-zeros': 'zeros',
            'xmodal-refined': 'lidar', 'xmodal-ensemble': 'lidar', 'xmodal-p': 'lidar',
            'xmodal-p-unaligned': 'lidar', 'xmodal-p-noref': 'lidar', 'xmodal-p-nomotion': 'lidar',
            'xmodal-fast': 'fast', 'xmodal-p-fast': 'fast'}
#: The stream variants and their EncoderConfig.reference_mode.
REFERENCE_MODES = {'xmodal-p': 'aligned', 'xmodal-p-unaligned': 'unaligned', 'xmodal-p-noref': 'none',
                   'xmodal-p-nomotion': 'aligned', 'xmodal-p-fast': 'aligned'}


@dataclass
class XmodalCodec:
    """One of our three variants; models load on first use."""

    name: str
    model: str
    fallback_model: str
    settings: Tuple[int, ...]
    setting_name: str = 'quality'
    refine_steps: int = 0
    post_filter_views: int = 1
    gop: int = 1
    pframe_model: str = ''
    _encoders: Dict[object, object] = field(default_factory=dict, repr=False)
    _decoder: Optional[object] = field(default=None, repr=False)

    @classmethod
    def create(cls, name: str, model: Optional[str] = None, fallback_model: Optional[str] = None,
               qualities: Optional[Sequence[int]] = None, refine_steps: int = 0,
               post_filter_views: int = 1, gop: int = 10, pframe_model: Optional[str] = None,
               fast_model: Optional[str] = None, fast_pframe_model: Optional[str] = None) -> 'XmodalCodec':
        """``name`` from :data:`VARIANTS`; ``None`` model stems take the defaults (the pipeline's,
        the fast tier's for its variants); ``gop``: the key-frame interval of the stream variants."""
        from xmodal_compress_ros.codec.latent_refinement import check_steps
        from xmodal_compress_ros.codec.pipeline import EncoderConfig
        from xmodal_compress_ros.codec.post_filter import check_views
        defaults = EncoderConfig()
        try:
            refine_steps = check_steps(refine_steps)
        except ValueError as error:
            raise DatasetError(f'--refine-steps: {error}') from None
        try:
            post_filter_views = check_views(post_filter_views)
        except ValueError as error:
            raise DatasetError(f'--post-filter-views: {error}') from None
        stream = name in REFERENCE_MODES
        if VARIANTS.get(name) == 'fast':
            from xmodal_compress_ros.codec import tiers
            model, fallback_model = fast_model or tiers.FAST_MODEL, ''
            pframe_model = fast_pframe_model or tiers.FAST_PFRAME_MODEL
        else:
            model, fallback_model = model or defaults.model, fallback_model or defaults.fallback_model
            pframe_model = pframe_model or defaults.pframe_model
        codec = cls(name, model, fallback_model, (), refine_steps=refine_steps,
                    post_filter_views=post_filter_views, gop=gop if stream else 1,
                    pframe_model=pframe_model if stream else '')
        levels = codec._levels()
        if qualities is None:
            codec.settings = tuple(range(levels)) if levels else ()
        else:
            bad = [q for q in qualities if levels and not 0 <= q < levels]
            if bad:
                raise DatasetError(f'--qualities {bad}: the model has quality levels 0..{levels - 1}')
            codec.settings = tuple(qualities)
        return codec

    @property
    def variant(self) -> str:
        return VARIANTS[self.name]

    @property
    def reference_mode(self) -> Optional[str]:
        """EncoderConfig.reference_mode of a stream variant; None for the intra ones."""
        return REFERENCE_MODES.get(self.name)

    def _stems(self) -> Tuple[str, ...]:
        if self.reference_mode is not None:
            return (self.model, self.pframe_model)
        return (self.model, self.fallback_model) if self.variant == 'image-only' else (self.model,)

    def _held_models(self, *extra: str) -> Tuple[str, ...]:
        """The stems a decoder of this variant holds (the fast tier has no twin)."""
        return tuple(stem for stem in (self.model, self.fallback_model) + extra if stem)

    def _levels(self) -> int:
        """Quality levels from the model's metadata (0 when its files are missing)."""
        from xmodal_compress_ros.codec.model_io import read_metadata
        from xmodal_compress_ros.codec.pipeline import resolve_model_stem
        try:
            meta = read_metadata(resolve_model_stem(self.model))
        except XmodalError:
            return 0
        return len(meta['config'].get('lambdas', ()))

    def unavailable_reason(self) -> Optional[str]:
        """Why this variant cannot run (missing model files), or None."""
        from xmodal_compress_ros.codec.model_io import model_paths
        from xmodal_compress_ros.codec.pipeline import resolve_model_stem
        for stem in self._stems():
            weights, meta = model_paths(resolve_model_stem(stem))
            if not (weights.is_file() and meta.is_file()):
                return f'model {stem} not found ({weights.name} and {meta.name}); train it or pass --model'
        if not self.settings:
            return f'model {self.model} declares no quality levels'
        return None

    def describe(self) -> Dict[str, object]:
        """Variant, model stems and ids, for the report."""
        import torch
        from xmodal_compress_ros.codec.model_io import earlier_runs, read_metadata
        from xmodal_compress_ros.codec.pipeline import resolve_model_stem
        models = {}
        for stem in self._stems():
            meta = read_metadata(resolve_model_stem(stem))
            training = meta.get('training') if isinstance(meta.get('training'), dict) else {}
            models[stem] = {'model_id': meta['model_id'], 'architecture': meta['architecture'],
                            **_training_summary(training)}
            earlier = [{'model_id': run.get('model_id'), **_training_summary(run['training'])}
                       for run in earlier_runs(meta)
                       if isinstance(run, dict) and isinstance(run.get('training'), dict)]
            if earlier:
                models[stem]['history'] = earlier
        info = {'encoder': 'xmodal_compress_ros.codec.pipeline (torch, cpu, fp32)', 'variant': self.variant,
                'mode': 'intra', 'setting': self.setting_name, 'models': models,
                'torch_threads': torch.get_num_threads()}
        if self.reference_mode is not None:
            info.update(mode=f'low-delay P, key frame every {self.gop}', gop=self.gop,
                        reference_mode=self.reference_mode)
        if self.refine_steps:
            info['refine_steps'] = self.refine_steps
        if self.post_filter_views > 1:
            info['post_filter_views'] = self.post_filter_views
        return info

    def _encoder(self, calib):
        from xmodal_compress_ros.codec.pipeline import Encoder, EncoderConfig
        if calib not in self._encoders:
            # No twin for the zeros ablation: the encoder then codes scan-less images with the LiDAR
            # model and an all-zero map, and the decoder does the same for such packets.
            fallback = '' if self.variant == 'zeros' else self.fallback_model
            config = EncoderConfig(model=self.model, fallback_model=fallback, quality=0,
                                   refine_steps=self.refine_steps)
            self._encoders[calib] = Encoder(config, calib)
        return self._encoders[calib]

    def _get_decoder(self, size: Tuple[int, int]):
        from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig
        if self._decoder is None:
            config = DecoderConfig(models=self._held_models(), resolutions=(size,),
                                   post_filter_views=self.post_filter_views)
            self._decoder = Decoder(config)
        return self._decoder

    def _stream_coders(self, calib, size: Tuple[int, int]):
        """A fresh encoder and decoder: the stream starts with a key frame."""
        from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
        encoder = Encoder(EncoderConfig(model=self.model, fallback_model=self.fallback_model, quality=0,
                                        keyframe_interval=self.gop, pframe_model=self.pframe_model,
                                        reference_mode=self.reference_mode,
                                        **({'motion_search': 0} if self.name == 'xmodal-p-nomotion' else {})),
                          calib)
        # The decoder of the 'none' ablation predicts from no reference too; 'unaligned' sends no motion.
        mode = 'none' if self.reference_mode == 'none' else 'aligned'
        decoder = Decoder(DecoderConfig(models=self._held_models(self.pframe_model),
                                        resolutions=(size,), reference_mode=mode))
        return encoder, decoder

    def run(self, frames: Sequence[SensorFrame], setting: float, fps: float) -> CodedRun:
        """Encodes and decodes every frame at quality ``setting`` (image bytes only; scans aside)."""
        if self.reference_mode is not None:
            return self._run_stream(frames, int(setting))
        quality = int(setting)
        height, width = frames[0].image.shape[:2]
        decoder = self._get_decoder((width, height))
        sizes, decoded, enc_s, dec_s = [], [], [], []
        for frame in frames:
            encoder = self._encoder(frame.calib)
            scan = decoded_scan = None
            if self.variant == 'lidar':
                packet, scan = encoder.encode_scan(frame.points, frame.lidar_stamp_ns)
                decoded_scan = decoder.decode_lidar(packet)
            start = time.perf_counter()
            image = encoder.encode_image(frame.image, frame.image_stamp_ns, scan, quality)
            enc_s.append(time.perf_counter() - start)
            if image.image_only != (self.variant != 'lidar'):
                raise DatasetError(f'{self.name}: frame {frame.name} was coded '
                                   f'{"image-only" if image.image_only else "with LiDAR"}, '
                                   'not as this variant; '
                                   'the image size must match the calibration')
            start = time.perf_counter()
            out = decoder.decode_image(image.packet, decoded_scan)
            dec_s.append(time.perf_counter() - start)
            if out.lidar_missing:
                raise DatasetError(f'{self.name}: frame {frame.name} decoded without its scan')
            sizes.append(image.image_bytes)
            decoded.append(np.asarray(out.rgb))
        return CodedRun(tuple(sizes), tuple(decoded), tuple(enc_s), tuple(dec_s))

    def _run_stream(self, frames: Sequence[SensorFrame], quality: int) -> CodedRun:
        """The frames as one stream, in order: a key frame every ``gop``, P frames between."""
        height, width = frames[0].image.shape[:2]
        encoder, decoder = self._stream_coders(frames[0].calib, (width, height))
        sizes, decoded, enc_s, dec_s, kinds = [], [], [], [], []
        for frame in frames:
            if frame.calib != frames[0].calib:
                raise DatasetError(f'{self.name}: frame {frame.name} has another calibration than the '
                                   'first; a stream is one camera')
            packet, scan = encoder.encode_scan(frame.points, frame.lidar_stamp_ns)
            decoded_scan = decoder.decode_lidar(packet)
            start = time.perf_counter()
            image = encoder.encode_image(frame.image, frame.image_stamp_ns, scan, quality)
            enc_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = decoder.decode_image(image.packet, decoded_scan)
            dec_s.append(time.perf_counter() - start)
            if out.degraded or out.lidar_missing:
                raise DatasetError(f'{self.name}: frame {frame.name} decoded degraded: {out.degraded_reason}')
            kinds.append(image.frame_kind)
            sizes.append(image.image_bytes)
            decoded.append(np.asarray(out.rgb))
        return CodedRun(tuple(sizes), tuple(decoded), tuple(enc_s), tuple(dec_s), tuple(kinds))


def _training_summary(training: Dict) -> Dict[str, object]:
    """Sources, frame count and steps of a model file's training record, for the report."""
    config = training.get('config') if isinstance(training.get('config'), dict) else {}
    summary = {'training_sources': training.get('sources', []),
               'training_frames': len(training.get('frames', [])),
               'training_steps': training.get('total_steps', training.get('steps'))}
    if config.get('train_only'):
        summary['trained_only'] = config['train_only']
    return summary
