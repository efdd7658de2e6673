"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback.

Code raises :class:`BalkdError` for anything the user can fix (a missing file, a bad flag, a
teacher that does not match). :func:`install_excepthook` (called when the plugin is imported,
which ``--user-dir`` does before fairseq builds anything) turns an uncaught ``BalkdError`` into
``balkd-fairseq: error: <message>`` and exit code 2; every other exception keeps its traceback.
"""
import logging
import sys

logger = logging.getLogger(__name__)

EXIT_CODE = 2


class BalkdError(Exception):
    """A mistake in the user's input, flags or files, explained in one line."""


def format_error(err: BaseException) -> str:
    return f"balkd-fairseq: error: {err}"


def _balkd_excepthook(exc_type, exc, tb, _previous=sys.excepthook):
    if isinstance(exc, BalkdError):
        sys.stderr.write(format_error(exc) + "\n")
        sys.stderr.flush()
        # sys.exit does not work inside an excepthook; the interpreter's exit code would be 1.
        import os

        os._exit(EXIT_CODE)
    _previous(exc_type, exc, tb)


def install_excepthook() -> None:
    if getattr(sys.excepthook, "__name__", "") != "_balkd_excepthook":
        sys.excepthook = _balkd_excepthook


def run_cli(main_fn, argv=None) -> int:
    """Run a ``balkd-*`` command body, mapping :class:`BalkdError` to one line and exit code 2."""
    try:
        return main_fn(argv) or 0
    except BalkdError as err:
        sys.stderr.write(format_error(err) + "\n")
        return EXIT_CODE
