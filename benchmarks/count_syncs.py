"""Count the device-to-host synchronisations of one multi_teacher_distill step, without a GPU.

    python benchmarks/count_syncs.py

On a GPU, the host waits for the device whenever a value must be read back: ``.item()``,
``bool()``/``int()`` of a tensor, ``.tolist()``, ``.cpu()``, and ops whose output size depends on
the data (boolean-mask indexing, ``nonzero``, ``unique``, ``masked_select``, ``repeat_interleave``
without ``output_size``). This script runs the criterion's forward and its metric reduction on
CPU under a dispatch mode that counts those ops (and patches ``tolist``/``cpu`` to count calls), so
the count is what the same step would do on a GPU. The student's own forward (fairseq's RoBERTa
with ``masked_tokens``, the same for the stock masked_lm criterion) is counted separately.
"""
import collections
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_distill as bd  # noqa: E402
from fairseq import metrics  # noqa: E402

from balkd_fairseq.criterions.multi_teacher_distill import MultiTeacherDistillConfig, MultiTeacherDistillCriterion  # noqa: E402
from balkd_fairseq.soft_labels.cache import TeacherCache  # noqa: E402
from balkd_fairseq.soft_labels.cache_build import build_cache  # noqa: E402

DATA_DEPENDENT = {"_local_scalar_dense", "nonzero", "_unique2", "unique_dim", "unique_consecutive", "masked_select", "_unique"}


class SyncCounter(TorchDispatchMode):
    active = None

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __enter__(self):
        SyncCounter.active = self
        return super().__enter__()

    def __exit__(self, *exc):
        SyncCounter.active = None
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        if name in DATA_DEPENDENT:
            self.counts[name] += 1
        elif name == "repeat_interleave" and kwargs.get("output_size") is None and len(args) < 3:
            self.counts[name] += 1
        elif name in ("index", "index_put", "index_put_") and len(args) > 1 and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None):
            self.counts["boolean_index"] += 1
        return func(*args, **kwargs)


def _counting(method, only_in_inference_mode=False):
    """Count calls of a Tensor method; scalar reads are counted here only under inference_mode, where
    (on CPU) they bypass the dispatch mode, and by the dispatch mode otherwise."""
    original = getattr(torch.Tensor, method)

    def wrapper(self, *args, **kwargs):
        if SyncCounter.active is not None and (not only_in_inference_mode or torch.is_inference_mode_enabled()):
            SyncCounter.active.counts[method] += 1
        return original(self, *args, **kwargs)

    setattr(torch.Tensor, method, wrapper)


def count(fn) -> dict:
    with SyncCounter() as counter:
        fn()
    return dict(counter.counts, total=sum(counter.counts.values()))


def main() -> None:
    for method in ("tolist", "cpu"):
        _counting(method)
    for method in ("__bool__", "__int__", "__float__", "item"):
        _counting(method, only_in_inference_mode=True)
    args = bd.parse_args(["--layers", "1", "--dim", "32", "--vocab", "120", "--languages", "3", "--batch", "6", "--seq-len", "16"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bd.write_data(tmp / "data", args)
        task = bd.make_task(tmp / "data", args)
        mixed, as_one = bd.mixed_batch(task, args)
        student = bd.build_model(task, args, seed=1)
        teachers = bd.build_teachers(task, args, range(args.languages))
        build_cache(task, teachers, str(tmp / "cache"), {"train": [1]}, k=4, batch_size=6, max_tokens=None,
                    device=torch.device("cpu"), progress=False)
        criteria = {"online": MultiTeacherDistillCriterion(MultiTeacherDistillConfig(), task, soft_labels=teachers),
                    "cache": MultiTeacherDistillCriterion(MultiTeacherDistillConfig(), task,
                                                          soft_labels=TeacherCache.open(str(tmp / "cache"), task))}
        pad = task.source_dictionary.pad()
        print("student forward alone:", count(lambda: student(**mixed["net_input"], masked_tokens=mixed["target"].ne(pad))))
        for name, crit in criteria.items():
            for batch_name, batch in (("mixed batch", mixed), ("one-language batch", as_one)):
                if name == "cache" and batch is as_one:
                    continue  # the cache holds the real languages only
                log = crit(student, batch)[2]
                forward = count(lambda: crit(student, batch))

                def reduce():
                    with metrics.aggregate():
                        task.reduce_metrics([log], crit)

                print(f"{name}, {batch_name}: criterion forward {forward}; reduce_metrics {count(reduce)}")


if __name__ == "__main__":
    main()
