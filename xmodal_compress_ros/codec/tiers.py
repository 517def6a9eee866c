"""Tiers: which models an encoder codes key frames with, chosen once from the device or by the user.

* ``quality``: the full models, the LiDAR-conditioned ``xmodal-lidar`` with its image-only twin
  ``xmodal-hyperprior`` (g_s of 48 channels and an 8-block post filter).
* ``fast``: ``xmodal-hyperprior-fast``, image-only: the twin's encoder, entropy model and g_s with a
  small post filter (16 channels, 2 blocks, against 32 and 8): a tenth of the decoder's
  multiply-adds.
  The LiDAR stream is still coded and sent.
* ``auto``: fast when the networks run on the CPU, quality on CUDA; quality when the fast model's
  files are missing (the reason says so).

P frames (``keyframe_interval`` > 1) use ``xmodal-pframe`` in the quality tier and
``xmodal-pframe-fast`` in the fast tier: the same model with the fast tier's small post filter (the
full one when the fast one's files are missing). Both tiers write the same packet format (each packet
names its model id), so one decoder holding :data:`DECODER_MODELS` decodes either. See
``docs/tiers.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

from xmodal_compress_ros.errors import ModelFileError, ParameterError

TIERS = ('auto', 'fast', 'quality')
QUALITY_MODEL = 'models/xmodal-lidar'
QUALITY_FALLBACK_MODEL = 'models/xmodal-hyperprior'
FAST_MODEL = 'models/xmodal-hyperprior-fast'
PFRAME_MODEL = 'models/xmodal-pframe'
FAST_PFRAME_MODEL = 'models/xmodal-pframe-fast'
#: The key-frame models of both tiers.
INTRA_MODELS = (QUALITY_MODEL, QUALITY_FALLBACK_MODEL, FAST_MODEL)
#: The P-frame models of both tiers.
PFRAME_MODELS = (PFRAME_MODEL, FAST_PFRAME_MODEL)
#: What a decoder holds by default: the models of both tiers, key and P frames.
DECODER_MODELS = INTRA_MODELS + PFRAME_MODELS


@dataclass(frozen=True)
class TierChoice:
    """The tier an encoder codes with, its key-frame and P-frame models and why it was chosen.

    ``fallback_model`` is '' in the fast tier: its model is image-only, it needs no twin.
    """

    tier: str
    model: str
    fallback_model: str
    pframe_model: str
    reason: str

    def describe(self) -> str:
        """One line for logs and printouts: ``tier: fast (device cpu: ...)``."""
        return f'tier: {self.tier} ({self.reason})'


def choose_tier(requested: str, device: str, model: str = QUALITY_MODEL,
                fallback_model: str = QUALITY_FALLBACK_MODEL, fast_model: str = FAST_MODEL,
                available: Optional[Callable[[str], bool]] = None, pframe_model: str = PFRAME_MODEL,
                fast_pframe_model: str = FAST_PFRAME_MODEL) -> TierChoice:
    """The tier for ``requested`` (auto, fast or quality) on ``device`` (cpu, cuda, cuda:N).

    Args:
        model, fallback_model, pframe_model: the quality tier's stems.
        fast_model, fast_pframe_model: the fast tier's stems (``pframe_model`` where the fast one is
            missing: P frames are optional, so their model never decides the tier).
        available: whether a stem's model files exist (default: :func:`pipeline.model_available`).

    Raises:
        ParameterError: ``requested`` is not a tier.
        ModelFileError: ``fast`` was asked for and ``fast_model`` is missing.
    """
    if requested not in TIERS:
        raise ParameterError(f'tier {requested!r} is not supported: use one of {", ".join(TIERS)}')
    if available is None:
        from xmodal_compress_ros.codec.pipeline import model_available as available
    quality = TierChoice('quality', model, fallback_model, pframe_model, '')
    fast_pframe = fast_pframe_model if available(fast_pframe_model) else pframe_model
    fast = TierChoice('fast', fast_model, '', fast_pframe, '')
    if requested == 'quality':
        return replace(quality, reason='as requested')
    if requested == 'fast':
        if not available(fast_model):
            raise ModelFileError(f'tier fast needs the fast model {fast_model} (.safetensors + .json), which '
                                 'is not there: train it (docs/tiers.md) or use tier quality')
        return replace(fast, reason='as requested')
    if device.startswith('cuda'):
        return replace(quality, reason=f'device {device}: the full models keep up on a GPU')
    if not available(fast_model):
        return replace(quality, reason=f'device {device}, but the fast model {fast_model} is missing: '
                                       'the full models, slow on a CPU')
    return replace(fast, reason=f'device {device} without a GPU: image-only with a small post filter, '
                                'a tenth of the full decoder\'s multiply-adds')
