"""Model files: ``<stem>.safetensors`` (tensors only) + ``<stem>.json`` (metadata). Never pickles.

The JSON names the registered architecture and its constructor ``config``, the quality levels with
their lambdas, how the model was trained, and a ``model_id``: SHA-256 over every tensor (sorted by
name: name, dtype, shape, raw little-endian bytes). Loading recomputes the id, so a tampered or
mismatched weight file is refused instead of silently decoding garbage; bitstreams can carry the
id to prove which model made them.

The safetensors header repeats ``format_version``, ``architecture``, ``config`` and ``model_id``
(files written before it did still load), so an edited JSON is caught even where the weights alone
could not tell (e.g. ``conditioning``), and loading names the key that differs. Every tensor's name,
shape and dtype must match what the architecture expects. Pickle checkpoints (``torch.save``) are
refused: unpickling can run arbitrary code.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Union

import numpy as np
import torch

from xmodal_compress_ros.errors import ModelFileError

FORMAT_VERSION = 1
MODEL_ID_HEX_CHARS = 32
#: Metadata keys repeated in the safetensors header and checked against the JSON on load.
HEADER_KEYS = ('format_version', 'architecture', 'config', 'model_id')
PICKLE_SUFFIXES = ('.pt', '.pth', '.ckpt', '.pkl', '.pickle', '.bin', '.tar')

PathLike = Union[str, Path]


def model_paths(stem_or_path: PathLike) -> tuple:
    """(``stem.safetensors``, ``stem.json``) for a stem or either file's path."""
    path = Path(stem_or_path)
    if path.suffix in PICKLE_SUFFIXES:
        raise ModelFileError(f'{path} looks like a pickle checkpoint ({path.suffix}); pickles are refused '
                             'because loading them can run arbitrary code: export the model with `xmodal '
                             'train` (.safetensors + .json) and give its stem')
    if path.suffix in ('.safetensors', '.json'):
        path = path.with_suffix('')
    return path.with_name(path.name + '.safetensors'), path.with_name(path.name + '.json')


def compute_model_id(tensors: Dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 (first :data:`MODEL_ID_HEX_CHARS` chars) of the tensors, sorted by name."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode('utf-8') + b'\0')
        digest.update(str(tensor.dtype).encode('ascii') + b'\0')
        digest.update(json.dumps(list(tensor.shape)).encode('ascii') + b'\0')
        digest.update(tensor.numpy().astype(tensor.numpy().dtype.newbyteorder('<'), copy=False).tobytes())
    return digest.hexdigest()[:MODEL_ID_HEX_CHARS]


def save_model(model, stem: PathLike, metadata: Dict = None) -> Dict:
    """Write the model's tensors (incl. its integer tables) and metadata; returns the metadata.

    The model must have been through ``update()`` so the integer tables exist.
    """
    from safetensors.torch import save_file

    tensors = model.export_tensors()
    tensor_path, json_path = model_paths(stem)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        'format_version': FORMAT_VERSION,
        'architecture': model.registry_name,
        'config': model.config,
        'model_id': compute_model_id(tensors),
        'qualities': [{'index': i, 'lambda': lam} for i, lam in enumerate(model.lambdas)],
        'parameter_count': int(sum(p.numel() for p in model.parameters())),
        'tensor_bytes': int(sum(t.numel() * t.element_size() for t in tensors.values())),
    }
    meta.update(metadata or {})
    save_file(tensors, str(tensor_path), metadata=_header_metadata(meta))
    json_path.write_text(json.dumps(meta, indent=1) + '\n')
    return meta


def _header_metadata(meta: Dict) -> Dict[str, str]:
    """The JSON keys the safetensors header repeats, as the strings safetensors stores."""
    return {key: json.dumps(meta[key], sort_keys=True) for key in HEADER_KEYS}


def _check_not_pickle(tensor_path: Path) -> None:
    """Refuse torch.save/pickle files under a .safetensors name before any parser sees them."""
    with open(tensor_path, 'rb') as handle:
        head = handle.read(9)
    # safetensors: u64 header length, then the JSON header's '{'. torch.save: a zip; plain pickle: PROTO 2..5.
    is_zip = head[:4] == b'PK\x03\x04'
    is_pickle = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    if head[8:9] != b'{' and (is_zip or is_pickle):
        raise ModelFileError(f'{tensor_path} is a pickle / torch.save checkpoint, not safetensors; pickles '
                             'are refused because loading them can run arbitrary code: re-export with '
                             '`xmodal train`')


def _check_header(tensor_path: Path, meta: Dict) -> None:
    """The safetensors header's copy of the metadata must equal the JSON's (when the file has one)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(tensor_path), 'pt') as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f'{tensor_path} is not a readable safetensors file ({exc})') from None
    expected = _header_metadata(meta)
    for key in HEADER_KEYS:
        if key in header and header[key] != expected[key]:
            raise ModelFileError(f'{tensor_path} and its .json disagree on {key!r}: weights file says '
                                 f'{header[key]}, .json says {expected[key]}: the .json was edited or '
                                 'belongs to another model; restore the pair written together')


def check_dtypes(model, tensors: Dict[str, torch.Tensor], source: str) -> None:
    """Every tensor of the model's state_dict must have the dtype the model was built with."""
    for name, target in model.state_dict().items():
        if name in tensors and tensors[name].dtype != target.dtype:
            raise ModelFileError(f'{source}: tensor {name} has dtype {tensors[name].dtype}, expected '
                                 f'{target.dtype}: re-export the model instead of converting the file')


def read_metadata(stem_or_path: PathLike) -> Dict:
    """The JSON metadata beside a model file, checked for its version and required keys."""
    _, json_path = model_paths(stem_or_path)
    if not json_path.is_file():
        raise ModelFileError(f'model metadata {json_path} not found: give the stem of a model written by '
                             '`xmodal train` (both .safetensors and .json)')
    try:
        meta = json.loads(json_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f'{json_path} is not valid JSON ({exc}): restore the file') from None
    if meta.get('format_version') != FORMAT_VERSION:
        raise ModelFileError(f'{json_path}: format_version {meta.get("format_version")!r} unsupported; '
                             f'this version reads {FORMAT_VERSION}: re-export the model')
    for key in ('architecture', 'config', 'model_id'):
        if key not in meta:
            raise ModelFileError(f'{json_path} lacks the key {key!r}: re-export the model')
    return meta


def earlier_runs(meta: Dict) -> List[Dict]:
    """The training runs a model file was fine-tuned from, newest first (``history``).

    Files written before ``history`` existed name their one predecessor ``backbone``.
    """
    if 'history' in meta:
        return list(meta['history'])
    return [meta['backbone']] if isinstance(meta.get('backbone'), dict) else []


def load_model(stem_or_path: PathLike):
    """Rebuild a model from its files, verifying the id and every tensor's name and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from xmodal_compress_ros.codec.models import get_model_class

    meta = read_metadata(stem_or_path)
    tensor_path, _ = model_paths(stem_or_path)
    if not tensor_path.is_file():
        raise ModelFileError(f'model weights {tensor_path} not found beside its .json')
    cls = get_model_class(meta['architecture'])
    _check_not_pickle(tensor_path)
    _check_header(tensor_path, meta)
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f'{tensor_path} is not a readable safetensors file ({exc})') from None
    model_id = compute_model_id(tensors)
    if model_id != meta['model_id']:
        raise ModelFileError(f'{tensor_path}: model_id {model_id} does not match {meta["model_id"]} in its '
                             '.json: the weights were modified or belong to another model')
    try:
        model = cls(**meta['config'])
    except TypeError as exc:
        raise ModelFileError(f'{meta["architecture"]} config {meta["config"]} invalid: {exc}') from None
    check_dtypes(model, tensors, str(tensor_path))
    model.import_tensors(tensors, source=str(tensor_path))
    model.metadata = meta
    return model.eval()


def check_tensors(expected: Dict[str, tuple], tensors: Dict[str, torch.Tensor], source: str) -> None:
    """Raise ModelFileError naming missing, unexpected or misshaped tensors."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f'{source}: missing tensors {missing[:5]}{"..." if len(missing) > 5 else ""}, '
                             f'unexpected tensors {unexpected[:5]}{"..." if len(unexpected) > 5 else ""}: '
                             'the file does not match its architecture/config')
    for name, shape in expected.items():
        if shape is not None and tuple(tensors[name].shape) != tuple(shape):
            raise ModelFileError(f'{source}: tensor {name} has shape {tuple(tensors[name].shape)}, '
                                 f'expected {tuple(shape)}')


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
