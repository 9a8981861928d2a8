"""Where the package's messages go: the ``facepruning`` logger, one line per message.

Every module logs through ``logging.getLogger(__name__)`` (a child of ``facepruning``): warnings
for what was skipped or set aside, info for what a step did. So that a notebook or the command
line shows them without any set-up, the ``facepruning`` logger has one handler of its own that
writes the bare message to the *current* ``sys.stdout`` (info) or ``sys.stderr`` (warnings), so
a notebook's cell output, or a test's captured output, gets it. Records still propagate, so an
application's own logging configuration (or pytest's ``caplog``) sees them too;
``logging.getLogger("facepruning").setLevel(logging.WARNING)`` quiets the info lines.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ROOT_LOGGER"]

ROOT_LOGGER = "facepruning"


class _CurrentStreams(logging.StreamHandler):
    """A stream handler that looks up ``sys.stdout`` (below WARNING) or ``sys.stderr`` at every
    message."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _install() -> None:
    logger = logging.getLogger(ROOT_LOGGER)
    if not any(isinstance(h, _CurrentStreams) for h in logger.handlers):
        handler = _CurrentStreams()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


_install()
