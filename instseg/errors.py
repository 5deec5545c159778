"""Errors that the CLI reports as one line with exit code 2."""


class UserError(Exception):
    """Bad input or environment the user can fix; the message is shown as is."""


class CheckpointError(UserError):
    """A checkpoint that is unsupported, corrupt or unsafe to read."""


class DownloadError(UserError):
    """A download that failed; the message names the URL and where to put the file by hand."""
