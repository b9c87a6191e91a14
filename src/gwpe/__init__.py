"""gwpe: an experiment-tracking ML platform for gravitational-wave parameter estimation."""

__version__ = "0.1.0"
