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
            'xmodal-refined': 'lidar', 'xmodal-ensemble': 'lidar'}


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
    _encoders: Dict[object, object] = field(default_factory=dict, repr=False)
    _decoder: Optional[object] = field(default=None, repr=False)

    @classmethod
    def create(cls, name: str, model: Optional[str] = None, fallback_model: Optional[str] = None,
               qualities: Optional[Sequence[int]] = None, refine_steps: int = 0,
               post_filter_views: int = 1) -> 'XmodalCodec':
        """``name`` from :data:`VARIANTS`; ``None`` model stems take the pipeline defaults."""
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
        codec = cls(name, model or defaults.model, fallback_model or defaults.fallback_model, (),
                    refine_steps=refine_steps, post_filter_views=post_filter_views)
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

    def _stems(self) -> Tuple[str, ...]:
        return (self.model, self.fallback_model) if self.variant == 'image-only' else (self.model,)

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
            config = DecoderConfig(models=(self.model, self.fallback_model), resolutions=(size,),
                                   post_filter_views=self.post_filter_views)
            self._decoder = Decoder(config)
        return self._decoder

    def run(self, frames: Sequence[SensorFrame], setting: float, fps: float) -> CodedRun:
        """Encodes and decodes every frame at quality ``setting`` (image bytes only; scans aside)."""
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


def _training_summary(training: Dict) -> Dict[str, object]:
    """Sources, frame count and steps of a model file's training record, for the report."""
    config = training.get('config') if isinstance(training.get('config'), dict) else {}
    summary = {'training_sources': training.get('sources', []),
               'training_frames': len(training.get('frames', [])),
               'training_steps': training.get('total_steps', training.get('steps'))}
    if config.get('train_only'):
        summary['trained_only'] = config['train_only']
    return summary
