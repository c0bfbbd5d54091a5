"""Shared between training and serving: networks, checkpoint format, preprocessing, inference.

Submodules are imported explicitly (``from model.preprocess import ...``) so that a serving worker
that only needs ``model.preprocess`` and ONNX Runtime never imports torch.
"""
