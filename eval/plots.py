"""Report plots: accuracy against kept visual tokens (digit world, every benchmark) and against prefill FLOPs."""

from pathlib import Path

import matplotlib
import numpy as np


matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_accuracy(results: dict, path: Path) -> None:
    """Accuracy against kept visual tokens, one line per method, full model and answer prior as references."""
    figure, axis = plt.subplots(figsize=(6, 4))
    methods = [m for m in dict.fromkeys(row["method"] for row in results["rows"]) if m != "full"]
    for method in methods:
        rows = sorted((r for r in results["rows"] if r["method"] == method), key=lambda r: r["kept_tokens"])
        axis.plot([r["kept_tokens"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o", label=method)
    for full in (r for r in results["rows"] if r["method"] == "full"):
        axis.axhline(100 * full["accuracy"], color="black", linestyle="--", label="all tokens")
    axis.axhline(100 * results["answer_prior"]["accuracy"], color="grey", linestyle=":", label="answer prior")
    title = f"Digit world, held-out test split, {results.get('canvas', '3-6 digits per canvas')}"
    axis.set(xlabel="visual tokens kept", ylabel="accuracy (%)", title=title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_coverage(splits: dict[str, dict], path: Path) -> None:
    """One panel per digit-world split: named-target coverage (the questions whose named digits keep every patch)
    against kept visual tokens, one line per method."""
    figure, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.6), squeeze=False)
    for axis, (name, results) in zip(axes[0], splits.items()):
        rows = [r for r in results["rows"] if r["method"] != "full" and r.get("named_target_coverage") is not None]
        for method in dict.fromkeys(r["method"] for r in rows):
            points = sorted(
                (r["kept_tokens"], 100 * r["named_target_coverage"]) for r in rows if r["method"] == method
            )
            axis.plot(*zip(*points), marker="o", label=method)
        axis.set(title=f"{name} ({results.get('canvas', '')})", xlabel="visual tokens kept", ylabel="coverage (%)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_benchmarks(scores: dict[str, dict[tuple[str, int], float]], path: Path) -> None:
    """One panel per benchmark: its headline score against kept visual tokens, one line per method."""
    figure, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.4), squeeze=False)
    for axis, (name, table) in zip(axes[0], scores.items()):
        methods = [m for m in dict.fromkeys(method for method, _ in table) if m != "full"]
        for method in methods:
            points = sorted((kept, value) for (m, kept), value in table.items() if m == method)
            axis.plot(*zip(*points), marker="o", label=method)
        full = [value for (m, _), value in table.items() if m == "full"]
        if full:
            axis.axhline(full[0], color="black", linestyle="--", label="all tokens")
        axis.set(title=name, xlabel="visual tokens kept", ylabel="score")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_accuracy_vs_flops(results: dict, path: Path) -> None:
    """Digit-world accuracy against the analytic prefill FLOPs relative to the full model, one line per method: at the
    base's own shapes and, in a second panel, at the reference shapes (`results["flops_reference"]`) when given."""
    panels = [("flops_ratio", "Digit world, this base")]
    if results.get("flops_reference"):
        panels.append(("reference_flops_ratio", f"The same keep ratios at {results['flops_reference']}"))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for axis, (key, title) in zip(axes[0], panels):
        for method in dict.fromkeys(row["method"] for row in results["rows"]):
            rows = sorted((r for r in results["rows"] if r["method"] == method and key in r), key=lambda r: r[key])
            axis.plot([100 * r[key] for r in rows], [100 * r["accuracy"] for r in rows], marker="o", label=method)
        axis.axhline(100 * results["answer_prior"]["accuracy"], color="grey", linestyle=":", label="answer prior")
        axis.set(xlabel="prefill FLOPs (% of full, selection included)", ylabel="accuracy (%)", title=title)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def shade_dropped_patches(image: np.ndarray, kept: list[int], grid: tuple[int, int]) -> np.ndarray:
    """`image` (uint8, height x width x 3) with the patches not in `kept` (row-major indices into a grid of
    `grid = (rows, columns)` patches over the whole image) greyed out."""
    rows, columns = grid
    keep = np.zeros(rows * columns, dtype=bool)
    keep[kept] = True
    height, width = image.shape[:2]
    shade = keep.reshape(rows, columns)[
        (np.arange(height) * rows // height)[:, None], np.arange(width) * columns // width
    ]
    pixels = image.astype(np.float32) / 255
    return np.round(255 * np.where(shade[..., None], pixels, 0.25 + 0.25 * pixels)).astype(np.uint8)


def plot_kept_patches(examples: list[dict], selections: dict, patch_size: int, path: Path) -> None:
    """A grid: one row per example (its question and answer), one column per method; dropped patches greyed out."""
    methods = list(selections)
    figure, axes = plt.subplots(
        len(examples), len(methods), figsize=(2.2 * len(methods), 2.5 * len(examples)), squeeze=False
    )
    for row, example in enumerate(examples):
        image = np.asarray(example["image"])
        side = image.shape[0] // patch_size
        for column, method in enumerate(methods):
            kept = [index for index in selections[method][row].tolist() if index >= 0]
            axis = axes[row][column]
            axis.imshow(shade_dropped_patches(image, kept, (side, side)))
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"{method} ({len(set(kept))} kept)", fontsize=9)
            if column == 0:
                axis.set_ylabel(f"{example['question']}?\n-> {example['answer']}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
