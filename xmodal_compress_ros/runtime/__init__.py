"""Inference backends (PyTorch, ONNX Runtime, TensorRT) and ONNX export."""
