"""Recorded sensor data, numpy only: CSV and NPZ files read into recordings, splits by
recording or by time, the normalization statistics, and the embedded BasicMotions data.

    from stream_gru.data import load_dataset, split_dataset

Imports: numpy; from the package ``formats`` and the base modules. No onnxruntime,
torch or the runtime parts (checked by ``make lint``).
"""

from .csv_files import load_csv
from .dataset import (
    MIN_RECORDINGS_FOR_RECORDING_SPLIT,
    compute_normalization,
    data_format,
    describe_dataset,
    load_dataset,
    load_training_data,
    split_dataset,
)
from .npz import load_npz
from .recordings import TASKS, DataReading, Recording, SensorDataset, Task

__all__ = [
    "MIN_RECORDINGS_FOR_RECORDING_SPLIT",
    "TASKS",
    "DataReading",
    "Recording",
    "SensorDataset",
    "Task",
    "compute_normalization",
    "data_format",
    "describe_dataset",
    "load_csv",
    "load_dataset",
    "load_npz",
    "load_training_data",
    "split_dataset",
]
