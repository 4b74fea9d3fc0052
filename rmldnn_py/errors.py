"""Error hierarchy. Every user-facing failure is an :class:`RmldnnError` whose message is one line.

The CLI prints ``rmldnn: error: <message>`` on stderr and exits with ``exit_code``; a traceback is
shown only when the environment variable ``RMLDNN_DEBUG=1`` is set (SPEC §2.4).
"""


class RmldnnError(Exception):
    """Base class of user-facing errors (exit code 1). The message must name the culprit
    (file, config key, layer or sample)."""

    exit_code = 1


class UsageError(RmldnnError):
    """Command-line usage error: no ``--config``, unknown option, unreadable config (exit code 2)."""

    exit_code = 2


class ConfigError(RmldnnError):
    """Invalid configuration file: JSON syntax, schema violation, bad value."""


class NetworkError(RmldnnError):
    """Invalid or unsupported network description (Keras JSON or inline layers)."""


class DataError(RmldnnError):
    """Missing, empty, corrupt or inconsistent data."""


class CheckpointError(RmldnnError):
    """A checkpoint or Keras weights file that cannot be read or does not fit the model."""
