"""The machine a benchmark ran on, as the benchmarks report it (imported by bench_distill.py and bench_scale.py)."""
import os
import platform


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        return name


def describe() -> dict:
    """CPU, cores and the versions a timing depends on."""
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
