"""The one exception type that the command line turns into a one-line message and a non-zero exit."""


class EdgedepthError(Exception):
    """A user-facing failure: bad input, a missing file, an unreachable network.

    Its message is complete on its own (what went wrong and, where possible, what to do instead);
    the CLI prints it as ``edgedepth: error: <message>`` and exits with status 2.
    """


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an error (a converter's summary), or its type's name if it has none."""
    lines = _message_lines(exc)
    return lines[0] if lines else type(exc).__name__


def last_line(exc: BaseException) -> str:
    """The last non-empty line of an error (OpenVINO and ONNX Runtime put the reason there), shortened."""
    lines = _message_lines(exc)
    return lines[-1][:200] if lines else type(exc).__name__


def _message_lines(exc: BaseException) -> list[str]:
    return [line.strip() for line in str(exc).splitlines() if line.strip()]
