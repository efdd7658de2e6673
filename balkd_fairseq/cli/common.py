"""The one wrapper every ``balkd-*`` command runs in: logging set up once, user mistakes as one line.

A :class:`~balkd_fairseq.errors.BalkdError`, or an OSError the environment causes (a full disk, a
read-only directory), ends the command with ``balkd-fairseq: error: ...`` and exit code 2; Ctrl-C
ends it with exit code 130 and one line; every other exception is a bug and keeps its traceback.
"""
import argparse
import logging
import os
import sys

from ..errors import EXIT_CODE, BalkdError, flush_outputs, is_user_os_error, user_error_line

LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"
INTERRUPTED_EXIT_CODE = 130


class ArgumentParser(argparse.ArgumentParser):
    """Flag mistakes become one ``balkd-fairseq: error:`` line (exit 2) like every other user mistake,
    not argparse's usage block followed by its own ``<prog>: error:`` line."""

    def error(self, message):
        raise BalkdError(message)


def setup_logging() -> None:
    """fairseq-train's log format on stderr (replacing whatever an earlier import configured)."""
    level = os.environ.get("LOGLEVEL", "INFO").upper()
    logging.basicConfig(format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S", level=level, stream=sys.stderr, force=True)


def run_cli(main_fn, argv=None) -> int:
    """Run a command body ``main_fn(argv)`` and return its exit code."""
    setup_logging()
    try:
        return main_fn(argv) or 0
    except BalkdError as err:
        return _fail(user_error_line(err), EXIT_CODE)
    except OSError as err:
        if not is_user_os_error(err):
            raise
        return _fail(user_error_line(err), EXIT_CODE)
    except KeyboardInterrupt:
        return _fail("balkd-fairseq: interrupted", INTERRUPTED_EXIT_CODE)
    finally:
        flush_outputs()


def _fail(line: str, code: int) -> int:
    flush_outputs()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    return code
