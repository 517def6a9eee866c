"""ONNX Runtime backend: the exported dynamic-H/W graphs on the CPU (or CUDA) execution provider.

Inputs and outputs are bound to torch tensors through I/O binding (``bind_input``/``bind_output``
with data pointers), so no copy is made on either device. Graphs are exported once per model id
and opset into the cache folder (:func:`runtime.export.dynamic_graphs`).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from xmodal_compress_ros.runtime.base import Array, Backend, BackendOptions
from xmodal_compress_ros.runtime.export import dynamic_graphs
from xmodal_compress_ros.runtime.graphs import GraphSpec

_CPU, _CUDA = 'CPUExecutionProvider', 'CUDAExecutionProvider'


class OnnxRuntimeBackend(Backend):
    """fp32 graphs in ONNX Runtime; ``device='cuda'`` needs onnxruntime-gpu's CUDA provider."""

    name = 'onnxruntime'

    def __init__(self, model, options: BackendOptions = BackendOptions()):
        super().__init__(model, options)
        import onnxruntime

        graphs = dynamic_graphs(model, options.cache_path, options.opset)
        providers = [(_CUDA, {'device_id': self.device.index or 0}), _CPU] if options.is_cuda else [_CPU]
        session_options = onnxruntime.SessionOptions()
        session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = options.threads
        self.sessions = {name: onnxruntime.InferenceSession(data, session_options, providers=providers)
                         for name, data in graphs.items()}
        self._ort_device = ('cuda', self.device.index or 0) if options.is_cuda else ('cpu', 0)

    @classmethod
    def is_available(cls, device: str = 'cpu') -> bool:
        try:
            import onnxruntime
        except ImportError:
            return False
        return not device.startswith('cuda') or _CUDA in onnxruntime.get_available_providers()

    @classmethod
    def unavailable_reason(cls, device: str = 'cpu') -> str:
        if not cls.is_available('cpu'):
            return 'onnxruntime is not installed: pip install onnxruntime (or the "onnx" extra)'
        return 'onnxruntime has no CUDAExecutionProvider: pip install onnxruntime-gpu, or use device cpu'

    @classmethod
    def get_version(cls) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def _run(self, spec: GraphSpec, inputs: Dict[str, Array]) -> Dict[str, torch.Tensor]:
        session = self.sessions[spec.name]
        binding = session.io_binding()
        device_type, device_id = self._ort_device
        tensors = {name: self.to_input(value) for name, value in inputs.items()}
        # Output sizes follow from the padded input size (every graph carries an H x W input or H/64 z_hat).
        height, width = _padded_size(spec, tensors)
        outputs = {}
        for name, tensor in tensors.items():
            binding.bind_input(name, device_type, device_id, np.float32, list(tensor.shape),
                               tensor.data_ptr())
        for out in spec.outputs:
            outputs[out.name] = torch.empty(out.concrete_shape(height, width), dtype=torch.float32,
                                            device=self.device)
            binding.bind_output(out.name, device_type, device_id, np.float32, list(outputs[out.name].shape),
                                outputs[out.name].data_ptr())
        session.run_with_iobinding(binding)
        return outputs


def _padded_size(spec: GraphSpec, tensors: Dict[str, torch.Tensor]):
    """(H, W) of the padded image, from the first input with a symbolic size."""
    for tensor_spec in spec.inputs:
        dims = tensor_spec.shape
        if isinstance(dims[2], tuple):
            factor = dims[2][1]
            shape = tensors[tensor_spec.name].shape
            return int(shape[2]) * factor, int(shape[3]) * factor
    raise ValueError(f'graph {spec.name} has no image-sized input')


BACKEND = OnnxRuntimeBackend
