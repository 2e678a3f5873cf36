"""User-facing errors: tools print their message and exit non-zero instead of showing a traceback."""


class ReIDError(Exception):
    """A problem the user can fix (bad path, bad key, bad file); the message says what and how."""


class ConfigError(ReIDError):
    """An unknown config key, a value of the wrong type or an invalid value."""


class DatasetError(ReIDError):
    """A missing dataset folder, a wrong layout, an unparsable file name or an unreadable image."""


class CheckpointError(ReIDError):
    """A missing, unsafe or mismatched checkpoint file."""
