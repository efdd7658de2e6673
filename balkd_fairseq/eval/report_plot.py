"""The report's plot: grouped bars per language and model, one panel per metric, error bars over runs."""
from typing import List, Sequence

from .report import cell
from .report_runs import Metric, Model


def plot_png(models: List[Model], metrics: List[Metric], languages: Sequence[str], path) -> None:
    """Grouped bars per language and model (mean over runs, error bars: std over runs), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_figure(models, metrics, languages)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def model_colors(count: int) -> List[str]:
    """One colour per model, distinct for up to 20 models (matplotlib's tab10, then tab20)."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(palette(i % palette.N)) for i in range(count)]


def plot_figure(models: List[Model], metrics: List[Metric], languages: Sequence[str]):
    """The figure of :func:`plot_png`. The legend is drawn from the models' colours, not from the first panel's
    bars: a model without that panel's metric (e.g. a probing-only control) still gets its own entry."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    width = 0.8 / max(1, len(models))
    colors = model_colors(len(models))
    fig, axes = plt.subplots(len(metrics), 1, squeeze=False,
                             figsize=(min(120, max(6, 0.45 * len(languages) * max(1, len(models)) + 3)), 2.6 * len(metrics)))
    for ax, metric in zip(axes[:, 0], metrics):
        for i, model in enumerate(models):
            xs, heights, errors = [], [], []
            for x, lang in enumerate(languages):
                mean, std = cell(model, metric, [lang])
                if mean is not None:
                    xs.append(x + (i - (len(models) - 1) / 2) * width)
                    heights.append(mean)
                    errors.append(std or 0.0)
            ax.bar(xs, heights, width=width, yerr=errors, capsize=2, color=colors[i])
        suffix = " (%)" if metric.scale == 100.0 else ""
        ax.set_title(metric.title + suffix + (" (lower is better, log scale)" if metric.log_scale else "")
                     + "; error bars: std over runs")
        if metric.log_scale:
            ax.set_yscale("log")
        ax.set_xticks(range(len(languages)))
        ax.set_xticklabels(languages, rotation=90 if len(languages) > 20 else 0)
    axes[0, 0].legend(handles=[Patch(color=c, label=m.name) for m, c in zip(models, colors)], loc="best", fontsize="small")
    fig.tight_layout()
    return fig
