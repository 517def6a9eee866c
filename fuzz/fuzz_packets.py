"""Coverage-guided fuzzing of the packet decoder (atheris / libFuzzer); prints a JSON summary.

Every input goes through :class:`codec.pipeline.Decoder` exactly as the decoder node calls it
(``decode_lidar``, or ``scan_reference`` + ``decode_image``). An input passes if it decodes or raises
PacketError; any other exception is a crash, more than 1 s of CPU time a hang, and a tracemalloc
peak above :func:`harness.packet_fuzz.allocation_bound` (a budget per declared, capped pixel or point)
an allocation finding. Findings are counted, not fatal, and their inputs are saved.

Mutations: libFuzzer's own byte mutations (most then fail the CRC), the same with the CRC
recomputed, and packet-aware ones (truncate, bit flips, inflated lengths, mangled version and
header fields, splices, random bodies) mostly with the CRC recomputed, so they reach the section
parsers, the entropy decoder and Draco. Seeds: ``test/fuzz/corpus`` plus packets freshly coded by
the models in use. Without atheris (``--engine random``) the packet-aware mutations run alone.

    .venv/bin/python fuzz/fuzz_packets.py --iterations 100000 --out bench/results/fuzz_packets_cpu-2core.json
    .venv/bin/python fuzz/fuzz_packets.py --write-corpus test/fuzz/corpus   # regenerate the seed corpus
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # harness/ is in the checkout
CORPUS = REPO / 'test' / 'fuzz' / 'corpus'
#: Seconds after which a single input is killed as a hard hang (the 1 s CPU limit is checked per input).
WATCHDOG_S = 20
IMAGE_SIZE = (64, 64)
RSS_EVERY = 5000


def current_rss_bytes() -> int:
    """This process's resident set size now (Linux /proc)."""
    with open('/proc/self/statm') as handle:
        return int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=100_000, help='inputs to decode')
    parser.add_argument('--seed', type=int, default=0, help='random seed of the mutations')
    parser.add_argument(
        '--engine',
        choices=('auto', 'atheris', 'random'),
        default='auto',
        help='auto: atheris if installed, else random mutations without coverage',
    )
    parser.add_argument(
        '--models',
        default='',
        help='model stems LIDAR,TWIN[,PFRAME] (default: tiny untrained '
        'models written to a temporary folder; fast, and the decode path is the same)',
    )
    parser.add_argument('--corpus', type=Path, default=CORPUS, help='seed packets (*.bin)')
    parser.add_argument('--trace-every', type=int, default=1, help='trace allocations of every n-th input')
    parser.add_argument('--findings-dir', type=Path, default=None, help='save crashing/hanging inputs here')
    parser.add_argument('--out', type=Path, default=None, help='write the JSON summary here too')
    parser.add_argument(
        '--write-corpus',
        type=Path,
        default=None,
        help='write freshly coded seed packets to this folder and exit',
    )
    return parser.parse_args(argv)


def _version(package: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def pick_engine(choice: str):
    """The atheris module, or None for the random engine."""
    if choice == 'random':
        return None
    try:
        import atheris
    except ImportError:
        if choice == 'atheris':
            raise SystemExit('atheris is not installed: .venv/bin/pip install atheris torch==2.13.0')
        return None
    return atheris


def import_decoder(atheris):
    """Import the package, with coverage instrumentation of its own modules under atheris."""
    from harness import packet_fuzz

    if atheris is None:
        from xmodal_compress_ros.codec import pipeline
    else:
        # numba compiles the rANS kernels, the integer hyper-synthesis, the LiDAR coder and the point
        # checks from their bytecode, which instrumentation would break.
        with atheris.instrument_imports(include=['xmodal_compress_ros'],
                                        exclude=['xmodal_compress_ros.codec.rans_kernels',
                                                 'xmodal_compress_ros.codec.integer_hyper_kernels',
                                                 'xmodal_compress_ros.codec.lidar_predictive',
                                                 'xmodal_compress_ros.codec.point_checks']):
            from xmodal_compress_ros.codec import pipeline
    return packet_fuzz, pipeline


def build(args, workdir: Path, packet_fuzz, pipeline):
    """(encoder, decoder, seed packets, decoded seed scans by reference, model ids)."""
    import torch

    from xmodal_compress_ros.data.synthetic.sequence import kitti_calibration

    torch.set_num_threads(1)
    if args.models:
        stems = args.models.split(',')
    else:
        stems = list(packet_fuzz.write_tiny_models(workdir)) + [packet_fuzz.write_tiny_pframe_model(workdir)]
    calib = kitti_calibration(*IMAGE_SIZE)
    encoder = pipeline.Encoder(
        pipeline.EncoderConfig(model=stems[0], fallback_model=stems[1], quality=0, warmup=False), calib
    )
    decoder = pipeline.Decoder(
        pipeline.DecoderConfig(models=tuple(stems), resolutions=(IMAGE_SIZE,), warmup=False)
    )
    fresh = packet_fuzz.seed_packets(encoder)
    if len(stems) > 2:  # a P-frame model: key and P packets of a stream too
        stream = pipeline.Encoder(
            pipeline.EncoderConfig(model=stems[0], fallback_model=stems[1], pframe_model=stems[2],
                                   keyframe_interval=10, quality=0, warmup=False), calib
        )
        fresh += packet_fuzz.stream_seed_packets(stream)
    stored = [path.read_bytes() for path in sorted(Path(args.corpus).glob('*.bin'))]
    scans = {}
    for packet in fresh + stored:
        if packet[:4] == b'XMCL':
            try:
                scan = decoder.decode_lidar(packet)
            except Exception:  # a stored seed of another model version: still a useful input
                continue
            scans[(scan.scan_id, scan.stamp_ns)] = scan
    return encoder, decoder, fresh, stored, scans, sorted(decoder.model_ids)


def write_corpus(folder: Path, packets) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, packet in enumerate(packets):
        kind = 'lidar' if packet[:4] == b'XMCL' else 'image'
        (folder / f'{index:02d}-{kind}.bin').write_bytes(packet)
    print(f'wrote {len(packets)} packets ({sum(map(len, packets))} bytes) to {folder}')


class Run:
    """Counts inputs through the harness and finishes the run after ``iterations``."""

    def __init__(self, args, harness, stats, packet_fuzz, info):
        self.args, self.harness, self.stats, self.info = args, harness, stats, info
        self.packet_fuzz = packet_fuzz
        self.start = time.perf_counter()
        self.rss_start = packet_fuzz.peak_rss_bytes()
        # Current (not peak) RSS every RSS_EVERY inputs: a leak shows as a steady climb.
        self.rss_trace = []
        if args.findings_dir:
            args.findings_dir.mkdir(parents=True, exist_ok=True)
            stats.on_finding = self._save

    def _save(self, finding: str, data: bytes, outcome) -> None:
        (self.args.findings_dir / f'{finding}-{self.stats.iterations:07d}.bin').write_bytes(data)

    def one(self, data: bytes) -> bool:
        """Decode one input; True once the run is complete."""
        if self.args.findings_dir:
            # If this input hangs for good, the watchdog ends the process: this file is then the culprit.
            (self.args.findings_dir / 'in-flight.bin').write_bytes(data)
        faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
        self.stats.add(data, self.harness.feed(data))
        faulthandler.cancel_dump_traceback_later()
        if self.stats.iterations % RSS_EVERY == 0:
            self.rss_trace.append(round(current_rss_bytes() / 2**20, 1))
        return self.stats.iterations >= self.args.iterations

    def summary(self) -> dict:
        elapsed = time.perf_counter() - self.start
        peak = self.packet_fuzz.peak_rss_bytes()
        result = dict(self.info)
        result.update(self.stats.summary())
        result.update(
            {
                'elapsed_s': round(elapsed, 1),
                'inputs_per_s': round(self.stats.iterations / max(elapsed, 1e-9), 1),
                'peak_rss_mb': round(peak / 2**20, 1),
                'rss_growth_mb': round((peak - self.rss_start) / 2**20, 1),
                f'rss_mb_every_{RSS_EVERY}': self.rss_trace,
                'load_average_end': [round(x, 2) for x in os.getloadavg()],
            }
        )
        return result

    def finish(self) -> None:
        result = self.summary()
        text = json.dumps(result, indent=1)
        print(text, flush=True)
        if self.args.out:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            self.args.out.write_text(text + '\n')


def run_random(run: Run, seeds, packet_fuzz, seed: int) -> None:
    rng = random.Random(seed)
    pool = list(seeds)
    for data in pool:
        if run.one(data):
            return
    while True:
        data = rng.choice(pool)
        for _ in range(rng.choice((1, 1, 2, 3))):
            data = packet_fuzz.mutate(data, rng, reseal_crc=rng.random() < 0.85, pool=pool)
        if run.one(data):
            return


def run_atheris(run: Run, seeds, packet_fuzz, atheris, args, workdir: Path) -> None:
    corpus = workdir / 'corpus'
    corpus.mkdir()
    for index, data in enumerate(seeds):
        (corpus / f'seed{index:03d}').write_bytes(data)
    pool = list(seeds)

    def test_one_input(data: bytes) -> None:
        if run.one(bytes(data)):
            run.finish()
            os._exit(0)  # libFuzzer would otherwise keep going until its own -runs

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        choice = rng.random()
        if choice < 0.25:
            out = atheris.Mutate(data, max_size)
        elif choice < 0.5:
            out = packet_fuzz.reseal(atheris.Mutate(data, max_size))
        else:
            # A quarter of the time from an original seed: libFuzzer's corpus drifts towards tiny
            # inputs, and whole packets are what reach the entropy decoder and Draco.
            base = data if choice < 0.75 else rng.choice(pool)
            out = packet_fuzz.mutate(base, rng, reseal_crc=rng.random() < 0.85, pool=pool)
        return out[:max_size]

    argv = [
        sys.argv[0],
        f'-runs={args.iterations * 2 + len(seeds)}',
        f'-seed={args.seed + 1}',
        f'-timeout={WATCHDOG_S}',
        '-rss_limit_mb=6144',
        '-max_len=65536',
        '-print_final_stats=0',
        str(corpus),
    ]
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def main(argv=None) -> int:
    args = parse_args(argv)
    atheris = pick_engine(args.engine)
    packet_fuzz, pipeline = import_decoder(atheris)
    with tempfile.TemporaryDirectory(prefix='xmodal-fuzz-') as tmp:
        workdir = Path(tmp)
        encoder, decoder, fresh, stored, scans, model_ids = build(args, workdir, packet_fuzz, pipeline)
        if args.write_corpus:
            write_corpus(args.write_corpus, fresh)
            return 0
        seeds = fresh + stored
        harness = packet_fuzz.DecodeHarness(decoder, scans, trace_every=args.trace_every)
        for data in seeds:  # warm-up: first calls allocate caches that later inputs reuse
            harness.feed(data)
        info = {
            'engine': 'atheris' if atheris else 'random',
            'seed': args.seed,
            'atheris_version': _version('atheris') if atheris else None,
            'models': model_ids,
            'seeds': len(seeds),
            'stored_seeds': len(stored),
            'machine': f'{platform.machine()} {os.cpu_count()}-core CPU',
            'python': platform.python_version(),
            'load_average_start': [round(x, 2) for x in os.getloadavg()],
        }
        run = Run(args, harness, packet_fuzz.FuzzStats(), packet_fuzz, info)
        if atheris is None:
            run_random(run, seeds, packet_fuzz, args.seed)
            run.finish()
        else:
            run_atheris(run, seeds, packet_fuzz, atheris, args, workdir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
