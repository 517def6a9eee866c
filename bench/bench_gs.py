"""g_s, GDN and the graphs on the CPU as trained and in their inference forms, side by side in one process.

"as trained" is the model as its file defines it; "inference forms" is the same model after
:func:`codec.inference_forms.prepare_for_cpu` (GDN elementwise, g_s's last transposed convolution as a
convolution and a pixel shuffle, layers reading concatenated context split by their inputs), which the
torch backend applies on a CPU. Both run as the torch backend
runs them (``torch.inference_mode``, activations and weights in :data:`torch_backend.MEMORY_FORMAT`).
Timed, for ``models/xmodal-hyperprior`` and the fast tier (``models/xmodal-hyperprior-fast``, or when it
is absent the same structure: the twin with an untrained 16-channel, 2-block post filter, which costs the
same), and the fast tier's P-frame model (``models/xmodal-pframe-fast``, when present): the whole g_s,
the decoder graph and the encoder graph; and alone, g_s's half-resolution IGDN and
its last layer, in NHWC and NCHW. Every variant runs once per round, in turn, at each thread count, so
all meet the same machine load; the medians over the rounds are reported, with the largest difference of
the outputs. Writes bench/results/gs_<tag>.json.

    PYTHONPATH=$PWD python bench/bench_gs.py [--rounds 9] [--threads 1,2] [--size 1280x384]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from xmodal_compress_ros.codec.inference_forms import prepare_for_cpu
from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.codec.pipeline import model_available
from xmodal_compress_ros.runtime.benchmark import device_description, device_tag
from xmodal_compress_ros.runtime.graphs import example_inputs, graph_modules, graph_specs
from xmodal_compress_ros.runtime.torch_backend import MEMORY_FORMAT

REPO = Path(__file__).resolve().parents[1]
FORMATS = {'nhwc': torch.channels_last, 'nchw': torch.contiguous_format}
FAST_POST_FILTER = (16, 2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=9, help='timed rounds (after 1 untimed)')
    parser.add_argument('--threads', default='1,2', help='comma-separated CPU thread counts')
    parser.add_argument('--size', default='1280x384', help='padded WxH (1242x375 pads to 1280x384)')
    parser.add_argument('--twin', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--fast', default=str(REPO / 'models' / 'xmodal-hyperprior-fast'))
    parser.add_argument('--pframe', default=str(REPO / 'models' / 'xmodal-pframe-fast'),
                        help='a P-frame model whose graphs read concatenated context (skipped when absent)')
    parser.add_argument('--note', default='', help='free text stored in the JSON (e.g. the machine load)')
    parser.add_argument('--out', type=Path, help='result JSON (default bench/results/gs_<tag>.json)')
    return parser.parse_args(argv)


def fast_structure(twin):
    """The fast tier's structure from the twin: its weights and an (untrained) small post filter."""
    config = dict(twin.config, post_filter=list(FAST_POST_FILTER))
    fast = type(twin)(**config)
    state = {k: v for k, v in twin.state_dict().items() if not k.startswith('post_filter.')}
    missing = fast.load_state_dict(state, strict=False).missing_keys
    assert all(k.startswith('post_filter.') for k in missing), missing
    return fast.eval()


def models(args) -> dict:
    twin = load_model(args.twin).eval()
    fast = load_model(args.fast).eval() if model_available(args.fast) else fast_structure(twin)
    fast_name = 'fast' if model_available(args.fast) else f'fast structure (post filter {FAST_POST_FILTER})'
    found = {'xmodal-hyperprior': twin, fast_name: fast}
    if model_available(args.pframe):
        found[Path(args.pframe).name] = load_model(args.pframe).eval()
    return found


def fast_name_of(loaded: dict) -> str:
    """The key of the fast tier's model in :func:`models`' result."""
    return next(name for name in loaded if name.startswith('fast'))


def as_run(module, memory_format, forms: bool):
    """A copy of ``module`` as the torch backend holds it, in ``forms`` or as trained."""
    module = copy.deepcopy(module).eval()
    if forms:
        prepare_for_cpu(module)
    return module.to(memory_format=memory_format)


def laid_out(tensors, memory_format):
    return tuple(t.contiguous(memory_format=memory_format if t.dim() == 4 else torch.contiguous_format)
                 for t in tensors)


def cases(args, loaded: dict) -> dict:
    """name -> {variant: (callable, inputs)}: the variants of one case compute the same function."""
    width, height = (int(v) for v in args.size.split('x'))
    generator = torch.Generator().manual_seed(0)
    found = {}
    for model_name, model in loaded.items():
        specs = graph_specs(model)
        y_hat = torch.randint(-3, 4, specs['mean'].outputs[0].concrete_shape(height, width),
                              generator=generator).float()
        for variant, forms in (('as trained', False), ('inference forms', True)):
            run = as_run(model, MEMORY_FORMAT, forms)
            graphs = graph_modules(run)
            if all(isinstance(f, torch.nn.Identity) for f in model.g_s.fusions):  # runs without context
                inputs = laid_out((y_hat,), MEMORY_FORMAT)
                found.setdefault(f'{model_name}: g_s', {})[variant] = (run.g_s, inputs)
            # The fast tier encodes with the twin's g_a: its encoder graph is the twin's.
            fast = model is loaded[fast_name_of(loaded)]
            for graph in ('decoder',) if fast else ('decoder', 'encoder'):
                inputs = laid_out(example_inputs(specs[graph], height, width).values(), MEMORY_FORMAT)
                found.setdefault(f'{model_name}: {graph} graph', {})[variant] = (graphs[graph], inputs)
    g_s = loaded['xmodal-hyperprior'].g_s
    half = torch.randn(1, g_s.igdn3.beta_sqrt.shape[0], height // 2, width // 2, generator=generator)
    for fmt, memory_format in FORMATS.items():
        inputs = laid_out((half,), memory_format)
        for layer in ('igdn3', 'deconv4'):
            for variant, forms in (('as trained', False), ('inference forms', True)):
                module = getattr(as_run(g_s, memory_format, forms), layer)
                found.setdefault(f'g_s.{layer} alone, {fmt}', {})[variant] = (module, inputs)
    return found


def time_in_turn(found: dict, rounds: int, threads: list) -> list:
    samples = {(case, variant, n): [] for case, variants in found.items() for variant in variants
               for n in threads}
    with torch.inference_mode():
        for index in range(1 + rounds):
            for n in threads:
                torch.set_num_threads(n)
                for case, variants in found.items():
                    for variant, (module, inputs) in variants.items():
                        start = time.perf_counter()
                        module(*inputs)
                        if index:
                            samples[case, variant, n].append((time.perf_counter() - start) * 1e3)
        rows = []
        for case, variants in found.items():
            outputs = {variant: module(*inputs) for variant, (module, inputs) in variants.items()}
            first = [o[0] if isinstance(o, tuple) else o for o in outputs.values()]
            diff = max(float((o - first[0]).abs().max()) for o in first)
            for n in threads:
                p50 = {v: round(float(np.median(samples[case, v, n])), 1) for v in variants}
                rows.append({'case': case, 'threads': n, 'max_abs_difference': diff, 'p50_ms': p50})
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = [int(n) for n in args.threads.split(',')]
    load_before = os.getloadavg()
    found = cases(args, models(args))
    rows = time_in_turn(found, args.rounds, threads)
    for row in rows:
        before, after = row['p50_ms']['as trained'], row['p50_ms']['inference forms']
        print(f"{row['case']:56s} {row['threads']} thr  as trained {before:7.1f} ms  inference forms "
              f"{after:7.1f} ms  x{before / after:4.2f}  max diff {row['max_abs_difference']:.1e}")
    result = {'device': device_description('cpu'),
              'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'size': args.size, 'rounds': args.rounds, 'memory_format': str(MEMORY_FORMAT),
              'load_average_before_after': [round(v, 2) for v in load_before + os.getloadavg()],
              'note': args.note, 'rows': rows}
    out = args.out or REPO / 'bench' / 'results' / f'gs_{device_tag("cpu")}.json'
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'wrote {out}')
    return result


if __name__ == '__main__':
    main()
