"""The one exception the data loaders raise for files that are missing, damaged or not what they claim."""


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or of the wrong kind; the message names the file and the fix."""
