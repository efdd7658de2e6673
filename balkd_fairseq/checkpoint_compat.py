"""Let fairseq load its own checkpoints under torch's ``weights_only=True`` default (torch >= 2.6).

fairseq calls ``torch.load`` without ``weights_only`` when it reads checkpoints
(``checkpoint_utils.load_checkpoint_to_cpu``) and when it broadcasts checkpoint state between
processes (``distributed/utils.py``). Since torch 2.6 that means ``weights_only=True``, which refuses
the few non-tensor Python objects fairseq pickles: ``argparse.Namespace`` (legacy ``args``), the
OmegaConf config it broadcasts, and numpy scalars in metrics and best-checkpoint scores.

:func:`allow_fairseq_checkpoints` adds exactly those classes to torch's allowlist of safe globals.
Safety is not switched off: any other pickled object is still refused, and never executed.
"""
import argparse
import collections
import errno
import pickle
import re
import typing
import zipfile

import torch

_installed = False


def _numpy_globals() -> list:
    import numpy as np

    try:
        from numpy.core.multiarray import scalar as np_scalar  # numpy < 2
    except ImportError:  # pragma: no cover - numpy >= 2 keeps it under _core
        from numpy._core.multiarray import scalar as np_scalar
    dtype_classes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    return [np_scalar, np.dtype, *dtype_classes]


def _omegaconf_globals() -> list:
    from omegaconf import DictConfig, ListConfig, nodes
    from omegaconf.base import ContainerMetadata, Metadata

    node_classes = [
        nodes.AnyNode, nodes.StringNode, nodes.IntegerNode, nodes.FloatNode, nodes.BooleanNode,
        nodes.EnumNode, nodes.BytesNode, nodes.PathNode, nodes.ValueNode,
    ]
    return [DictConfig, ListConfig, ContainerMetadata, Metadata, *node_classes]


def _fairseq_globals() -> list:
    # broadcast_object() replaces tensors by placeholders before pickling the rest of the state
    from fairseq.distributed.utils import _TensorPlaceholder

    return [_TensorPlaceholder]


def fairseq_checkpoint_globals() -> list:
    """Every non-tensor class that fairseq writes into a checkpoint or its distributed broadcast."""
    # builtin types appear as values (types, not instances) in OmegaConf node metadata
    builtin = [argparse.Namespace, collections.defaultdict, typing.Any, dict, list, tuple, str, int, float, bool, bytes]
    return builtin + _numpy_globals() + _omegaconf_globals() + _fairseq_globals()


def allow_fairseq_checkpoints() -> None:
    """Idempotently allowlist :func:`fairseq_checkpoint_globals` for ``torch.load(weights_only=True)``."""
    global _installed
    if _installed or not hasattr(torch.serialization, "add_safe_globals"):
        return
    torch.serialization.add_safe_globals(fairseq_checkpoint_globals())
    _installed = True


def describe_load_error(err: BaseException) -> str:
    """Why ``torch.load`` failed on a checkpoint file, in one line (torch's own messages span many)."""
    text = str(err)
    if type(err).__name__ == "NotACheckpoint":  # (checkpoints.py, which imports this module)
        return text
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return f"it pickles {refused.group(1)}, which is outside balkd-fairseq's checkpoint allowlist (refused, not executed)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Weights only load failed" in text:
        marker = next((i for i, line in enumerate(lines) if "WeightsUnpickler error" in line), None)
        reason = lines[marker + 1] if marker is not None and marker + 1 < len(lines) else type(err).__name__
        return f"not a readable checkpoint (corrupt, or not written by torch.save): {reason}"
    first = lines[0].split(". ")[0] if lines else type(err).__name__
    if "PytorchStreamReader" in text or isinstance(err, (EOFError, pickle.UnpicklingError)) \
            or getattr(err, "errno", None) == errno.EINVAL:
        return f"truncated or corrupt file ({first})"
    return f"{type(err).__name__}: {first}"


# what torch.load and fairseq's state-dict upgrade raise for a file that is not a readable fairseq checkpoint
# (truncated zip, refused pickle, random bytes, a pickle of something else); anything else is a bug. OSError:
# memory-mapping a zip cut inside a record's data fails with EINVAL, and a file can be unreadable
UNREADABLE_CHECKPOINT_ERRORS = (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError, TypeError,
                                AttributeError, UnicodeDecodeError, zipfile.BadZipFile, OSError)
