"""Checkpoint saving that never loses the previous checkpoint, for runs of the plugin's tasks.

fairseq writes each checkpoint once, atomically (``<name>.tmp``, then a rename), and then *copies*
it to the other names due at that moment (``checkpoint_last.pt``, ``checkpoint_best.pt``, ...) with
``shutil.copyfile``, which is not atomic: a job killed during the copy (preemption, ``kill -9``, the
OOM killer) leaves a truncated ``checkpoint_last.pt`` and cannot resume. A full disk or a lost write
permission leaves ``<name>.tmp`` behind and ends in torch's multi-line traceback.

Choice: fairseq is not patched process-wide. :func:`enable_atomic_checkpoint_copies` is called by
the plugin's tasks when a run of them starts (:mod:`balkd_fairseq.task_run`), and it rebinds the
``PathManager`` name of ``fairseq.checkpoint_utils`` only (the module that saves checkpoints) to
:class:`CheckpointPathManager`: its ``copy`` writes ``<dst>.tmp`` and renames it over ``<dst>``, and
a checkpoint ``.tmp`` it opens for writing is removed when the write fails, with one line naming the
checkpoint and the reason (the traceback fairseq logs first is filtered out of its ``checkpoint_utils``
logger). Every other ``PathManager`` user in the process is unchanged.
"""
import contextlib
import logging
import os
import shutil
import sys

from fairseq import file_io

from .errors import BalkdError
from .outputs import atomic_copy, remove_quietly

WRITE_FAILED = "failed writing file"  # torch's PytorchStreamWriter message for a write that did not happen
TMP_SUFFIX = ".tmp"  # fairseq's torch_persistent_save writes <checkpoint>.tmp, then renames it


def _is_remote(path) -> bool:
    return "://" in str(path)


def _write_failure(path: str, err: BaseException) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    try:  # torch reports a failed write as a RuntimeError that does not say why
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        free = None
    if free is not None and free < 64 * 1024 * 1024:
        return f"no space left on the device ({free // 1024} KiB free)"
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


@contextlib.contextmanager
def _removed_on_failure(handle, tmp_path: str):
    try:
        with handle as f:
            yield f
    except (OSError, RuntimeError) as err:
        remove_quietly(tmp_path)
        final = tmp_path[: -len(TMP_SUFFIX)]
        raise BalkdError(f"could not write checkpoint {final}: {_write_failure(tmp_path, err)} "
                         "(the previous checkpoints are kept)") from err
    except BaseException:
        remove_quietly(tmp_path)
        raise


class CheckpointPathManager(file_io.PathManager):
    """fairseq's PathManager with atomic local copies and no ``.tmp`` left by a failed checkpoint write."""

    @staticmethod
    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if _is_remote(src_path) or _is_remote(dst_path):
            return file_io.PathManager.copy(src_path, dst_path, overwrite)
        try:
            atomic_copy(src_path, dst_path)
        except OSError as err:
            raise BalkdError(f"could not write checkpoint {dst_path}: {err.strerror or err} "
                             "(the previous checkpoint is kept)") from err
        return True

    @staticmethod
    def open(path: str, mode: str = "r", *args, **kwargs):
        handle = file_io.PathManager.open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(TMP_SUFFIX) and not _is_remote(path):
            return _removed_on_failure(handle, str(path))
        return handle


class _SaveTracebackFilter(logging.Filter):
    """fairseq logs the traceback of a failed ``torch.save`` before re-raising it. A failed write (an OSError,
    or torch's "failed writing file") becomes one line naming the checkpoint and the reason
    (:func:`_removed_on_failure`): its traceback is dropped. Any other failure keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not str(record.msg).startswith("Traceback (most recent call last)"):
            return True
        err = sys.exc_info()[1]
        return not (isinstance(err, OSError) or (isinstance(err, RuntimeError) and WRITE_FAILED in str(err)))


def enable_atomic_checkpoint_copies() -> None:
    """Idempotently make ``fairseq.checkpoint_utils`` save through :class:`CheckpointPathManager`."""
    from fairseq import checkpoint_utils

    checkpoint_utils.PathManager = CheckpointPathManager
    saving_logger = logging.getLogger(checkpoint_utils.__name__)
    if not any(isinstance(f, _SaveTracebackFilter) for f in saving_logger.filters):
        saving_logger.addFilter(_SaveTracebackFilter())
