"""Exceptions that carry a one-line message meant for the user."""


class PlatformError(Exception):
    """Base class: the CLI prints the message on one line and exits with status 2."""


class ConfigError(PlatformError, ValueError):
    """A config file or override is wrong (unknown key, wrong type, missing file...)."""


class CheckpointError(PlatformError, ValueError):
    """A checkpoint cannot be read or does not fit the model."""


class DataError(PlatformError, ValueError):
    """A dataset file is missing or malformed."""
