"""Export a codec's float graphs to ONNX with a JSON manifest, and check them against PyTorch.

Layout of an export folder::

    manifest.json            model id, architecture, opset; per graph: file, sha256, inputs,
                             outputs, op types
    encoder.onnx, mean.onnx, decoder.onnx           dynamic H/W (``dynamic=True``)
    encoder_1280x384.onnx, ...                      static, one per padded resolution (``resolutions``)

Only operators that TensorRT 10's ONNX parser supports are allowed (:data:`TENSORRT_OPS`); an
export containing anything else fails. Quantisation, the integer scale path and entropy coding
are not in the graphs.
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from xmodal_compress_ros.errors import ModelFileError
from xmodal_compress_ros.runtime.graphs import (GRAPH_NAMES, GraphSpec, example_inputs, graph_modules,
                                                graph_specs, quality_gains, quality_plane)

MANIFEST_NAME = 'manifest.json'
MANIFEST_VERSION = 1
MIN_OPSET = 17
PAD = 64

#: ONNX operators of the float graphs that TensorRT 10's ONNX parser supports (subset of
#: onnx-tensorrt docs/operators.md, every entry supported since TensorRT 8.5 and in 10.x).
TENSORRT_OPS = frozenset({
    'Abs', 'Add', 'AveragePool', 'BatchNormalization', 'Cast', 'Ceil', 'Clip', 'Concat', 'Constant',
    'ConstantOfShape', 'Conv', 'ConvTranspose', 'DepthToSpace', 'Div', 'Elu', 'Equal', 'Erf', 'Exp', 'Expand',
    'Flatten', 'Floor', 'Gather', 'Gemm', 'GlobalAveragePool', 'GlobalMaxPool', 'Greater', 'HardSigmoid',
    'Identity', 'LeakyRelu', 'Less', 'Log', 'MatMul', 'Max', 'MaxPool', 'Min', 'Mul', 'Neg', 'Pad', 'Pow',
    'PRelu', 'Reciprocal', 'ReduceMax', 'ReduceMean', 'ReduceSum', 'Relu', 'Reshape', 'Resize', 'Round',
    'Shape', 'Sigmoid', 'Sign', 'Slice', 'Softmax', 'Softplus', 'SpaceToDepth', 'Split', 'Sqrt', 'Squeeze',
    'Sub', 'Sum', 'Tanh', 'Tile', 'Transpose', 'Unsqueeze', 'Where',
})


def padded(size: Tuple[int, int]) -> Tuple[int, int]:
    """(width, height) rounded up to multiples of 64."""
    return tuple(v + (-v) % PAD for v in size)


def export_graph(module: torch.nn.Module, spec: GraphSpec, height: int, width: int, dynamic: bool,
                 opset: int = MIN_OPSET) -> bytes:
    """One graph as ONNX bytes, traced at a padded ``height`` x ``width``; H/W symbolic if ``dynamic``."""
    if opset < MIN_OPSET:
        raise ModelFileError(f'opset {opset} is too old: use {MIN_OPSET} or newer')
    inputs = example_inputs(spec, height, width)
    axes = {t.name: t.dynamic_axes() for t in spec.inputs + spec.outputs} if dynamic else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns about traced shape comparisons that are constant here.
        warnings.simplefilter('ignore')
        torch.onnx.export(module, tuple(inputs.values()), buffer, input_names=list(spec.input_names),
                          output_names=list(spec.output_names), dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    data = buffer.getvalue()
    unsupported = sorted(set(op_types(data)) - TENSORRT_OPS)
    if unsupported:
        raise ModelFileError(f'graph {spec.name!r} uses operators TensorRT 10 does not support: '
                             f'{unsupported}')
    return data


def op_types(onnx_bytes: bytes) -> List[str]:
    """Sorted operator types of an ONNX model (top-level graph)."""
    import onnx

    return sorted({node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node})


def export_model(model, out_dir, resolutions: Sequence[Tuple[int, int]] = (), dynamic: bool = True,
                 opset: int = MIN_OPSET) -> Dict:
    """Write the graphs of ``model`` (loaded with ``load_model``) and ``manifest.json`` to ``out_dir``.

    Args:
        resolutions: image sizes (width, height) for static graphs (padded to multiples of 64).
        dynamic: also (or only) write graphs with symbolic H/W.
    Returns the manifest.
    """
    if not dynamic and not resolutions:
        raise ModelFileError('nothing to export: pass resolutions, dynamic=True, or both')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs, modules = graph_specs(model), graph_modules(model)
    entries = []
    variants = [(None, padded((256, 128)))] if dynamic else []
    variants += [(tuple(r), padded(r)) for r in resolutions]
    for resolution, (pw, ph) in variants:
        for name in GRAPH_NAMES:
            data = export_graph(modules[name], specs[name], ph, pw, dynamic=resolution is None, opset=opset)
            file_name = f'{name}.onnx' if resolution is None else f'{name}_{pw}x{ph}.onnx'
            (out_dir / file_name).write_bytes(data)
            entries.append(_graph_entry(specs[name], file_name, data, resolution, (pw, ph)))
    manifest = {
        'format_version': MANIFEST_VERSION,
        'model_id': model_id(model),
        'architecture': model.registry_name,
        'config': model.config,
        'quality_levels': model.quality_levels,
        'opset': opset,
        'torch_version': torch.__version__,
        'graphs': entries,
        'notes': 'float parts only; quantisation, integer scale indexes and entropy coding run outside '
                 '(codec.latent_coding). Graph "gain" inputs take runtime.graphs.quality_gains(model, q), '
                 'the decoder\'s "quality" input (models with a post filter) '
                 'runtime.graphs.quality_plane(model, q).',
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + '\n')
    return manifest


def _graph_entry(spec: GraphSpec, file_name: str, data: bytes, resolution, padded_size) -> Dict:
    static = resolution is not None
    shape = (lambda t: list(t.concrete_shape(padded_size[1], padded_size[0]))) if static else \
        (lambda t: list(t.symbolic_shape()))
    return {
        'name': spec.name,
        'file': file_name,
        'sha256': hashlib.sha256(data).hexdigest(),
        'resolution': list(resolution) if static else None,
        'padded_resolution': list(padded_size) if static else None,
        'inputs': [{'name': t.name, 'shape': shape(t), 'dtype': t.dtype} for t in spec.inputs],
        'outputs': [{'name': t.name, 'shape': shape(t), 'dtype': t.dtype} for t in spec.outputs],
        'op_types': op_types(data),
    }


def model_id(model) -> str:
    """The model id from its metadata (models built in memory have none: ModelFileError)."""
    meta = getattr(model, 'metadata', None)
    if not meta or 'model_id' not in meta:
        raise ModelFileError('the model has no model_id: load it from its model files '
                             '(codec.model_io.load_model)')
    return meta['model_id']


def read_manifest(out_dir) -> Dict:
    """The manifest of an export folder; ModelFileError if missing or unreadable."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f'{path} not found: run `xmodal export` first') from None
    except ValueError as exc:
        raise ModelFileError(f'{path} is not valid JSON ({exc}): export again') from None
    if manifest.get('format_version') != MANIFEST_VERSION:
        raise ModelFileError(f'{path}: manifest version {manifest.get("format_version")!r} unsupported; '
                             f'expected {MANIFEST_VERSION}: export again')
    return manifest


def dynamic_graphs(model, cache_dir, opset: int = MIN_OPSET) -> Dict[str, bytes]:
    """The dynamic-H/W ONNX graphs of ``model``, exported once into ``cache_dir/onnx/<model_id>-opset<N>``.

    A cached export is reused only if its manifest names this model id and opset, its graphs take and
    give the tensors this build's graphs do (an older build's export of the same weights may not), and
    every file matches its recorded sha256; otherwise it is rewritten.
    """
    folder = Path(cache_dir) / 'onnx' / f'{model_id(model)}-opset{opset}'
    specs = graph_specs(model)
    graphs = _cached_dynamic(folder, model_id(model), opset, specs)
    if graphs is None:
        export_model(model, folder, dynamic=True, opset=opset)
        graphs = _cached_dynamic(folder, model_id(model), opset, specs)
    return graphs


def _cached_dynamic(folder: Path, expected_id: str, opset: int,
                    specs: Dict[str, GraphSpec]) -> Optional[Dict[str, bytes]]:
    try:
        manifest = read_manifest(folder)
    except ModelFileError:
        return None
    if manifest.get('model_id') != expected_id or manifest.get('opset') != opset:
        return None
    graphs = {}
    for entry in manifest.get('graphs', []):
        if entry.get('resolution') is not None:
            continue
        spec = specs.get(entry.get('name'))
        names = tuple([t.get('name') for t in entry.get(side, [])] for side in ('inputs', 'outputs'))
        if spec is None or names != (list(spec.input_names), list(spec.output_names)):
            return None
        path = folder / entry['file']
        data = path.read_bytes() if path.is_file() else b''
        if hashlib.sha256(data).hexdigest() != entry.get('sha256'):
            return None
        graphs[entry['name']] = data
    return graphs if set(graphs) == set(GRAPH_NAMES) else None


@torch.no_grad()
def frame_graph_inputs(model, rgb: np.ndarray, condition: Optional[np.ndarray],
                       quality: int) -> Dict[str, Dict]:
    """Realistic float32 inputs of the three graphs for one frame, computed with the PyTorch graphs.

    ``rgb`` (H, W, 3) uint8; ``condition`` the model's uint8 conditioning map, (H, W) or (H, W, C)
    (:func:`condition_map`), or None: zeros.
    """
    from xmodal_compress_ros.codec.latent_coding import round_half_up

    specs, modules = graph_specs(model), graph_modules(model)
    height, width = rgb.shape[:2]
    pw, ph = padded((width, height))
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    x = torch.nn.functional.pad(x, (0, pw - width, 0, ph - height), mode='replicate')
    planes = torch.zeros(1, max(model.condition_channels, 1), ph, pw)
    if condition is not None:
        values = torch.from_numpy(condition.astype(np.float32))
        planes[0, :, :height, :width] = values.permute(2, 0, 1) if values.ndim == 3 else values
    gain_enc, gain_dec = quality_gains(model, quality)
    name = model.condition_name
    enc_in = {'x': x, name: planes, 'gain': gain_enc}
    enc_in = {k: enc_in[k] for k in specs['encoder'].input_names}
    enc_out = dict(zip(specs['encoder'].output_names, modules['encoder'](*enc_in.values())))
    z_hat = torch.from_numpy(round_half_up(enc_out['z'].numpy()).astype(np.float32))
    mean_in = {'z_hat': z_hat, 'c_hyper': enc_out.get('c_hyper')}
    mean_in = {k: mean_in[k] for k in specs['mean'].input_names}
    mu = modules['mean'](*mean_in.values())
    symbols = torch.from_numpy(round_half_up((enc_out['y_g'] - mu).numpy()).astype(np.float32))
    # A P frame's means lean half on the reference's latent: the comparison covers that path too.
    dec_in = {'z_hat': z_hat, 'symbols': symbols, name: planes, 'gain': gain_dec,
              'analysis_gain': gain_enc, 'weight': torch.full_like(enc_out['y_g'], 0.5),
              'quality': quality_plane(model, quality)}
    return {'encoder': enc_in, 'mean': mean_in,
            'decoder': {k: dec_in[k] for k in specs['decoder'].input_names}}


def condition_map(model, frame) -> Optional[np.ndarray]:
    """The uint8 conditioning map ``frame`` (a SensorFrame) gives ``model``: the LiDAR depth map (H, W)
    of a LiDAR-conditioned model; for the P-frame codec a reference (H, W, 4), the frame itself aligned
    by its own scan's depth and no motion (every pixel valid, as a still camera's stream gives); None
    for an image-only model."""
    if model.uses_lidar:
        from xmodal_compress_ros.geometry.projection import depth_condition

        return depth_condition(frame.points, frame.calib)
    if model.condition_name == 'reference':
        from xmodal_compress_ros.codec.reference import reference_planes
        from xmodal_compress_ros.geometry.warp import camera_intrinsics, dense_depth

        K, _ = camera_intrinsics(frame.calib)
        return reference_planes(frame.image, dense_depth(frame.points, frame.calib), K, np.eye(4))
    return None


def check_export(model, out_dir, frames: Iterable, quality: int = 0) -> List[Dict]:
    """Run every graph of an export folder in ONNX Runtime and in PyTorch on ``frames``.

    ``frames``: objects with ``image`` (RGB uint8), ``points`` and ``calib`` (SensorFrame). Static
    graphs are checked on frames of their resolution only. Returns one record per graph file
    with the max abs difference over all outputs and frames.
    """
    import onnxruntime

    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if manifest['model_id'] != model_id(model):
        raise ModelFileError(f'{out_dir} holds model {manifest["model_id"]}, not {model_id(model)}: '
                             'export again')
    modules, specs = graph_modules(model), graph_specs(model)
    sessions = {e['file']: onnxruntime.InferenceSession(str(out_dir / e['file']),
                                                        providers=['CPUExecutionProvider'])
                for e in manifest['graphs']}
    diffs = {e['file']: [] for e in manifest['graphs']}
    for frame in frames:
        height, width = frame.image.shape[:2]
        inputs = frame_graph_inputs(model, frame.image, condition_map(model, frame), quality)
        for entry in manifest['graphs']:
            if entry['resolution'] is not None and tuple(entry['resolution']) != (width, height):
                continue
            name = entry['name']
            feed = {k: v.numpy() for k, v in inputs[name].items()}
            got = sessions[entry['file']].run(list(specs[name].output_names), feed)
            with torch.no_grad():
                ref = modules[name](*inputs[name].values())
            ref = ref if isinstance(ref, tuple) else (ref,)
            diffs[entry['file']].append(max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref)))
    return [{'graph': e['name'], 'file': e['file'], 'frames': len(diffs[e['file']]),
             'max_abs_diff': max(diffs[e['file']]) if diffs[e['file']] else None} for e in manifest['graphs']]
