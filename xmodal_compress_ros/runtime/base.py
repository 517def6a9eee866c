"""The Backend interface: run a codec's named float graphs on some inference engine.

A backend is bound to one model (its three graphs, see :mod:`runtime.graphs`) and one device and
precision. ``run(graph_name, inputs)`` maps named input arrays to named output tensors, as
mmdeploy's wrappers do. Inputs may be NumPy arrays or torch tensors (on any device); outputs are
torch tensors on :attr:`Backend.device`, so a GPU pipeline never leaves the GPU between graphs.

Backends are picked by name (:func:`create_backend`); their modules are imported only when asked
for, so ONNX Runtime and TensorRT stay optional.
"""
from __future__ import annotations

import abc
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, Mapping, Tuple, Union

import numpy as np
import torch

from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.runtime.graphs import GRAPH_NAMES, GraphSpec, graph_specs

Array = Union[np.ndarray, torch.Tensor]

# Backend name -> module defining it; imported lazily by get_backend_class().
_BACKEND_MODULES = {
    'torch': 'xmodal_compress_ros.runtime.torch_backend',
    'onnxruntime': 'xmodal_compress_ros.runtime.onnx_backend',
    'tensorrt': 'xmodal_compress_ros.runtime.tensorrt_backend',
}
DEVICES = ('cpu', 'cuda')
PRECISIONS = ('fp32', 'fp16', 'bf16')
#: Image sizes (width, height) prepared for by default: KITTI and 1080p.
DEFAULT_RESOLUTIONS = ((1242, 375), (1920, 1080))


def default_cache_dir() -> Path:
    """Where exported graphs and engines are cached: ``$XMODAL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/xmodal_compress_ros`` (default ``~/.cache/xmodal_compress_ros``)."""
    base = os.environ.get('XMODAL_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'xmodal_compress_ros')
    return Path(base)


@dataclass(frozen=True)
class BackendOptions:
    """Settings shared by every backend.

    Attributes:
        device: ``'cpu'`` or ``'cuda'`` (``'cuda:N'`` selects a GPU).
        precision: ``'fp32'``, ``'fp16'`` or ``'bf16'`` for the float graphs (each backend lists what
            it supports).
        cache_dir: folder for exported ONNX graphs and TensorRT engines ('' = :func:`default_cache_dir`).
        resolutions: image sizes (width, height) to prepare for: TensorRT optimisation profiles.
        opset: ONNX opset of exported graphs.
        threads: CPU threads for the graphs, 0 = the engine's default. PyTorch's setting is
            process-wide (``torch.set_num_threads``); ONNX Runtime's is per session.
    """

    device: str = 'cpu'
    precision: str = 'fp32'
    cache_dir: str = ''
    resolutions: Tuple[Tuple[int, int], ...] = DEFAULT_RESOLUTIONS
    opset: int = 17
    threads: int = 0

    def __post_init__(self) -> None:
        if self.device.split(':')[0] not in DEVICES:
            raise ParameterError(f"device {self.device!r} is not supported: use 'cpu' or 'cuda' "
                                 "(or 'cuda:N')")
        if self.precision not in PRECISIONS:
            raise ParameterError(f'precision {self.precision!r} is not supported: use one of '
                                 f'{", ".join(PRECISIONS)}')
        sizes = tuple((int(w), int(h)) for w, h in self.resolutions)
        if not sizes or any(w < 1 or h < 1 or w > 0xFFFF or h > 0xFFFF for w, h in sizes):
            raise ParameterError(f'resolutions {self.resolutions!r} must be (width, height) pairs in '
                                 '1..65535')
        object.__setattr__(self, 'resolutions', sizes)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ParameterError(f'threads {self.threads!r} must be an int >= 0 (0 = default)')

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith('cuda')


class Backend(abc.ABC):
    """Runs the float graphs of one model. Subclasses set :attr:`name` and implement :meth:`_run`."""

    name: ClassVar[str] = ''
    #: Precisions this backend accepts.
    precisions: ClassVar[Tuple[str, ...]] = ('fp32',)

    def __init__(self, model, options: BackendOptions = BackendOptions()):
        if options.precision not in self.precisions:
            raise ParameterError(f'backend {self.name!r} does not run precision {options.precision!r}; it '
                                 f'supports {", ".join(self.precisions)}')
        if not self.is_available(options.device):
            raise ParameterError(f'backend {self.name!r} is not available for device {options.device!r} '
                                 f'here: {self.unavailable_reason(options.device)}')
        self.model = model
        self.options = options
        self.specs: Dict[str, GraphSpec] = graph_specs(model)
        self.device = _concrete(torch.device(options.device))

    @classmethod
    @abc.abstractmethod
    def is_available(cls, device: str = 'cpu') -> bool:
        """True if the engine is installed (and, for ``'cuda'``, a GPU is usable)."""

    @classmethod
    def unavailable_reason(cls, device: str = 'cpu') -> str:
        """Why :meth:`is_available` is False, with the fix."""
        return 'not installed'

    @classmethod
    @abc.abstractmethod
    def get_version(cls) -> str:
        """Version string of the inference engine."""

    @property
    def float_dtype(self) -> torch.dtype:
        """The dtype the graphs compute in."""
        return {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}[self.options.precision]

    def run(self, graph_name: str, inputs: Mapping[str, Array]) -> Dict[str, torch.Tensor]:
        """Run graph ``graph_name`` on named inputs; returns its named outputs on :attr:`device`."""
        spec = self.specs.get(graph_name)
        if spec is None:
            raise ParameterError(f'unknown graph {graph_name!r}; graphs: {", ".join(GRAPH_NAMES)}')
        if set(inputs) != set(spec.input_names):
            raise ParameterError(f'graph {graph_name!r} takes inputs {list(spec.input_names)}, '
                                 f'got {sorted(inputs)}')
        return self._run(spec, {name: inputs[name] for name in spec.input_names})

    @abc.abstractmethod
    def _run(self, spec: GraphSpec, inputs: Dict[str, Array]) -> Dict[str, torch.Tensor]:
        """Run a graph whose inputs were checked by name."""

    def to_input(self, array: Array) -> torch.Tensor:
        """``array`` as a contiguous float tensor on this backend's device in its compute dtype."""
        tensor = torch.as_tensor(array) if isinstance(array, np.ndarray) else array
        return tensor.to(device=self.device, dtype=self.float_dtype).contiguous()

    def synchronize(self) -> None:
        """Wait for queued GPU work (for timing); a no-op on CPU."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def describe(self) -> Dict[str, str]:
        """Name, version, device and precision, for logs and benchmark records."""
        return {'backend': self.name, 'version': self.get_version(), 'device': str(self.device),
                'precision': self.options.precision}


def backend_names() -> Tuple[str, ...]:
    """Every registered backend name (installed or not)."""
    return tuple(_BACKEND_MODULES)


def get_backend_class(name: str):
    """The Backend subclass registered as ``name``; ParameterError lists the valid names."""
    if name not in _BACKEND_MODULES:
        raise ParameterError(f'unknown backend {name!r}; valid: {", ".join(backend_names())}')
    module = importlib.import_module(_BACKEND_MODULES[name])
    return module.BACKEND


def _concrete(device: torch.device) -> torch.device:
    """``cuda`` as ``cuda:<current>``: tensors report the indexed device, and ``tensor.device ==
    backend.device`` must hold for outputs (on the H100, a bare ``cuda`` failed that comparison)."""
    if device.type == 'cuda' and device.index is None:
        return torch.device('cuda', torch.cuda.current_device())
    return device


def available_backends(device: str = 'cpu') -> Tuple[str, ...]:
    """Names of the backends usable on ``device`` in this environment."""
    return tuple(name for name in backend_names() if get_backend_class(name).is_available(device))


def create_backend(name: str, model, options: BackendOptions = BackendOptions()) -> Backend:
    """A ready backend ``name`` running ``model``'s graphs with ``options``."""
    return get_backend_class(name)(model, options)
