"""User-facing errors: each one prints as a single line and exits non-zero from the CLI."""


class GwpeError(Exception):
    """An error caused by the user's input or environment, reported as one line."""

    exit_code = 2


class ConfigError(GwpeError):
    """A configuration value is unknown, of the wrong type or out of range."""


class WaveformError(GwpeError):
    """A waveform backend produced invalid data (NaN/inf, bad time grid) for some parameters."""

    exit_code = 3


class SurrogateNotFoundError(GwpeError):
    """The NRHybSur3dq8 data file is not on disk (gwpe never downloads it)."""


class PackageError(GwpeError):
    """A model package (weights.pt + config.json) is missing, corrupt or of an unknown kind."""


class InputError(GwpeError):
    """An input file for inference is unreadable or does not match what the model expects."""


class RegistryError(GwpeError):
    """The tracking server is unreachable, or a registered model, version or alias does not exist."""
