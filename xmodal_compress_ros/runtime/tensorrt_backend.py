"""TensorRT 10 backend: engines built from the exported ONNX graphs, run on PyTorch's CUDA stream.

Build (once per graph, then cached):

* ``trt.Builder`` -> ``create_network(0)`` (explicit batch is the only mode in TensorRT 10) ->
  ``trt.OnnxParser(network, logger).parse(onnx_bytes)``;
* builder config with ``BuilderFlag.FP16`` for ``precision='fp16'``, a workspace limit and one
  optimisation profile whose min/opt/max H and W span the padded configured resolutions;
* ``build_serialized_network`` -> written to ``<cache>/tensorrt/<model_id>/<graph>-<key>.engine``
  where ``key`` hashes the ONNX sha256, the TensorRT version, the GPU name and compute capability,
  the precision and the profile; any change gives a new key, so a stale engine is never loaded.

Run: ``context.set_input_shape`` for each input, output tensors allocated by PyTorch on the GPU,
``context.set_tensor_address`` for every I/O tensor (PyTorch's device pointers, no copies) and
``execute_async_v3`` on ``torch.cuda.current_stream()``, so the work is ordered with the PyTorch
pre/post-processing around it without a synchronisation.

Verified here: written against the TensorRT 10 Python API documentation; this environment has no
GPU and no TensorRT, so its tests (marked ``tensorrt``) are skipped. See docs/runtime.md.
"""
from __future__ import annotations

import hashlib
import json
from typing import Dict, Tuple

import torch

from xmodal_compress_ros.errors import ModelFileError
from xmodal_compress_ros.runtime.base import Array, Backend, BackendOptions
from xmodal_compress_ros.runtime.export import dynamic_graphs, model_id, padded
from xmodal_compress_ros.runtime.graphs import GraphSpec

WORKSPACE_BYTES = 2 << 30
# Profiles never go below this padded side (the hyper-latent must be at least 1x1).
MIN_SIDE = 64


class TensorRTBackend(Backend):
    """fp32 or fp16 engines; ``device`` must be CUDA."""

    name = 'tensorrt'
    precisions = ('fp32', 'fp16')

    def __init__(self, model, options: BackendOptions = BackendOptions(device='cuda')):
        super().__init__(model, options)
        import tensorrt as trt

        self._trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        graphs = dynamic_graphs(model, options.cache_path, options.opset)
        self.profile = optimisation_profile(options.resolutions)
        self.engines, self.contexts = {}, {}
        with torch.cuda.device(self.device):
            for name, onnx_bytes in graphs.items():
                engine = self.runtime.deserialize_cuda_engine(self._engine_bytes(name, onnx_bytes))
                if engine is None:
                    raise ModelFileError(f'TensorRT could not deserialize the {name} engine: delete the '
                                         f'cache folder {options.cache_path / "tensorrt"} and retry')
                self.engines[name] = engine
                self.contexts[name] = engine.create_execution_context()

    @classmethod
    def is_available(cls, device: str = 'cuda') -> bool:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False
        return device.startswith('cuda') and torch.cuda.is_available()

    @classmethod
    def unavailable_reason(cls, device: str = 'cuda') -> str:
        if not device.startswith('cuda'):
            return "TensorRT runs on NVIDIA GPUs only: set device 'cuda'"
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return 'the tensorrt Python package is not installed: pip install tensorrt (TensorRT 10)'
        return 'PyTorch sees no CUDA GPU: TensorRT needs one'

    @classmethod
    def get_version(cls) -> str:
        import tensorrt

        return tensorrt.__version__

    # -- engine cache ----------------------------------------------------------------------------------
    def engine_key(self, onnx_bytes: bytes) -> Dict[str, str]:
        """Everything an engine depends on; its hash names the cache file."""
        props = torch.cuda.get_device_properties(self.device)
        return {'onnx_sha256': hashlib.sha256(onnx_bytes).hexdigest(), 'tensorrt': self.get_version(),
                'gpu': props.name, 'compute_capability': f'{props.major}.{props.minor}',
                'precision': self.options.precision, 'profile': json.dumps(self.profile)}

    def _engine_bytes(self, name: str, onnx_bytes: bytes) -> bytes:
        key = self.engine_key(onnx_bytes)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        folder = self.options.cache_path / 'tensorrt' / model_id(self.model)
        path = folder / f'{name}-{digest}.engine'
        if path.is_file():
            return path.read_bytes()
        data = self._build(name, onnx_bytes)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix('.tmp')
        tmp.write_bytes(data)
        tmp.replace(path)
        path.with_suffix('.json').write_text(json.dumps(key, indent=1) + '\n')
        return data

    def _build(self, name: str, onnx_bytes: bytes) -> bytes:
        trt = self._trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelFileError(f'TensorRT cannot parse the {name} graph: {errors}')
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.options.precision == 'fp16':
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for tensor in self.specs[name].inputs:
            shapes = [tensor.concrete_shape(h, w) for w, h in (self.profile['min'], self.profile['opt'],
                                                               self.profile['max'])]
            profile.set_shape(tensor.name, *shapes)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelFileError(f'TensorRT failed to build the {name} engine (see its log above)')
        return bytes(serialized)

    # -- execution -------------------------------------------------------------------------------------
    def _run(self, spec: GraphSpec, inputs: Dict[str, Array]) -> Dict[str, torch.Tensor]:
        context = self.contexts[spec.name]
        # Engine I/O stays float32 (fp16 is internal to the engine).
        tensors = {name: _float32_cuda(value, self.device) for name, value in inputs.items()}
        for name, tensor in tensors.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for out in spec.output_names:
            shape = tuple(context.get_tensor_shape(out))
            outputs[out] = torch.empty(shape, dtype=torch.float32, device=self.device)
            context.set_tensor_address(out, outputs[out].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f'TensorRT failed to run the {spec.name} engine')
        # Inputs must outlive the enqueued work: tie them to the stream before they are freed.
        for tensor in tensors.values():
            tensor.record_stream(stream)
        return outputs

    def to_input(self, array: Array) -> torch.Tensor:
        return _float32_cuda(array, self.device)


def optimisation_profile(resolutions) -> Dict[str, Tuple[int, int]]:
    """min/opt/max padded (width, height) spanning ``resolutions``; opt is the first one."""
    sizes = [padded(r) for r in resolutions]
    return {'min': (max(MIN_SIDE, min(w for w, _ in sizes)), max(MIN_SIDE, min(h for _, h in sizes))),
            'opt': sizes[0],
            'max': (max(w for w, _ in sizes), max(h for _, h in sizes))}


def _float32_cuda(array: Array, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    return tensor.to(device=device, dtype=torch.float32).contiguous()


BACKEND = TensorRTBackend
