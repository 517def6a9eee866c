"""The real encoder and decoder nodes across a :class:`harness.lossy_link.LossyLink`.

Encoder node, bag player and a :mod:`harness.link_probe` listener of the packets (local: what entered
the link) run in the encoder namespace, the decoder node and a listener of the decoded images and
/diagnostics in the decoder namespace. Latency is the listener's receive time minus the player's
publish time of the same camera stamp (``--publish-log``). Each run is bounded: the player ends with
its bag, the listener when it has been idle, and everything is stopped when the link closes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from harness import link_runs
from harness.lossy_link import LinkConfig, LossyLink
from xmodal_compress_ros.ros.node_main import match_times

DECODED_TOPIC = '/decoded/camera/image_raw'
PACKET_TOPICS = ('/camera/image_raw/xmodal', '/lidar/points/xmodal')
PACKET_TOPIC = '/camera/image_raw/xmodal'
ENCODER_STATUS = 'xmodal_compress: xmodal_encoder'
DECODER_STATUS = 'xmodal_compress: xmodal_decoder'
#: Frames published in the first seconds of playback may meet a packet writer still being discovered
#: across the link; they are reported apart from the steady state.
STARTUP_S = 1.5
# Listeners end by themselves after this long without a message (once playback has stopped).
LISTENER_IDLE_S = 8.0


def procedural_bag(
    out: Path, frames: int, width: int, height: int, points: int, rate_hz: float = 10.0
) -> Path:
    """A sensor bag of cheap procedural frames (``harness.packet_fuzz.procedural_frame``) at ``rate_hz``."""
    from harness.packet_fuzz import procedural_frame
    from xmodal_compress_ros.data.frames import SensorFrame
    from xmodal_compress_ros.data.rosbag_io import write_sensor_bag
    from xmodal_compress_ros.data.synthetic.sequence import kitti_calibration

    calib = kitti_calibration(width, height)
    start = 1_317_000_000_000_000_000
    period = int(1e9 / rate_hz)

    def generate():
        for k in range(frames):
            image, cloud = procedural_frame(width, height, points, seed=k)
            yield SensorFrame(
                image=image,
                points=cloud,
                calib=calib,
                lidar_stamp_ns=start + k * period,
                image_stamp_ns=start + k * period + 6_000_000,
                name=f'{k:06d}',
            )

    write_sensor_bag(out, generate())
    return out


@dataclass(frozen=True)
class NodeSetup:
    """What the nodes run with."""

    models: Tuple[str, str]
    bag: Path
    width: int
    height: int
    transport: link_runs.Transport
    quality: int = 0

    def encoder_params(self) -> Dict:
        return {
            'calibration_file': str(self.bag / 'calibration.yaml'),
            # The models given, whether or not a fast-tier model is installed (docs/tiers.md).
            'tier': 'quality',
            'model': self.models[0],
            'fallback_model': self.models[1],
            'quality': self.quality,
            'threads': 1,
            'qos_overrides': packet_qos('publisher', self.transport.qos),
        }

    def decoder_params(self) -> Dict:
        return {
            'models': list(self.models),
            'resolutions': [self.width, self.height],
            'threads': 1,
            'qos_overrides': packet_qos('subscription', self.transport.qos),
        }


def packet_qos(endpoint: str, reliability: str) -> Dict:
    """The ``qos_overrides`` parameter giving both packet topics' ``endpoint`` that reliability."""
    return {topic: {endpoint: {'reliability': reliability}} for topic in PACKET_TOPICS}


def _node(
    link: LossyLink, side: str, module: str, params: Dict, env: Dict, workdir: Path
) -> subprocess.Popen:
    from xmodal_compress_ros.ros.node_processes import write_params_file

    name = module.rsplit('.', 1)[-1]
    params_file = write_params_file(workdir / f'{name}.params.yaml', params)
    log = open(workdir / f'{name}.log', 'w')
    return link.popen(
        side,
        [sys.executable, '-m', module, '--ros-args', '--params-file', str(params_file)],
        env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


class _Events:
    """Lines a listener prints (``first TOPIC``, ``status NAME``), with the time each arrived."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.times: Dict[str, int] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self._cond:
                self.times.setdefault(line.strip(), time.time_ns())
                self._cond.notify_all()

    def wait(self, event: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: event in self.times, timeout=timeout)


def _start_listener(link: LossyLink, envs: Dict, workdir: Path, seconds: float):
    """The decoder-side listener (decoded images, /diagnostics), started first so it misses no image."""
    listener = link_runs.start_listener(
        link,
        envs['dec'],
        workdir / 'received.json',
        'reliable',
        seconds,
        LISTENER_IDLE_S,
        watch=[f'{DECODED_TOPIC}:image'],
        topic='',
        diagnostics=True,
    )
    return listener, _Events(listener)


def _start_decoder(link: LossyLink, setup: NodeSetup, envs: Dict, workdir: Path) -> None:
    _node(link, 'dec', 'xmodal_compress_ros.ros.decoder_node', setup.decoder_params(), envs['dec'], workdir)


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """Give ``proc`` ``grace`` s to end by itself, then interrupt it (a listener still writes its file)."""
    try:
        proc.wait(timeout=max(grace, 0.01))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def run_nodes(
    link: LossyLink,
    setup: NodeSetup,
    workdir: Path,
    seconds: float,
    late_decoder_s: float = 0.0,
    burst: Optional[Tuple[float, float]] = None,
    start_timeout: float = 180.0,
) -> Dict:
    """Stream the (looped) bag through both nodes; delivery, latency and the nodes' counters.

    Playback goes on until decoded images have flowed for ``seconds`` (after the burst, if any), so a
    slow start of a node on a busy machine does not eat into the measurement.

    Args:
        late_decoder_s: start the decoder side this long after playback starts (0: before).
        burst: (delay_s, seconds): once decoded images flow, wait delay_s, then 100 % loss for
            ``seconds``, then back to the link's loss.
        start_timeout: bound on waiting for each node (model loading on a busy machine).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    envs = link_runs.environments(setup.transport, workdir)
    bound = seconds + late_decoder_s + 3 * start_timeout
    listener, events = _start_listener(link, envs, workdir, bound)
    if not late_decoder_s:
        _start_decoder(link, setup, envs, workdir)
    # It ends by itself once the encoder has been quiet for LISTENER_IDLE_S (playback stopped) instead of
    # being interrupted: fresh-clone CI runs lost its file when it was stopped with SIGINT.
    sent_listener = link_runs.start_listener(
        link,
        envs['enc'],
        workdir / 'sent.json',
        setup.transport.qos,
        bound,
        LISTENER_IDLE_S,
        topic=PACKET_TOPIC,
        side='enc',
    )
    _node(link, 'enc', 'xmodal_compress_ros.ros.encoder_node', setup.encoder_params(), envs['enc'], workdir)
    publish_log = workdir / 'published.jsonl'
    player = link.popen(
        'enc',
        [
            sys.executable,
            '-m',
            'xmodal_compress_ros.ros.bag_player',
            str(setup.bag),
            '--publish-log',
            str(publish_log),
            '--wait-subscribers',
            str(start_timeout),
            '--loop-seconds',
            str(bound),
        ],
        envs['enc'],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marks: Dict[str, int] = {}
    if _wait_for_file(publish_log, player, timeout=start_timeout):
        if late_decoder_s:
            time.sleep(late_decoder_s)
            marks['decoder_started_ns'] = time.time_ns()
            _start_decoder(link, setup, envs, workdir)
        if events.wait(f'first {DECODED_TOPIC}', start_timeout) and burst is not None:
            time.sleep(burst[0])
            marks['burst_begin_ns'] = time.time_ns()
            link.set_loss(100)
            time.sleep(burst[1])
            link.set_loss(link.config.loss_percent)
            marks['burst_end_ns'] = time.time_ns()
        time.sleep(seconds)
    _stop(player, 0.0)
    for proc in (listener, sent_listener):
        _stop(proc, LISTENER_IDLE_S + 5.0)
    if f'status {DECODER_STATUS}' in events.times:
        marks['decoder_up_ns'] = events.times[f'status {DECODER_STATUS}']
    return summarise(workdir, publish_log, link.config, setup, marks)


def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until ``path`` has content (playback started) or ``proc`` ended; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_size:
            return True
        time.sleep(0.05)
    return path.exists() and path.stat().st_size > 0


def summarise(workdir: Path, publish_log: Path, config: LinkConfig, setup: NodeSetup, events: Dict) -> Dict:
    """Delivery, latency, the nodes' own counters and the scenario measurements of one run."""
    published = {}
    if publish_log.exists():
        for line in publish_log.read_text().splitlines():
            entry = json.loads(line)
            published[entry['stamp_ns']] = int(entry['time'] * 1e9)
    received = json.loads((workdir / 'received.json').read_text())
    sent = json.loads((workdir / 'sent.json').read_text())['records']
    # Image packets the encoder published (their stamp is the camera stamp), and the bytes of all packets.
    encoded = {int(r[2]) for r in sent if 'image' in r[5]}
    packet_bytes = {kind: [r[4] for r in sent if kind in r[5]] for kind in ('image', 'lidar')}
    decoded = {int(r[2]): r[3] for r in received['records'] if r[0] == DECODED_TOPIC}
    diagnostics = received.get('diagnostics', {})
    dec = diagnostics.get(DECODER_STATUS, {}).get('values', {})
    enc = diagnostics.get(ENCODER_STATUS, {}).get('values', {})
    # Steady state: from STARTUP_S after playback and the decoder are both up, outside a burst (+1 s).
    begin = max(min(published.values()) if published else 0, events.get('decoder_up_ns', 0)) + STARTUP_S * 1e9
    burst = (
        events.get('burst_begin_ns', 0),
        events.get('burst_end_ns', 0) + 1e9 if 'burst_end_ns' in events else 0,
    )
    steady = [s for s, t in published.items() if t >= begin and s in encoded and not burst[0] <= t < burst[1]]
    since = events.get('decoder_started_ns', 0)
    latencies = [(decoded[s] - published[s]) / 1e6 for s in decoded if s in published]
    counts = {
        k: int(dec.get(k, 0))
        for k in (
            'packets_in',
            'frames_in',
            'frames_out',
            'scans_out',
            'dropped.superseded',
            'errors',
            'lidar_missing',
        )
    }
    result = {
        'transport': setup.transport.name,
        'loss_percent': config.loss_percent,
        'delay_ms': config.delay_ms,
        'jitter_ms': config.jitter_ms,
        'image_size': [setup.width, setup.height],
        'published': len(published),
        'encoded': len(encoded),
        'packets_sent': len(sent),
        'packet_bytes_mean': {k: round(sum(v) / len(v)) if v else None for k, v in packet_bytes.items()},
        'encoder_dropped': {k: int(v) for k, v in enc.items() if k.startswith('dropped')},
        'decoded_received': len(decoded),
        'steady_encoded': len(steady),
        'steady_decoded': sum(1 for s in steady if s in decoded),
        'decoder': counts,
        'latency_ms': link_runs.percentiles(latencies),
        # Every image packet that reached the decoder was decoded and published, or superseded by a newer one.
        'every_arrival_decoded': bool(dec)
        and counts['frames_in'] == counts['frames_out'] + counts['dropped.superseded'] + counts['errors']
        and counts['errors'] == 0,
        'published_not_seen_by_listener': counts['frames_out'] - len(decoded),
        'published_before_listener_matched': _before_listener_matched(workdir, sent, received),
    }
    # Of the image packets the encoder sent (after start-up), the share decoded at the far end.
    result['delivery'] = round(result['steady_decoded'] / len(steady), 4) if steady else None
    result['packet_delivery'] = round(counts['packets_in'] / len(sent), 4) if sent else None
    result['packet_kbps'] = {k: float(dec.get(f'{k}_kbps', 0) or 0) for k in ('image', 'lidar')}
    if 'burst_end_ns' in events:
        result['burst'] = _after(
            events['burst_end_ns'],
            published,
            encoded,
            decoded,
            events['burst_end_ns'] - events['burst_begin_ns'],
        )
    if since:
        # From the decoder's first diagnostics (it is subscribed by then), and from the moment DDS
        # discovery matched it with the encoder: frames published after the match should all decode.
        up = events.get('decoder_up_ns') or since
        result['late_decoder'] = _after(up, published, encoded, decoded, 0)
        result['late_decoder']['decoder_up_after_start_s'] = round((up - since) / 1e9, 2)
        matched = _matched_ns(workdir, since)
        if matched:
            result['late_decoder']['after_match'] = _after(matched, published, encoded, decoded, 0)
            result['late_decoder']['matched_after_up_s'] = round((matched - up) / 1e9, 2)
    return result


def _matched_ns(workdir: Path, since_ns: int) -> Optional[int]:
    """When every link from the encoder to the listener had matched after ``since_ns`` (the decoder's
    start): the latest of the decoder's packet subscription match, the encoder's packet publisher match
    and the decoder's image publisher match (with the listener: images it publishes before that cannot
    be seen), as the nodes logged them (None if absent)."""
    ends = []
    for log, what in (('decoder_node.log', 'packet subscription'), ('encoder_node.log', 'packet publisher'),
                      ('decoder_node.log', 'image publisher')):
        path = workdir / log
        times = match_times(path.read_text() if path.exists() else '', what)
        later = [t for t in times if t >= since_ns]
        if not later:
            return None
        ends.append(min(later))
    return max(ends)


def _before_listener_matched(workdir: Path, sent: list, received: Dict) -> Optional[int]:
    """Image packets the encoder sent after the decoder's packet subscription matched (less 0.1 s for
    the link's delay) but before its decoded-image publisher and the listener had matched each other:
    the most frames the decoder can have published that a volatile listener could not receive. None
    when the match times were not logged."""
    matched = received.get('matched_ns', {}).get(DECODED_TOPIC)
    log = workdir / 'decoder_node.log'
    text = log.read_text() if log.exists() else ''
    packets = match_times(text, 'packet subscription')
    if matched is None or not packets:
        return None
    seen = max([matched] + match_times(text, 'image publisher')[:1])
    start = packets[0] - 100_000_000
    return sum(1 for r in sent if 'image' in r[5] and start <= r[3] <= seen)


def _after(
    moment_ns: int, published: Dict[int, int], encoded: set, decoded: Dict[int, int], burst_ns: int
) -> Dict:
    """The first encoded frame published after ``moment_ns`` that decoded; how many before it did not."""
    later = sorted((t, s) for s, t in published.items() if t >= moment_ns and s in encoded)
    missed = 0
    for publish_ns, stamp in later:
        if stamp in decoded:
            return {
                'frames_lost_first': missed,
                'first_decoded_after_ms': round((decoded[stamp] - moment_ns) / 1e6, 1),
                'its_latency_ms': round((decoded[stamp] - publish_ns) / 1e6, 1),
                'burst_s': round(burst_ns / 1e9, 2) if burst_ns else None,
            }
        missed += 1
    return {'frames_lost_first': missed, 'first_decoded_after_ms': None, 'its_latency_ms': None}


def bench(args, workdir: Path) -> Dict:
    """The nodes part of ``bench/bench_lossy_link.py``: steady loss per transport, a burst, a late decoder."""
    from harness.packet_fuzz import write_tiny_models

    width, height, points = args.node_width, args.node_height, args.node_points
    models = tuple(args.models.split(',')) if args.models else write_tiny_models(workdir / 'models')
    bag = procedural_bag(workdir / 'bag', 50, width, height, points, args.rate)
    runs = []
    link = lambda loss: LossyLink(LinkConfig(loss, args.delay_ms, args.jitter_ms))  # noqa: E731
    for name in (link_runs.RECOMMENDED, 'rtps-frag/best_effort', 'ip-frag/best_effort'):
        setup = NodeSetup(models, bag, width, height, link_runs.TRANSPORTS[name])
        for loss in [int(x) for x in args.loss.split(',')]:
            with link(loss) as lossy:
                result = run_nodes(
                    lossy, setup, workdir / f'{name.replace("/", "-")}-{loss}', args.node_seconds
                )
            runs.append(dict(result, scenario='steady'))
            print(json.dumps(_brief(runs[-1])), flush=True)
    for name in (link_runs.RECOMMENDED, 'rtps-frag/best_effort'):
        setup = NodeSetup(models, bag, width, height, link_runs.TRANSPORTS[name])
        for scenario, kwargs in (('burst', {'burst': (3.0, 2.0)}), ('late_decoder', {'late_decoder_s': 3.0})):
            with link(10) as lossy:
                result = run_nodes(
                    lossy,
                    setup,
                    workdir / f'{scenario}-{name.replace("/", "-")}',
                    args.node_seconds,
                    **kwargs,
                )
            runs.append(dict(result, scenario=scenario))
            print(json.dumps(_brief(runs[-1])), flush=True)
    return {'models': list(models), 'seconds_per_run': args.node_seconds, 'points': points, 'runs': runs}


def _brief(result: Dict) -> Dict:
    keys = (
        'scenario',
        'transport',
        'loss_percent',
        'encoded',
        'delivery',
        'packet_delivery',
        'every_arrival_decoded',
        'latency_ms',
        'burst',
        'late_decoder',
    )
    return {k: result[k] for k in keys if k in result}
