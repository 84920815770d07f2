"""The one way edgedepth's log records reach a terminal: on stderr, above any progress bar."""

import logging
import sys

from tqdm import tqdm


class _ProgressSafeHandler(logging.Handler):
    """Writes each record on stderr above any progress bar on screen (``tqdm.write``), as it is at that moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler reports, never raises
            self.handleError(record)


class _Formatter(logging.Formatter):
    """``edgedepth: warning: <message>`` (and ``error``, ``debug``); notes (info) as they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno == logging.INFO else f"edgedepth: {record.levelname.lower()}: {message}"


def configure_logging(verbosity: int = 0) -> None:
    """Send edgedepth's loggers to stderr, above progress bars: notes and warnings by default (``verbosity`` 0),
    debug with 1 (``-v``), warnings and errors only with -1 (``-q``). The CLI calls it; a library user need not.
    """
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    logger = logging.getLogger("edgedepth")
    for handler in [h for h in logger.handlers if isinstance(h, _ProgressSafeHandler)]:
        logger.removeHandler(handler)
    handler = _ProgressSafeHandler()
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    pytree = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(f, _EnumRegistrationNotice) for f in pytree.filters):
        pytree.addFilter(_EnumRegistrationNotice())


class _EnumRegistrationNotice(logging.Filter):
    """Drop PyTorch's "<enum ...> is an Enum subclass and is now natively supported by torch.compile" notices.

    torchao (installed with litert-torch, which exports LiteRT files) registers its enums with PyTorch's pytree when
    transformers imports it, and PyTorch logs one such deprecation notice per enum on every command that loads a
    transformers model: library internals a user cannot act on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "is an Enum subclass and is now natively supported by torch.compile" not in record.getMessage()
