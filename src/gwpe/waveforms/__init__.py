"""Waveform backends and parameter grids for the h22 data engine."""

from gwpe.waveforms.backends import build_backend
from gwpe.waveforms.base import H22Backend, check_waveform
from gwpe.waveforms.grid import SPLITS, split_parameters, split_size, time_grid

__all__ = ["H22Backend", "build_backend", "check_waveform", "SPLITS", "split_parameters", "split_size", "time_grid"]
