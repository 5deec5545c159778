"""Errors that the CLI reports as one line with exit code 2."""


class UserError(Exception):
    """Bad input or environment the user can fix; the message is shown as is."""


class CheckpointError(UserError):
    """A checkpoint that is unsupported, corrupt or unsafe to read."""


class DownloadError(UserError):
    """A download that failed; the message names the URL and where to put the file by hand."""


class Crash(Exception):
    """A failure that is not the user's input (a worker process killed, say): one line, exit code 1."""


def short(value: object, n: int = 60) -> str:
    """repr(value) cut to n characters: an error never echoes a huge value."""
    r = repr(value)
    return r if len(r) <= n else r[: n - 3] + "..."
