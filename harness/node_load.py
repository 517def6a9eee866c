"""Long or heavy runs of the encoder and decoder nodes: a looped bag, periodic samples, a summary.

``bench/soak.py`` (10 Hz for minutes: memory trend, latency stability) and ``bench/bench_overload.py``
(images faster than the encoder can code them: bounded latency, counted drops, flat memory) share
this. The nodes run as processes on a private localhost domain (:class:`ros.stream_session.StreamSession`),
the bag player is restarted whenever the bag ends, and every loop stops by itself at its deadline.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from harness import resource_monitor as rm

ENCODER = 'xmodal_encoder'
DECODER = 'xmodal_decoder'


def add_run_arguments(parser, workdir: str) -> None:
    """The options every node-load script takes: what to play, which models, where to write."""
    parser.add_argument('--bag', type=Path, default=None,
                        help='sensor bag (default: xmodal synth into --workdir)')
    parser.add_argument('--frames', type=int, default=30, help='frames to synthesize when no --bag is given')
    parser.add_argument('--models', default='',
                        help='LIDAR,TWIN stems (default: models/ if present, else tiny)')
    parser.add_argument('--quality', type=int, default=5)
    parser.add_argument('--workdir', type=Path, default=Path(workdir))
    parser.add_argument('--out', type=Path, default=None, help='write the JSON here too')


@dataclass
class RunSetup:
    """The bag, the models and the node parameters of one run, and the result's opening fields."""

    bag: Path
    encoder: Dict
    decoder: Dict
    result: Dict


def prepare_run(args) -> RunSetup:
    """Resolve :func:`add_run_arguments`' options: synthesize the bag and write tiny models if needed."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.models:
        models, which = tuple(args.models.split(',')), 'given'
    else:
        models, which = default_models(args.workdir)
    bag = args.bag or synthetic_bag(args.workdir, args.frames)
    size = bag_image_size(bag)
    encoder, decoder = node_params(bag, models, size, args.quality)
    result = {
        'machine': f'{platform.machine()} {os.cpu_count()}-core CPU',
        'models': list(models),
        'model_kind': which,
        'bag': str(bag),
        'image_size': list(size),
        'load_average_start': load_average(),
    }
    return RunSetup(bag, encoder, decoder, result)


def load_average() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_result(result: Dict, out: Optional[Path]) -> None:
    """The full JSON to ``out`` (if given); the summary without the samples to stdout."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps({k: v for k, v in result.items() if k != 'samples'}, indent=1))


def default_models(workdir: Path) -> Tuple[Tuple[str, str], str]:
    """The repository's trained models if present, else tiny untrained ones; and which it is."""
    from xmodal_compress_ros.codec.model_io import model_paths
    from harness.packet_fuzz import write_tiny_models
    from xmodal_compress_ros.codec.pipeline import resolve_model_stem

    stems = ('models/xmodal-lidar', 'models/xmodal-hyperprior')
    if all(model_paths(resolve_model_stem(s))[1].is_file() for s in stems):
        return stems, 'trained (models/)'
    return write_tiny_models(workdir / 'models'), 'tiny untrained (models/ missing)'


def synthetic_bag(workdir: Path, frames: int) -> Path:
    """A bag made by ``xmodal synth`` (KITTI-sized synthetic drive at 10 Hz), reused if already there."""
    from xmodal_compress_ros.cli.__main__ import main as xmodal

    bag = workdir / 'bag'
    if (
        not bag.exists()
        and xmodal(['synth', '--out', str(workdir), '--frames', str(frames), '--workers', '1']) != 0
    ):
        raise RuntimeError(f'xmodal synth failed to write {bag}')
    return bag


def bag_image_size(bag: Path) -> Tuple[int, int]:
    from xmodal_compress_ros.data import rosbag_io

    for event in rosbag_io.read_sensor_bag(bag, info_topic=None):
        if event.kind == rosbag_io.IMAGE:
            height, width = event.payload.shape[:2]
            return int(width), int(height)
    raise RuntimeError(f'{bag} has no images')


def node_params(bag: Path, models: Tuple[str, str], size: Tuple[int, int], quality: int) -> Tuple[Dict, Dict]:
    """Encoder and decoder parameters: one CPU thread each (they share the machine with the player)."""
    calibration = bag / 'calibration.yaml'
    if not calibration.is_file():
        calibration = bag.parent / 'calibration.yaml'
    encoder = {
        'calibration_file': str(calibration),
        'tier': 'quality',  # the models given, whether or not a fast-tier model is installed
        'model': models[0],
        'fallback_model': models[1],
        'quality': quality,
        'threads': 1,
    }
    decoder = {'models': list(models), 'resolutions': list(size), 'threads': 1}
    return encoder, decoder


class LoopedPlayback:
    """Plays ``bag`` at ``rate`` in a loop (``bag_player --loop-seconds``) on a thread for ``seconds``."""

    def __init__(self, session, bag: Path, rate: float, seconds: float, log_dir: Path) -> None:
        self.session, self.bag, self.rate, self.seconds = session, bag, rate, seconds
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.log_dir / 'published.jsonl'
        self.errors: List[str] = []
        self._thread = threading.Thread(target=self._run, name='xmodal-looped-player', daemon=True)

    def start(self) -> 'LoopedPlayback':
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.session.play(
                self.bag,
                rate=self.rate,
                publish_log=self.log,
                timeout=self.seconds + 120,
                extra_args=['--loop-seconds', str(self.seconds)],
            )
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            self.errors.append(f'{type(exc).__name__}: {exc}'[:300])

    def wait(self) -> None:
        self._thread.join(timeout=self.seconds + 180)

    def published(self) -> Dict[int, List[float]]:
        return rm.read_publish_logs([self.log])

    def active_seconds(self) -> float:
        """Seconds from the first to the last image published."""
        times = [t for ts in self.published().values() for t in ts]
        return max(times) - min(times) if len(times) > 1 else 0.0


def diagnostics_values(session, node: str) -> Dict[str, str]:
    return session.probe.node_diagnostics(node)


def run_sampled(session, seconds: float, period: float) -> rm.Sampler:
    """Sample memory and the nodes' counters every ``period`` s for ``seconds``."""
    sampler = rm.Sampler({p.name: p.popen.pid for p in session.processes}, period)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(period, max(0.0, end - time.monotonic())))
        enc, dec = diagnostics_values(session, ENCODER), diagnostics_values(session, DECODER)
        entry = sampler.sample(
            {
                'images_received': len(session.probe.images),
                'encoder_frames_out': int(enc.get('frames_out', 0) or 0),
                'encoder_dropped': int(enc.get('dropped', 0) or 0),
                'decoder_frames_out': int(dec.get('frames_out', 0) or 0),
                'decoder_dropped': int(dec.get('dropped.superseded', 0) or 0),
                'decoder_errors': int(dec.get('errors', 0) or 0),
                'encode_ms_p99': float(enc.get('encode_latency_p99_ms', 0) or 0),
                'decode_ms_p99': float(dec.get('decode_latency_p99_ms', 0) or 0),
            }
        )
        print(
            {
                k: entry[k]
                for k in ('t', 'encoder_rss_mb', 'decoder_rss_mb', 'images_received', 'encoder_dropped')
                if k in entry
            },
            flush=True,
        )
    return sampler


def latencies(session, playback: LoopedPlayback, sampler: rm.Sampler) -> List[Tuple[float, float]]:
    """End-to-end (receive time, latency) of every decoded image; also per sample window into ``sampler``.

    Computed once playback is over, from the complete publish log.
    """
    images = list(session.probe.images)
    (playback.log_dir / 'received.jsonl').write_text(
        ''.join(json.dumps({'stamp_ns': i.stamp_ns, 'time': i.received}) + '\n' for i in images)
    )
    pairs = rm.end_to_end([(i.stamp_ns, i.received) for i in images], playback.published())
    previous = sampler.start
    for entry in sampler.samples:
        until = sampler.start + entry['t']
        entry['window_latency_ms'] = rm.percentiles_ms([x for t, x in pairs if previous <= t < until])
        previous = until
    return pairs


def memory_trends(sampler: rm.Sampler, warmup_s: float) -> Dict:
    """Per memory series: its trend after warm-up, and over the second half of the run (the settled state)."""
    out: Dict = {}
    for name in sampler.pids:
        for kind in ('rss', 'gpu'):
            key = f'{name}_{kind}_mb'
            times, values = sampler.series(key)
            if any(v is not None for v in values):
                out[f'{key}_trend'] = rm.trend(times, values, warmup_s)
                out[f'{key}_second_half'] = rm.trend(times, values, times[-1] / 2 if times else 0.0)
    return out


def summarise(
    sampler: rm.Sampler, latencies: List[Tuple[float, float]], warmup_s: float, start_time: float
) -> Dict:
    """Memory trends after warm-up, latency percentiles overall and per half after warm-up."""
    out: Dict = {'samples': sampler.samples, 'warmup_s': warmup_s}
    out.update(memory_trends(sampler, warmup_s))
    steady = [(t - start_time, x) for t, x in latencies if t - start_time >= warmup_s]
    half = (steady[0][0] + steady[-1][0]) / 2 if steady else 0.0
    out['latency_ms'] = rm.percentiles_ms([x for _, x in latencies])
    out['latency_ms_after_warmup'] = {
        'first_half': rm.percentiles_ms([x for t, x in steady if t < half]),
        'second_half': rm.percentiles_ms([x for t, x in steady if t >= half]),
    }
    return out


def growth_ok(summary: Dict, limit_percent: float = 5.0, suffix: str = '_trend') -> Optional[bool]:
    """True if no memory series (suffix `_trend`: after warm-up, or `_second_half`) grew over the limit."""
    growths = [
        v['growth_percent']
        for k, v in summary.items()
        if k.endswith(suffix) and v['growth_percent'] is not None
    ]
    return None if not growths else all(g <= limit_percent for g in growths)
