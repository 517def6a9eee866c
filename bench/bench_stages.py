"""Where each millisecond of a whole image encode and decode goes on the CPU, this tree against another.

One Encoder and one Decoder (``profile=True``) of each ``--tiers`` tier (:mod:`codec.tiers`:
quality, the LiDAR model and its image-only twin; fast, ``--fast-model``) code real
KITTI raw frames at 1242x375 (``$XMODAL_SHARED_DATA``, else ../shared/data beside the
repository; synthetic frames when neither holds them: the JSON's ``source`` says which), with the
LiDAR scan coded and decoded first, as ``xmodal bench-runtime`` does. Stages come from the pipeline's
``last_timings``; the integer hyper-synthesis and the rANS coder are split out of the entropy stages by
timing wrappers this script puts around ``_Codec.tables[2]`` and ``ConstrictionAnsCoder.encode/decode``
(instrumentation of this benchmark only). ``latent_other`` is the rest of the entropy stages (rounding,
clamping, index checks, copies), ``other`` the rest of the whole call (packet packing and parsing).
Every frame is a key frame unless ``--keyframe-interval N`` (N > 1): then the tiers' P-frame models
(``--pframe-model``, ``--fast-pframe-model``) code the frames between key frames, which are timed whole
(``encode_p_image``, ``decode_p_image``) and kept out of the key frames' stages.

``--baseline REV`` times the same script on the package of commit REV (exported with ``git archive`` to
a temporary folder) in alternating rounds with this tree, each in its own process, so both meet the same
machine load; it also checks that both trees write the same packets and parse the same integers. Tiers
alternate the same way, so ``--tiers quality,fast`` compares them side by side.
Prints p50/p99 per stage side by side and writes ``bench/results/stages_<tag>-<N>threads.json``.

    .venv/bin/python bench/bench_stages.py [--baseline 5c6d2e5] [--tiers quality,fast] [--frames 20]
                                           [--rounds 2] [--threads 2] [--quality 3]
                                           [--keyframe-interval 10]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]

#: Report order of the stages of each side.
ENCODE_STAGES = ('lidar_encode', 'preprocess', 'projection_encode', 'encoder_network', 'mean_network',
                 'integer_hyper_encode', 'rans_encode', 'latent_other_encode', 'other_encode', 'encode_image')
DECODE_STAGES = ('lidar_decode', 'integer_hyper_decode', 'rans_decode', 'latent_other_decode',
                 'projection_decode', 'decoder_network', 'other_decode', 'decode_image')
#: P frames (``--keyframe-interval`` > 1), timed whole.
P_STAGES = ('encode_p_image', 'decode_p_image')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--baseline', default='', help='commit to compare with (default: none)')
    parser.add_argument('--frames', type=int, default=20, help='timed frames per round and tree')
    parser.add_argument('--warmup', type=int, default=3, help='untimed frames per round first')
    parser.add_argument('--rounds', type=int, default=2, help='alternating rounds per tree')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads of the networks')
    parser.add_argument('--quality', type=int, default=3)
    parser.add_argument('--width', type=int, default=1242)
    parser.add_argument('--height', type=int, default=375)
    parser.add_argument('--tiers', default='quality', help='tiers to time, comma-separated (quality, fast)')
    parser.add_argument('--fast-model', default=str(REPO / 'models' / 'xmodal-hyperprior-fast'),
                        help='model stem of the fast tier')
    parser.add_argument('--keyframe-interval', type=int, default=1,
                        help='a key frame every N frames, P frames between (default 1: all key frames)')
    parser.add_argument('--pframe-model', default=str(REPO / 'models' / 'xmodal-pframe'),
                        help='P-frame model stem of the quality tier')
    parser.add_argument('--fast-pframe-model', default=str(REPO / 'models' / 'xmodal-pframe-fast'),
                        help='P-frame model stem of the fast tier')
    parser.add_argument('--out', type=Path, help='result JSON (default bench/results/stages_<tag>.json)')
    parser.add_argument('--child', type=Path, help=argparse.SUPPRESS)  # one tree's samples, to this file
    parser.add_argument('--tier', default='quality', help=argparse.SUPPRESS)  # the child's tier
    return parser.parse_args(argv)


class _Timer:
    """Accumulates milliseconds per key into ``current`` (reset per frame by the caller)."""

    def __init__(self):
        self.current: Dict[str, float] = {}

    def wrap(self, function, key: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.current[key] = self.current.get(key, 0.0) + (time.perf_counter() - start) * 1e3
        return timed


def measure(args) -> dict:
    """Time ``args.frames`` frames of the package on ``sys.path``; samples per stage and digests."""
    import torch

    from xmodal_compress_ros.codec import entropy
    from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
    from xmodal_compress_ros.runtime.samples import frames_for

    torch.set_num_threads(args.threads)
    frames = list(frames_for(args.width, args.height, 10))
    if args.tier == 'fast':
        stems = (args.fast_model, '', args.fast_pframe_model)
    else:
        stems = (str(REPO / 'models' / 'xmodal-lidar'), str(REPO / 'models' / 'xmodal-hyperprior'),
                 args.pframe_model)
    stream = args.keyframe_interval > 1
    common = dict(profile=True, threads=args.threads)
    encoder = Encoder(EncoderConfig(model=stems[0], fallback_model=stems[1], quality=args.quality,
                                    keyframe_interval=args.keyframe_interval,
                                    pframe_model=stems[2] if stream else '', **common),
                      frames[0].calib)
    decoder = Decoder(DecoderConfig(models=tuple(filter(None, stems if stream else stems[:2])),
                                    resolutions=((args.width, args.height),), **common))
    timer = _Timer()
    codecs = [encoder._main, encoder._fallback] + list(decoder._codecs.values())
    for codec in filter(None, codecs):
        z_table, y_table, hyper = codec.tables
        codec.tables = (z_table, y_table, timer.wrap(hyper, 'integer_hyper'))
    coder = entropy.ConstrictionAnsCoder
    coder.encode = timer.wrap(coder.encode, 'rans')
    coder.decode = timer.wrap(coder.decode, 'rans')

    samples: Dict[str, List[float]] = {stage: [] for stage in ENCODE_STAGES + DECODE_STAGES + P_STAGES}
    packets, latents = hashlib.sha256(), hashlib.sha256()
    minor_faults = []  # the process's, per timed frame (encode and decode)
    for index in range(args.warmup + args.frames):
        frame = frames[index % len(frames)]
        timer.current = {}
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        lidar_packet, scan = encoder.encode_scan(frame.points, index)
        lidar_encode = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        encoded = encoder.encode_image(frame.image, index, scan)
        encode_wall = (time.perf_counter() - start) * 1e3
        enc, enc_split = dict(encoder.last_timings), timer.current
        timer.current = {}
        start = time.perf_counter()
        decoded_scan = decoder.decode_lidar(lidar_packet)
        lidar_decode = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        decoded = decoder.decode_image(encoded.packet, decoded_scan)
        decode_wall = (time.perf_counter() - start) * 1e3
        dec, dec_split = dict(decoder.last_timings), timer.current
        if index < args.warmup:
            continue
        minor_faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        packets.update(lidar_packet + encoded.packet)
        for array in (decoded.latents.z_hat, decoded.latents.symbols, decoded.latents.indexes):
            latents.update(array.astype('<i4').tobytes())
        if decoded.frame_kind == 'P':
            samples['encode_p_image'].append(encode_wall)
            samples['decode_p_image'].append(decode_wall)
            continue
        named_encode = sum(enc[k] for k in ('preprocess', 'projection', 'encoder_network', 'mean_network',
                                            'entropy_encode'))
        named_decode = sum(dec[k] for k in ('entropy_decode', 'projection', 'decoder_network'))
        row = {
            'lidar_encode': lidar_encode, 'preprocess': enc['preprocess'],
            'projection_encode': enc['projection'], 'encoder_network': enc['encoder_network'],
            'mean_network': enc['mean_network'], 'integer_hyper_encode': enc_split['integer_hyper'],
            'rans_encode': enc_split['rans'],
            'latent_other_encode': enc['entropy_encode'] - enc_split['integer_hyper'] - enc_split['rans'],
            'other_encode': enc['total'] - named_encode, 'encode_image': enc['total'],
            'lidar_decode': lidar_decode, 'integer_hyper_decode': dec_split['integer_hyper'],
            'rans_decode': dec_split['rans'],
            'latent_other_decode': dec['entropy_decode'] - dec_split['integer_hyper'] - dec_split['rans'],
            'projection_decode': dec['projection'], 'decoder_network': dec['decoder_network'],
            'other_decode': dec['total'] - named_decode, 'decode_image': dec['total'],
        }
        for stage, value in row.items():
            samples[stage].append(value)
    return {'samples': samples, 'packets_sha256': packets.hexdigest(), 'latents_sha256': latents.hexdigest(),
            'source': frames[0].name, 'minor_faults': minor_faults}


def run_tree(root: Path, args, round_index: int, tier: str) -> dict:
    """``measure`` of ``tier`` in a child process that imports the package of ``root``."""
    from xmodal_compress_ros.runtime.samples import shared_data_dir

    with tempfile.TemporaryDirectory(prefix='xmodal-stages-') as folder:
        out = Path(folder) / 'samples.json'
        command = [sys.executable, str(Path(__file__).resolve()), '--child', str(out),
                   '--frames', str(args.frames), '--warmup', str(args.warmup), '--threads', str(args.threads),
                   '--quality', str(args.quality), '--width', str(args.width), '--height', str(args.height),
                   '--tier', tier, '--fast-model', args.fast_model]
        if args.keyframe_interval > 1:  # (a baseline from before these options times key frames only)
            command += ['--keyframe-interval', str(args.keyframe_interval),
                        '--pframe-model', args.pframe_model, '--fast-pframe-model', args.fast_pframe_model]
        # The frames of this tree's data folder for both trees (a baseline's own ../shared/data is absent).
        env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=str(args.threads),
                   XMODAL_SHARED_DATA=str(shared_data_dir()))
        print(f'round {round_index + 1}: {root} ({tier} tier)', flush=True)
        subprocess.run(command, env=env, check=True)
        return json.loads(out.read_text())


def export_commit(revision: str, folder: Path) -> str:
    """The files of ``revision`` under ``folder``; returns its full commit id."""
    commit = subprocess.run(['git', '-C', str(REPO), 'rev-parse', revision], check=True, capture_output=True,
                            text=True).stdout.strip()
    archive = subprocess.run(['git', '-C', str(REPO), 'archive', commit], check=True, capture_output=True)
    subprocess.run(['tar', '-x', '-C', str(folder)], input=archive.stdout, check=True)
    return commit


def summarise(runs: List[dict]) -> dict:
    from xmodal_compress_ros.runtime.benchmark import percentiles

    stages = {}
    for stage in ENCODE_STAGES + DECODE_STAGES + P_STAGES:
        values = [v for run in runs for v in run['samples'].get(stage, [])]
        if values:
            stages[stage] = {k: v for k, v in percentiles(values).items() if k in ('p50', 'p99', 'mean')}
    return {'stages_ms': stages, 'packets_sha256': runs[0]['packets_sha256'],
            'latents_sha256': runs[0]['latents_sha256'],
            'repeatable': len({(r['packets_sha256'], r['latents_sha256']) for r in runs}) == 1}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        args.child.write_text(json.dumps(measure(args)))
        return {}
    from xmodal_compress_ros.runtime.benchmark import device_description, device_tag

    trees = {'current': (REPO, subprocess.run(['git', '-C', str(REPO), 'rev-parse', 'HEAD'], check=True,
                                              capture_output=True, text=True).stdout.strip())}
    with tempfile.TemporaryDirectory(prefix='xmodal-baseline-') as folder:
        if args.baseline:
            trees = {'baseline': (Path(folder), export_commit(args.baseline, Path(folder))), **trees}
        tiers = args.tiers.split(',')
        sides_of = {(name if len(tiers) == 1 else f'{name}:{tier}'): (name, tier)
                    for name in trees for tier in tiers}
        runs: Dict[str, List[dict]] = {side: [] for side in sides_of}
        for round_index in range(args.rounds):
            for side, (name, tier) in sides_of.items():
                runs[side].append(run_tree(trees[name][0], args, round_index, tier))
    sides = {side: dict(commit=trees[name][1], tier=tier, **summarise(runs[side]))
             for side, (name, tier) in sides_of.items()}
    result = {'device': device_description('cpu'),
              'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'load_average_1_5_15': [round(x, 2) for x in os.getloadavg()],
              'image_size': [args.width, args.height], 'threads': args.threads, 'quality': args.quality,
              'keyframe_interval': args.keyframe_interval,
              'frames_per_round': args.frames, 'rounds': args.rounds,
              'source': next(iter(runs.values()))[0]['source'],
              'current_tree_dirty': bool(subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain'],
                                                        capture_output=True, text=True).stdout.strip()),
              'sides': sides}
    if args.baseline:
        pairs = [(b, c) for b in sides for c in sides if sides[b]['tier'] == sides[c]['tier']
                 and b.startswith('baseline') and c.startswith('current')]
        result['identical_packets_and_latents'] = all(
            sides[b][k] == sides[c][k] for b, c in pairs for k in ('packets_sha256', 'latents_sha256'))
    print_table(sides)
    if args.baseline:
        print(f"packets and parsed integers identical: {result['identical_packets_and_latents']}")
    out = args.out or REPO / 'bench' / 'results' / f'stages_{device_tag("cpu")}-{args.threads}threads.json'
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'wrote {out}')
    return result


def print_table(sides: dict) -> None:
    names = list(sides)
    print(f"{'stage (ms)':22s}" + ''.join(f'{name + " p50":>15s}{name + " p99":>15s}' for name in names))
    for stage in ENCODE_STAGES + DECODE_STAGES + P_STAGES:
        if all(stage in sides[n]['stages_ms'] for n in names):
            print(f'{stage:22s}' + ''.join(f"{sides[n]['stages_ms'][stage]['p50']:15.1f}"
                                           f"{sides[n]['stages_ms'][stage]['p99']:15.1f}" for n in names))


if __name__ == '__main__':
    main()
