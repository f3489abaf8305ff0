"""Bytes on disk: the snapshot and pool-file container, the weights' fingerprint of an
ONNX file, atomic writes and reads of regular files, and what a wrong file looks like.

Imports: numpy and the standard library; from the package only ``errors``. No
onnxruntime, torch, onnx or ray (checked by ``make lint``).
"""
