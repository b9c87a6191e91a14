"""The h22 backends by name: ``build_backend(config.h22)`` is how every caller gets one.

A registry apart from ``base`` so that the backends import the base class and nothing imports back.
"""

from __future__ import annotations

from typing import Callable

from gwpe.config import H22Config
from gwpe.errors import ConfigError
from gwpe.waveforms.base import H22Backend
from gwpe.waveforms.imrphenomthm import IMRPhenomTHMBackend
from gwpe.waveforms.nrhybsur3dq8 import NRHybSur3dq8Backend

BACKENDS: dict[str, Callable[[H22Config], H22Backend]] = {
    "imrphenomthm": lambda h22: IMRPhenomTHMBackend(generation_dt=h22.generation_dt, total_mass=h22.total_mass),
    "nrhybsur3dq8": lambda h22: NRHybSur3dq8Backend(path=h22.surrogate_path),
}


def build_backend(config: H22Config) -> H22Backend:
    """Backend named by ``config.backend``; fails at once (no download) if its data is missing."""
    if config.backend not in BACKENDS:
        raise ConfigError(f"h22.backend = {config.backend!r}; allowed: {', '.join(BACKENDS)}")
    return BACKENDS[config.backend](config)
