"""The one exception type that the command line turns into a one-line message and a non-zero exit."""


class EdgedepthError(Exception):
    """A user-facing failure: bad input, a missing file, an unreachable network.

    Its message is complete on its own (what went wrong and, where possible, what to do instead);
    the CLI prints it as ``edgedepth: error: <message>`` and exits with status 2.
    """
