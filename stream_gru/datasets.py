"""The old spelling of ``stream_gru.data.basic_motions`` (the embedded BasicMotions
data), kept so that ``from stream_gru.datasets import load_basic_motions`` works."""

from .data.basic_motions import BASIC_MOTIONS_FEATURES, basic_motions_misfit, load_basic_motions

__all__ = ["BASIC_MOTIONS_FEATURES", "basic_motions_misfit", "load_basic_motions"]
