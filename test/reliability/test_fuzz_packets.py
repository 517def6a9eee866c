"""A CI-sized run of fuzz/fuzz_packets.py (the full run, 100,000 inputs, is in bench/results/); its corpus."""

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import packet_fuzz

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / 'test' / 'fuzz' / 'corpus'


def test_short_fuzz_run_finds_nothing(tmp_path):
    out = tmp_path / 'summary.json'
    subprocess.run(
        [
            sys.executable,
            str(REPO / 'fuzz' / 'fuzz_packets.py'),
            '--iterations',
            '2000',
            '--findings-dir',
            str(tmp_path / 'findings'),
            '--out',
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    summary = json.loads(out.read_text())
    assert summary['iterations'] == 2000
    assert summary['crashes'] == 0 and summary['hangs'] == 0 and summary['alloc_over_bound'] == 0, summary[
        'findings'
    ]
    assert summary['alloc_traced_inputs'] == 2000 and summary['peak_alloc'] > 0
    # The mutations reach past the CRC: into the section parsers, the entropy decoder and Draco.
    stages = {key.split(':')[1] for key in summary['outcomes']}
    assert {'rejected_crc', 'rejected_header', 'rejected_entropy', 'rejected_draco', 'decoded'} <= stages


def test_corpus_is_small_and_real(codec_kit):
    files = sorted(CORPUS.glob('*.bin'))
    assert 4 <= len(files) and sum(f.stat().st_size for f in files) < 200_000
    harness = packet_fuzz.DecodeHarness(codec_kit.decoder, codec_kit.scans)
    # The stored packets came from the same deterministic tiny models: they decode.
    assert [harness.feed(f.read_bytes()).status for f in files] == ['decoded'] * len(files)


def test_tiny_models_are_the_same_whatever_the_cpu_vector_width(tmp_path):
    # The stored corpus names the tiny models' ids: they must not depend on the host's SIMD kernels.
    script = (
        'import sys, json; from harness import packet_fuzz; '
        'stems = packet_fuzz.write_tiny_models(sys.argv[1]); '
        'stems += (packet_fuzz.write_tiny_pframe_model(sys.argv[1]),); '
        "print(json.dumps([json.load(open(s + '.json'))['model_id'] for s in stems]))"
    )
    # The host's own kernels, and the narrowest ones torch, oneDNN and MKL can be held to.
    narrow = dict(ATEN_CPU_CAPABILITY='default', ONEDNN_MAX_CPU_ISA='SSE41', MKL_ENABLE_INSTRUCTIONS='SSE4_2',
                  MKL_CBWR='COMPATIBLE')
    ids = []
    for name, knobs in (('host', {}), ('narrow', narrow)):
        env = dict(os.environ, **knobs)
        done = subprocess.run([sys.executable, '-c', script, str(tmp_path / name)], env=env, check=True,
                              capture_output=True, text=True, timeout=120)
        ids.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert ids[0] == ids[1]
