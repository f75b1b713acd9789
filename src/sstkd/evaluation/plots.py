"""Figures for the report (matplotlib, returned as Figure objects for the catalog to save)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from sstkd.data.sources import IGNORE_INDEX  # noqa: E402
from sstkd.data.transforms import normalized_batch  # noqa: E402
from sstkd.distill.contourlet import ContourletDecomposition, standardize_channels  # noqa: E402
from sstkd.distill.texture_statistics import DenoisedTextureEqualization, rms_scale_channels  # noqa: E402
from sstkd.evaluation.study_summary import split_label  # noqa: E402
from sstkd.study import split_model_name  # noqa: E402


def _palette(num_classes: int) -> np.ndarray:
    colours = plt.get_cmap("tab20" if num_classes > 10 else "tab10")(np.arange(num_classes) % 20)[:, :3]
    palette = np.zeros((256, 3))
    palette[:num_classes] = colours
    palette[IGNORE_INDEX] = 0
    return palette


def plot_study(per_model: pd.DataFrame, summary: pd.DataFrame, confidence: float = 0.95) -> plt.Figure:
    """Per method: every seed's mIoU / boundary F (points) on the evaluation split, the mean and its interval (bar);
    teacher dashed."""
    panels = {"miou": f"{split_label(summary, 'mIoU')} (%)",
              "boundary_fscore": f"{split_label(summary, 'boundary F-score')} (%)"}
    students = summary[summary["role"] == "student"].reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.3 * len(students) + 3), 3.8), squeeze=False)
    rng = np.random.default_rng(0)  # jitter only, so that equal values stay visible
    for ax, (metric, label) in zip(axes[0], panels.items()):
        for i, row in students.iterrows():
            values = per_model.loc[per_model["method"] == row["method"], metric].to_numpy(dtype=float)
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=16, color=f"C{i}", alpha=0.7, zorder=3)
            mean, low, high = row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
            if np.isfinite(low):
                ax.errorbar(i + 0.3, mean, yerr=[[mean - low], [high - mean]], fmt="o", color="k", capsize=4,
                            markersize=4, zorder=4)
            else:
                ax.plot(i + 0.3, mean, "o", color="k", markersize=4)
        for _, teacher in summary[summary["role"] == "teacher"].iterrows():
            ax.axhline(teacher[f"{metric}_mean"], color="0.4", linestyle="--", linewidth=1,
                       label=f"{teacher['method']} {teacher[f'{metric}_mean']:.1f}")
        ax.set_xticks(range(len(students)), students["method"], rotation=20, ha="right")
        ax.set_xlim(-0.5, len(students) - 0.3)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    seeds = int(students["seeds"].max()) if len(students) else 0
    interval = f"mean and {100 * confidence:g}% t-interval" if seeds > 1 else "one seed: no interval"
    fig.suptitle(f"Per method: each seed (points), {interval} (black); teacher dashed", fontsize=10)
    fig.tight_layout()
    return fig


def plot_per_class_iou(per_class: dict[str, list[float | None]], class_names: list[str]) -> plt.Figure:
    """``per_class[method]``: per-class IoU averaged over the method's seeds."""
    fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(class_names)), 3.8))
    width = 0.8 / max(len(per_class), 1)
    x = np.arange(len(class_names))
    for i, (method, values) in enumerate(per_class.items()):
        heights = [np.nan if v is None else 100 * v for v in values]
        ax.bar(x + (i - (len(per_class) - 1) / 2) * width, heights, width, label=method)
    ax.set_xticks(x, class_names, rotation=35, ha="right")
    ax.set_ylim(0, 115)  # headroom for the legend above the bars
    ax.set_ylabel("IoU (%, mean over seeds)")
    ax.set_title("Per-class IoU")
    ax.legend(fontsize=8, ncol=min(len(per_class), 4))
    fig.tight_layout()
    return fig


def plot_predictions(images: np.ndarray, masks: np.ndarray, predictions: dict[str, np.ndarray],
                     num_classes: int, class_names: list[str] | None = None) -> plt.Figure:
    """Rows: samples; columns: image, ground truth, then each model's prediction; a class-colour legend below."""
    from matplotlib.patches import Patch

    palette = _palette(num_classes)
    columns = ["image", "ground truth", *predictions]
    fig, axes = plt.subplots(len(images), len(columns), figsize=(2.1 * len(columns), 2.1 * len(images)),
                             squeeze=False)
    for row in range(len(images)):
        panels = [images[row], palette[masks[row]], *(palette[p[row]] for p in predictions.values())]
        for col, (title, panel) in enumerate(zip(columns, panels)):
            axes[row, col].imshow(panel)
            axes[row, col].axis("off")
            if row == 0:
                axes[row, col].set_title(title, fontsize=9)
    names = class_names or [str(i) for i in range(num_classes)]
    handles = [Patch(color=palette[i], label=name) for i, name in enumerate(names)]
    handles.append(Patch(color=palette[IGNORE_INDEX], label="ignored"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(handles) // 6), 1, 1))
    return fig


@torch.no_grad()
def plot_texture_modules(image: np.ndarray, networks: dict[str, torch.nn.Module], normalization: dict,
                         levels: int = 3, directions: int = 8, quantization: int = 16) -> plt.Figure:
    """For one image: CDM sub-band energy of the finest level per direction, and DTIEM histograms, per network."""
    batch = normalized_batch(image[None], normalization)
    cdm = ContourletDecomposition(levels, directions)
    dtiem = DenoisedTextureEqualization((quantization,))
    fig, axes = plt.subplots(len(networks), directions + 2, figsize=(1.9 * (directions + 2), 2.1 * len(networks)),
                             squeeze=False, layout="constrained")
    for row, (name, network) in enumerate(networks.items()):
        low_level = network.cpu().eval()(batch).low_level
        subbands = cdm(standardize_channels(low_level))[0][0]  # finest level, first image: (D, C, h, w)
        energy = subbands.pow(2).mean(dim=1)
        scale = float(energy.max())
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(name, fontsize=10)
        for d in range(directions):
            shown = axes[row, d + 1].imshow(energy[d], cmap="magma", vmin=0, vmax=scale)
            if row == 0:
                axes[row, d + 1].set_title(f"{180 * d / directions:.0f}°", fontsize=10)  # wedge centres
        colour_bar = fig.colorbar(shown, ax=list(axes[row, 1:-1]), fraction=0.015, pad=0.01)
        colour_bar.set_label("band energy", fontsize=8)
        colour_bar.ax.tick_params(labelsize=7)
        stats = dtiem(rms_scale_channels(low_level))[0]  # as L_sta prepares features: never centred
        axes[row, -1].bar(np.arange(quantization), stats.histogram[0].numpy(), color="0.6", label="counts")
        axes[row, -1].plot(np.arange(quantization), stats.denoised[0].numpy(), "r-", label="denoised")
        axes[row, -1].plot(np.arange(quantization), stats.cdf[0].numpy() / quantization * 2, "b--", label="CDF (scaled)")
        axes[row, -1].set_ylabel("share of pixels", fontsize=8)
        axes[row, -1].tick_params(labelsize=7)
        if row == 0:
            axes[row, -1].set_title("DTIEM histogram", fontsize=10)
            axes[row, -1].legend(fontsize=7)
        if row == len(networks) - 1:
            axes[row, -1].set_xlabel(f"intensity level (of {quantization})", fontsize=8)
        for ax in axes[row, :-1]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Stage-1 features: CDM finest-level energy per wave-vector direction (one colour scale per row) "
                 "and DTIEM intensity histogram", fontsize=11)
    return fig


def plot_class_frequencies(statistics: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(statistics["class_names"])), 3.2))
    ax.bar(statistics["class_names"], 100 * np.asarray(statistics["class_frequency"]))
    ax.set_ylabel("% of labelled pixels")
    ax.set_title(f"Class frequencies (train split, {statistics['num_images']} images)")
    ax.tick_params(axis="x", rotation=35)
    fig.tight_layout()
    return fig


def plot_texture_transfer(results: dict[str, dict]) -> plt.Figure:
    """Directional energy profiles per method (mean over seeds), and each transfer measure per method: every seed
    as a point, the mean as a bar, the teacher's value dashed."""
    panels = [("profile_l1", "directional profile L1 to teacher ↓"), ("intensity_l1", "DTIEM equalised-intensity L1 ↓"),
              ("histogram_w1", "DTIEM histogram W1 ↓"), ("cka", "linear CKA to teacher ↑"),
              ("probe_accuracy", "stage-1 linear probe accuracy ↑")]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.1 * (len(panels) + 1), 3.4))
    if not results:
        for ax in axes:
            ax.axis("off")
        axes[0].text(0.5, 0.5, "texture transfer disabled", ha="center")
        return fig
    by_method: dict[str, list[dict]] = {}
    for model, result in results.items():
        by_method.setdefault(split_model_name(model)[0], []).append(result)
    methods = list(by_method)
    for method, runs in by_method.items():
        profile = np.mean([np.asarray(run["profile"]) for run in runs], axis=0)
        axes[0].plot(profile.flatten(), marker=".", label=method, linewidth=2.2 if method == "teacher" else 1.0)
    directions = np.asarray(next(iter(results.values()))["profile"]).shape[1]
    axes[0].set_xlabel(f"level × direction ({directions} per level)")
    axes[0].set_ylabel("share of band-pass energy")
    axes[0].set_title("directional energy profile", fontsize=9)
    axes[0].legend(fontsize=7)
    x = np.arange(len(methods))
    for ax, (key, title) in zip(axes[1:], panels):
        values = [[run[key] for run in by_method[m]] for m in methods]
        colours = ["0.55" if m == "teacher" else f"C{i}" for i, m in enumerate(methods)]
        ax.bar(x, [np.mean(v) for v in values], color=colours, alpha=0.6)
        for i, seed_values in enumerate(values):
            ax.scatter(np.full(len(seed_values), i), seed_values, s=10, color="k", zorder=3)
        if "teacher" in by_method:
            ax.axhline(by_method["teacher"][0][key], color="k", linestyle="--", linewidth=0.8, label="teacher")
        ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        if key == "probe_accuracy":
            flat = [v for seed_values in values for v in seed_values]
            ax.set_ylim(max(0.0, min(flat) - 0.05), min(1.0, max(flat) + 0.02))
    fig.suptitle("Texture transfer: each network's stage-1 features vs the teacher's (evaluation split; "
                 "points: seeds)", fontsize=10)
    fig.tight_layout()
    return fig
