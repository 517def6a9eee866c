"""Codec names accepted by ``xmodal bench --codecs`` and the objects that run them.

Every codec offers ``settings``, ``setting_name``, ``unavailable_reason()``, ``describe()`` and
``run(frames, setting, fps) -> CodedRun`` (see :mod:`.baselines`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from xmodal_compress_ros.bench.baselines import baseline_codecs
from xmodal_compress_ros.errors import DatasetError

OUR_CODECS = ('xmodal', 'xmodal-image-only', 'xmodal-zeros', 'xmodal-refined', 'xmodal-ensemble', 'xmodal-p',
              'xmodal-p-unaligned', 'xmodal-p-noref', 'xmodal-p-nomotion', 'xmodal-fast', 'xmodal-p-fast')
#: Run only when named: refinement costs about a second of CPU per step and image, the ensemble's
#: decoder runs the post filter eight times.
OPT_IN_CODECS = ('xmodal-refined', 'xmodal-ensemble')
DEFAULT_REFINE_STEPS = 30
#: Views of xmodal-ensemble's post filter.
ENSEMBLE_VIEWS = 8


def all_codec_names() -> List[str]:
    """What ``all`` runs: ours first, then the baselines in the order of :func:`baseline_codecs`."""
    return [n for n in OUR_CODECS if n not in OPT_IN_CODECS] + list(baseline_codecs())


def parse_codec_names(text: str) -> List[str]:
    """``'all'`` or a comma-separated list; unknown names raise DatasetError listing the valid ones."""
    valid = all_codec_names() + list(OPT_IN_CODECS)
    if text.strip() == 'all':
        return all_codec_names()
    names = [n.strip() for n in text.split(',') if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise DatasetError(f'--codecs {text!r}: unknown codec {", ".join(unknown) or "(none given)"}; '
                           f'choose from all, {", ".join(valid)}')
    return list(dict.fromkeys(names))


def build_codecs(names: Sequence[str], gop: int = 10, model: Optional[str] = None,
                 fallback_model: Optional[str] = None, qualities: Optional[Sequence[int]] = None,
                 refine_steps: int = DEFAULT_REFINE_STEPS, pframe_model: Optional[str] = None,
                 fast_model: Optional[str] = None,
                 fast_pframe_model: Optional[str] = None) -> Dict[str, object]:
    """Name -> codec object for ``names`` (ours get the model stems and quality levels, the fast
    tier's variants ``fast_model`` and ``fast_pframe_model``; ``xmodal-refined`` the refinement steps,
    ``xmodal-ensemble`` the filter's views, the stream modes ``xmodal-p*`` the P-frame model and
    ``gop``, the baselines' key-frame interval)."""
    baselines = baseline_codecs(gop)
    codecs: Dict[str, object] = {}
    for name in names:
        if name in OUR_CODECS:
            from xmodal_compress_ros.bench.xmodal_codecs import XmodalCodec
            steps = refine_steps if name == 'xmodal-refined' else 0
            views = ENSEMBLE_VIEWS if name == 'xmodal-ensemble' else 1
            codecs[name] = XmodalCodec.create(name, model, fallback_model, qualities, refine_steps=steps,
                                              post_filter_views=views, gop=gop, pframe_model=pframe_model,
                                              fast_model=fast_model, fast_pframe_model=fast_pframe_model)
        else:
            codecs[name] = baselines[name]
    return codecs


def model_ids(codecs: Dict[str, object]) -> Dict[str, object]:
    """Model stems and ids of our codecs in the run (for the report)."""
    return {name: codec.describe().get('models', {}) for name, codec in codecs.items() if name in OUR_CODECS}
