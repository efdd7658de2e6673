"""What a run of one of the plugin's tasks sets up for itself, and nothing at import time.

``fairseq-train`` / ``fairseq-hydra-train`` import the plugin for every run that names
``--user-dir``, whatever the task; only when one of the plugin's tasks is set up does
:func:`start_task_run` (called from the task's ``setup_task``, and from ``add_args`` of the parser that chose the task so
that errors of fairseq's own start-up checks such as an unwritable ``--save-dir`` are covered too):

* install the one-line error handling (:func:`balkd_fairseq.errors.install_error_handling`);
* make fairseq's checkpoint saving atomic (:mod:`balkd_fairseq.atomic_checkpoints`);
* lock the run's ``--save-dir`` (:mod:`balkd_fairseq.locks`) and refuse one it cannot write or that lies
  inside the data directory;
* stop fairseq's data prefetch thread before the interpreter exits (see :func:`stop_prefetch_threads`).
"""
import atexit
import logging
import os
import queue
import sys
import threading
import time
from typing import Set

from .errors import BalkdError, install_error_handling

logger = logging.getLogger(__name__)

_started = False
_locked_save_dirs: Set[str] = set()  # (real paths) the --save-dir of every run this process has been the master of
_FAIRSEQ_TRAIN = os.path.join("fairseq_cli", "train.py")
_FAIRSEQ_TASKS = os.path.join("fairseq", "tasks", "__init__.py")


def start_task_run():
    """Idempotent; see the module docstring. Returns the checkpoint config of the training run this
    process is the master of (its ``--save-dir`` locked), or None (not yet known, another rank, no run).

    A process may run several trainings one after another (``fairseq-hydra-train --multirun``, a script
    calling ``fairseq_cli.train.main`` twice): each run's own save dir is locked when it sets up the task.
    """
    global _started
    install_error_handling()
    if not _started:
        _started = True
        from .atomic_checkpoints import enable_atomic_checkpoint_copies

        enable_atomic_checkpoint_copies()
        atexit.register(stop_prefetch_threads)
    cfg = fairseq_run_config()  # (none yet when called from add_args)
    if cfg is None or not _is_master(cfg):
        return None
    save_dir = cfg.checkpoint.save_dir
    if os.path.realpath(save_dir) not in _locked_save_dirs:
        _refuse_save_dir_inside_data(save_dir, getattr(getattr(cfg, "task", None), "data", None))
        check_writable_dir(save_dir, "--save-dir")
        from .locks import hold_directory_lock

        hold_directory_lock(save_dir, "--save-dir")
        _locked_save_dirs.add(os.path.realpath(save_dir))
    return cfg.checkpoint


def _refuse_save_dir_inside_data(save_dir: str, data) -> None:
    """Checkpoints never go into DATA: its subdirectories are languages, so every later command would trip on them."""
    from .outputs import lies_within

    if isinstance(data, str) and data and lies_within(save_dir, data.split(os.pathsep)[0]):
        try:
            os.rmdir(save_dir)  # fairseq-train created it, empty, before setting up the task
        except OSError:
            pass
        raise BalkdError(f"--save-dir: {save_dir} is or lies inside the data directory {data}; checkpoints are never "
                         "written into DATA (its subdirectories are languages): choose another directory")


def chosen_for_this_run(task_name: str) -> bool:
    """Whether the call of task ``task_name``'s ``add_args`` that calls this means a run of that task.

    Importing ``--user-dir`` makes fairseq's ``import_tasks`` call every plugin task's ``add_args`` on a
    throw-away parser (for its docs), whatever the run's task. There the run's config decides:
    ``fairseq-hydra-train`` imports the plugin inside ``fairseq_cli.train.main``, whose config names
    the task; ``fairseq-train`` has none yet, and its own parser calls ``add_args`` of the task it chose.
    """
    caller = sys._getframe(2)  # chosen_for_this_run <- add_args <- its caller
    if not (caller.f_code.co_name == "import_tasks" and caller.f_code.co_filename.endswith(_FAIRSEQ_TASKS)):
        return True
    cfg = fairseq_run_config()
    return cfg is not None and getattr(cfg.task, "_name", None) == task_name


def fairseq_run_config():
    """The FairseqConfig of the ``fairseq_cli.train.main`` that is setting up the task, if any.

    fairseq passes only the task's part of the config to ``setup_task``; the save directory is in the
    caller's ``cfg``. None when the task is set up by other code (evaluation, export, tests).
    """
    frame = sys._getframe(1)
    while frame is not None:
        # by file, not module name: ``python -m fairseq_cli.train`` runs it as ``__main__``
        if frame.f_code.co_name == "main" and frame.f_code.co_filename.endswith(_FAIRSEQ_TRAIN):
            cfg = frame.f_locals.get("cfg")
            return cfg if hasattr(cfg, "checkpoint") else None
        frame = frame.f_back
    return None


def _is_master(cfg) -> bool:
    from fairseq import distributed_utils

    return distributed_utils.is_master(cfg.distributed_training)


def check_writable_dir(path: str, flag: str) -> None:
    """Refuse a directory this process cannot create or write, before any work."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise BalkdError(f"{flag}: cannot create {path}: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise BalkdError(f"{flag}: {path} is not writable (checkpoints could not be saved)")


def stop_prefetch_threads(timeout: float = 30.0) -> None:
    """End fairseq's ``BackgroundConsumer`` data prefetch threads and wait for them.

    With ``--data-buffer-size`` > 0 fairseq prefetches batches in a daemon thread. A run that stops at
    ``--max-update`` in the middle of an epoch leaves it producing a batch while the interpreter shuts
    down; when it is inside torch code at that moment the process aborts ("terminate called without
    an active exception", exit 134) after a successful run. Registered with ``atexit`` (which runs
    before the interpreter tears anything down): tell each thread to stop after its current item,
    empty its queue so that it is never blocked on a full one, and join it.
    """
    consumer_class = getattr(sys.modules.get("fairseq.data.iterators"), "BackgroundConsumer", None)
    if consumer_class is None:
        return
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if isinstance(thread, consumer_class) and thread.is_alive():
            _stop_consumer(thread, deadline)


def _stop_consumer(thread, deadline: float) -> None:
    thread._max_len = 0  # BackgroundConsumer stops once count >= _max_len, checked after each item
    while thread.is_alive() and time.monotonic() < deadline:
        _drain(thread._queue)
        thread.join(0.01)
    if thread.is_alive():
        logger.warning("the data prefetch thread did not stop in time")


def _drain(items: queue.Queue) -> None:
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            return
