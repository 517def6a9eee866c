"""The reference backend: the graphs as PyTorch modules, on CPU or CUDA, in fp32, fp16 or bf16."""
from __future__ import annotations

import copy
import warnings
from typing import Dict

import torch
import torch.nn.functional as F

from xmodal_compress_ros.codec.inference_forms import prepare_for_cpu
from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.runtime.base import Array, Backend, BackendOptions
from xmodal_compress_ros.runtime.cpu_features import FAST_BF16_FLAG, fast_bf16
from xmodal_compress_ros.runtime.graphs import GraphSpec, graph_modules


#: Activations and weights in NHWC: oneDNN's transposed and 1x1 convolutions (g_s, GDN) run 1.3-3x
#: faster on CPU in it than in NCHW (measured, docs/runtime.md), and cuDNN's fp16 tensor-core kernels
#: want it. Only reconstructions change, by float rounding; the scale path is integer.
MEMORY_FORMAT = torch.channels_last


class TorchBackend(Backend):
    """Runs :mod:`runtime.graphs` modules with ``torch.inference_mode`` on a copy of the model
    converted to the device, precision and :data:`MEMORY_FORMAT` (on a CPU, with GDN and g_s's last
    layer in their faster equivalent forms: :func:`codec.inference_forms.prepare_for_cpu`).
    """

    name = 'torch'
    precisions = ('fp32', 'fp16', 'bf16')

    def __init__(self, model, options: BackendOptions = BackendOptions()):
        super().__init__(model, options)
        if options.threads:
            torch.set_num_threads(options.threads)
        self.memory_format = MEMORY_FORMAT
        model = copy.deepcopy(model)
        if self.device.type == 'cpu':
            prepare_for_cpu(model)
        model = model.to(device=self.device, dtype=self.float_dtype, memory_format=self.memory_format)
        if self.device.type != 'cpu' or options.precision != 'fp32':
            _check_precision_runs(self.device, self.float_dtype)
        if self.device.type == 'cpu' and options.precision == 'bf16' and fast_bf16() is False:
            warnings.warn(f'precision bf16 on a CPU without AMX ({FAST_BF16_FLAG}): no faster than fp32 '
                          'with AVX512-BF16, 3-13x slower without it (docs/runtime.md); use precision fp32 '
                          'on this machine', RuntimeWarning, stacklevel=2)
        self.modules = graph_modules(model)

    @classmethod
    def is_available(cls, device: str = 'cpu') -> bool:
        return not device.startswith('cuda') or torch.cuda.is_available()

    @classmethod
    def unavailable_reason(cls, device: str = 'cpu') -> str:
        return ('PyTorch sees no CUDA GPU (torch.cuda.is_available() is False): use device cpu or '
                'install a CUDA build of PyTorch')

    @classmethod
    def get_version(cls) -> str:
        return torch.__version__

    def _run(self, spec: GraphSpec, inputs: Dict[str, Array]) -> Dict[str, torch.Tensor]:
        args = [self.to_input(value) for value in inputs.values()]
        with torch.inference_mode():
            outputs = self.modules[spec.name](*args)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return {name: out.contiguous() for name, out in zip(spec.output_names, outputs)}

    def to_input(self, array: Array) -> torch.Tensor:
        """As :meth:`Backend.to_input`, with 4-D tensors laid out in :attr:`memory_format` (one copy)."""
        tensor = torch.as_tensor(array).to(device=self.device, dtype=self.float_dtype)
        layout = self.memory_format if tensor.dim() == 4 else torch.contiguous_format
        return tensor.contiguous(memory_format=layout)


def _check_precision_runs(device: torch.device, dtype: torch.dtype) -> None:
    """Fail at construction, not on the first frame, if this PyTorch build lacks the kernels."""
    try:
        x = torch.ones(1, 2, 4, 4, device=device, dtype=dtype)
        F.conv_transpose2d(F.conv2d(x, torch.ones(2, 2, 3, 3, device=device, dtype=dtype)),
                           torch.ones(2, 2, 3, 3, device=device, dtype=dtype))
    except RuntimeError as exc:
        raise ParameterError(f'PyTorch on {device} cannot run convolutions in {dtype} ({exc}): use precision '
                             'fp32 or another device') from None


BACKEND = TorchBackend
