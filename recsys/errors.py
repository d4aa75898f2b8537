"""User-facing error types that the ``recsys`` command turns into one ``recsys: error: …`` line (importing this
module costs nothing, so the command's start-up stays fast)."""


class RunError(ValueError):
    """A named run cannot be found or built; the message names the file and the key."""
