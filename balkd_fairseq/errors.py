"""User-facing errors: one clear line on stderr and exit code 2, never a traceback.

Code raises :class:`BalkdError` for anything the user can fix (a missing file, a bad flag, a
teacher that does not match). Nothing here runs on import: the one-line handling is installed by
the ``balkd-*`` commands (:func:`balkd_fairseq.cli.common.run_cli`) and by the plugin's tasks when a
fairseq entry point runs them (:func:`install_error_handling`), so a notebook or another program
that imports the package keeps its own ``sys.excepthook``.
"""
import errno
import logging
import os
import sys

logger = logging.getLogger(__name__)

EXIT_CODE = 2

# OSErrors that the user's environment causes (a full disk, a read-only or foreign directory), not bugs
USER_OS_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTDIR,
     errno.EISDIR}
)


class BalkdError(Exception):
    """A mistake in the user's input, flags or files, explained in one line."""


def format_error(err: BaseException) -> str:
    return f"balkd-fairseq: error: {err}"


def is_user_os_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in USER_OS_ERRNOS


def describe_os_error(err: OSError) -> str:
    """``cannot write PATH: No space left on device`` (the path and the reason, without errno noise)."""
    path = err.filename if err.filename is not None else "a file"
    target = f" -> {err.filename2}" if err.filename2 is not None else ""
    return f"{path}{target}: {err.strerror or err}"


def user_error_line(err: BaseException) -> str:
    """The one line for a user mistake; ``err`` is a BalkdError or a :func:`is_user_os_error`."""
    return format_error(err if isinstance(err, BalkdError) else describe_os_error(err))


def flush_outputs() -> None:
    """Flush every logging handler and fairseq's TensorBoard writers, so nothing logged is lost at exit."""
    for handler in [*logging.getLogger().handlers, *_named_logger_handlers()]:
        try:
            handler.flush()
        except (OSError, ValueError):  # a closed stream
            pass
    writers = getattr(sys.modules.get("fairseq.logging.progress_bar"), "_tensorboard_writers", {})
    for writer in list(writers.values()):
        writer.flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _named_logger_handlers():
    for named in list(logging.Logger.manager.loggerDict.values()):
        yield from getattr(named, "handlers", [])


def _balkd_excepthook(exc_type, exc, tb):
    if isinstance(exc, BalkdError) or is_user_os_error(exc):
        flush_outputs()
        sys.stderr.write(user_error_line(exc) + "\n")
        sys.stderr.flush()
        # Raising SystemExit from the hook makes the interpreter exit with this code through its
        # normal shutdown (atexit handlers, logging.shutdown, fairseq's TensorBoard writer close).
        raise SystemExit(EXIT_CODE)
    _balkd_excepthook.previous(exc_type, exc, tb)


_balkd_excepthook.previous = sys.__excepthook__


def install_error_handling() -> None:
    """Make an uncaught :class:`BalkdError` end the process with one line and exit code 2.

    Called when the plugin's task runs under a fairseq entry point. Other exceptions go to the
    hook that was installed before. Under ``fairseq-hydra-train``, hydra catches every exception
    of the job and prints its own traceback with exit code 1; ``HYDRA_FULL_ERROR`` (hydra's
    documented switch) makes it re-raise instead, so the error reaches this hook.
    """
    if sys.excepthook is not _balkd_excepthook:
        _balkd_excepthook.previous = sys.excepthook
        sys.excepthook = _balkd_excepthook
    if "hydra" in sys.modules and _hydra_running():
        os.environ["HYDRA_FULL_ERROR"] = "1"


def _hydra_running() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized()
