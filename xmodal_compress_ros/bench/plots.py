"""Figures of a benchmark report: rate-distortion curves and side-by-side crops at matched bit rate."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# One colour per codec family; line style says chroma and mode.
FAMILY_COLOURS = {
    'xmodal': '#d62728', 'xmodal-image-only': '#ff9896', 'xmodal-zeros': '#8c564b',
    'xmodal-refined': '#e377c2', 'xmodal-ensemble': '#bcbd22',
    'jpeg': '#1f77b4', 'webp': '#17becf', 'h264': '#2ca02c', 'h265': '#9467bd', 'av1': '#ff7f0e',
}


def family(codec: str) -> str:
    """'h265-444-p' -> 'h265'; our three variants are their own families."""
    if codec.startswith('xmodal'):
        return codec
    return codec.split('-')[0]


def _style(codec: str) -> Dict[str, object]:
    ours = codec.startswith('xmodal')
    return {
        'color': FAMILY_COLOURS.get(family(codec), '#7f7f7f'),
        'linestyle': ':' if codec == 'xmodal-zeros' else ('--' if codec.endswith('-p') else '-'),
        'linewidth': 2.8 if codec == 'xmodal' else (1.8 if ours else 1.3),
        'marker': 'o' if ours else ('s' if '-444' in codec else '.'),
        'markersize': 5 if ours else 4,
        'markerfacecolor': 'white' if '-444' in codec else None,
        # Ours on top, the main variant topmost: the ablation often lies right under it.
        'zorder': 4 if codec == 'xmodal' else (3 if ours else 2),
    }


def _axes_limits(curves: Sequence[dict], key: str, max_bpp: float) -> Tuple[float, float]:
    values = [c[key] for c in curves if c['bpp'] <= max_bpp and np.isfinite(c[key])]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = 0.04 * (high - low or 1.0)
    return low - pad, high + pad


def _panels(codecs: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """4:2:0 codecs and 4:4:4 codecs side by side; ours and the JPEG anchor appear in both."""
    shared = [c for c in codecs if c.startswith('xmodal') or c == 'jpeg']
    full = [c for c in codecs if '-444' in c]
    subsampled = [c for c in codecs if c not in full and c not in shared]
    if not full:
        return [('', list(codecs))]
    return [('4:2:0 baselines', shared + subsampled), ('4:4:4 baselines', shared + full)]


def rd_plot(curves: Sequence[dict], key: str, ylabel: str, title: str, path: Path,
            max_bpp: Optional[float] = None) -> None:
    """Quality ``key`` against bpp, one line per codec (4:2:0 and 4:4:4 panels), written to ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    codecs = list(dict.fromkeys(c['codec'] for c in curves))
    if max_bpp is None:
        max_bpp = max(c['bpp'] for c in curves)
    panels = _panels(codecs)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 6.2), dpi=100, sharey=True,
                             squeeze=False)
    for ax, (label, names) in zip(axes[0], panels):
        for codec in names:
            points = sorted((c['bpp'], c[key]) for c in curves if c['codec'] == codec)
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=codec, **_style(codec))
        ax.set_xlim(0, max_bpp)
        ax.set_ylim(*_axes_limits(curves, key, max_bpp))
        ax.set_xlabel('bits per pixel (image only)')
        ax.set_title(label, fontsize=10)
        ax.grid(True, color='#dddddd', linewidth=0.6)
        ax.spines[['top', 'right']].set_visible(False)
        # Below the axes: inside, it would cover the curves somewhere whatever the data.
        ax.legend(fontsize=8, frameon=False, loc='upper center', bbox_to_anchor=(0.5, -0.12), ncol=4)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def crops_figure(panels: List[Tuple[str, np.ndarray]], path: Path, title: str) -> None:
    """A grid of labelled image crops (first panel: the original), written to ``path`` (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    cols = 2 if len(panels) > 3 else len(panels)
    rows = (len(panels) + cols - 1) // cols
    h, w = panels[0][1].shape[:2]
    panel_w = 4.6
    fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols, panel_w * h / w * rows + 0.45 * rows + 0.4),
                             dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for ax, (label, image) in zip(axes.flat, panels):
        ax.imshow(image, interpolation='nearest')
        ax.set_title(label, fontsize=9, loc='left')
    fig.suptitle(title, fontsize=11, x=0.01, ha='left')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
