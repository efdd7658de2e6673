"""Atomic checkpoint copies: a run killed while saving never leaves a truncated checkpoint_last.pt.

fairseq writes each checkpoint once, atomically (``<name>.tmp``, then a rename), and then *copies*
it to the other names due at that moment (``checkpoint_last.pt``, ``checkpoint_best.pt``, ...) with
``shutil.copyfile``, which is not atomic: a job killed during the copy (preemption, ``kill -9``, the
OOM killer) leaves a truncated ``checkpoint_last.pt`` and cannot resume. :func:`make_checkpoint_copies_atomic`
makes fairseq's local-file copy write ``<dst>.tmp`` and rename it over ``<dst>``, so every checkpoint
name holds either its previous or its new complete file.
"""
import os
import shutil

from fairseq import file_io


def atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> str:
    """``shutil.copyfile(src, dst)`` that replaces ``dst`` only once the copy is complete."""
    tmp_path = os.fspath(dst_path) + ".tmp"
    shutil.copyfile(src_path, tmp_path)
    os.replace(tmp_path, dst_path)
    return dst_path


# fairseq's own copy (iopath's when installed), also if this module is executed a second time
_fairseq_copy = getattr(file_io.PathManager, "fairseq_copy", file_io.PathManager.copy)


def copy_local_files_atomically(src_path: str, dst_path: str, overwrite: bool = False):
    """fairseq's ``PathManager.copy``: :func:`atomic_copy` for local files, fairseq's own for remote URIs."""
    if "://" in str(src_path) or "://" in str(dst_path):
        return _fairseq_copy(src_path, dst_path, overwrite)
    return atomic_copy(src_path, dst_path, overwrite)


def make_checkpoint_copies_atomic() -> None:
    """Idempotently route fairseq's ``PathManager.copy`` through :func:`copy_local_files_atomically`."""
    file_io.PathManager.fairseq_copy = staticmethod(_fairseq_copy)
    file_io.PathManager.copy = staticmethod(copy_local_files_atomically)
