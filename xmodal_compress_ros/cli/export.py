"""``xmodal export``: a model's float graphs as ONNX (+ manifest), optionally checked against PyTorch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = 'Export a model\'s float graphs to ONNX with a JSON manifest; --check compares them with PyTorch.'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', required=True, help='model stem (.safetensors + .json)')
    parser.add_argument('--out', required=True, type=Path, help='output folder (manifest.json + *.onnx)')
    parser.add_argument('--resolutions', default='',
                        help='static graphs for these image sizes, e.g. 1242x375,1920x1080 (padded to 64)')
    parser.add_argument('--dynamic', action='store_true',
                        help='graphs with symbolic height/width (default when --resolutions is not given)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (>= 17, default 17)')
    parser.add_argument('--check', action='store_true',
                        help='run every graph in ONNX Runtime and PyTorch on real frames (KITTI if present, '
                             'else synthetic) and report the max abs difference')
    parser.add_argument('--check-frames', type=int, default=2, help='frames per resolution for --check')


def parse_resolutions(text: str):
    """``'1242x375,1920x1080'`` -> ((1242, 375), (1920, 1080)); ParameterError on bad text."""
    from xmodal_compress_ros.errors import ParameterError

    sizes = []
    for item in filter(None, (part.strip() for part in text.split(','))):
        try:
            width, height = (int(v) for v in item.lower().split('x'))
        except ValueError:
            raise ParameterError(f'resolution {item!r} is not WIDTHxHEIGHT (e.g. 1242x375)') from None
        if not (1 <= width <= 0xFFFF and 1 <= height <= 0xFFFF):
            raise ParameterError(f'resolution {item!r} must have sides in 1..65535')
        sizes.append((width, height))
    return tuple(sizes)


def main(args: argparse.Namespace) -> int:
    from xmodal_compress_ros.codec.model_io import load_model
    from xmodal_compress_ros.codec.pipeline import resolve_model_stem
    from xmodal_compress_ros.runtime.export import check_export, export_model
    from xmodal_compress_ros.runtime.samples import frames_for

    resolutions = parse_resolutions(args.resolutions)
    dynamic = args.dynamic or not resolutions
    model = load_model(resolve_model_stem(args.model))
    manifest = export_model(model, args.out, resolutions=resolutions, dynamic=dynamic, opset=args.opset)
    result = {'out': str(args.out), 'model_id': manifest['model_id'], 'opset': manifest['opset'],
              'graphs': [g['file'] for g in manifest['graphs']],
              'op_types': sorted({op for g in manifest['graphs'] for op in g['op_types']})}
    if args.check:
        sizes = resolutions or ((1242, 375),)
        frames = [f for size in sizes for f in frames_for(*size, count=args.check_frames)]
        result['check'] = check_export(model, args.out, frames)
    print(json.dumps(result))
    return 0
