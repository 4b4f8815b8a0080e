"""Evaluation and report of a `tprl-train` run: TPRL vs. imitation only vs. training-free methods, with plots."""

import json
import logging
import os
from pathlib import Path

import matplotlib


matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from accelerate import PartialState  # noqa: E402

from modeling_tprl import TPRLForConditionalGeneration  # noqa: E402
from modeling_tprl.processing_tprl import load_processor  # noqa: E402

from .digit_world_eval import (
    DIGIT_WORLD_SPLITS,
    add_digit_world_split,
    canvas_budget,
    digit_world_report,
    evaluate_methods,
    markdown_table,
)  # noqa: E402


logger = logging.getLogger(__name__)


def evaluate_training_run(
    output_dir: str | Path, keep_ratios: list[float], num_examples: int, adaptive_targets: list[float] = ()
) -> dict:
    """
    Evaluates the trained model (`output_dir/budget/final` with adaptive budgets, else `output_dir/ppo/final`) and
    `output_dir/imitation` on the held-out questions of both digit-world splits (usual and dense canvases); writes
    `eval/`. An adaptive policy is also evaluated at `adaptive_targets` (mean keep ratios) within its operating
    points.

    The questions and the random method's draws are `tprl-eval`'s defaults whatever the training seed, so runs with
    different seeds are compared on the same questions.
    """
    output_dir = Path(output_dir)
    eval_dir = output_dir / "eval"
    final = str(output_dir / "budget" / "final")
    if not os.path.isdir(final):
        final = str(output_dir / "ppo" / "final")
    processor = load_processor(final)
    model = TPRLForConditionalGeneration.from_pretrained(final).eval()
    # The vision tower's own score: [CLS] attention where there is a [CLS] token, else the attention tokens receive.
    vision_score = "cls_attention" if model.family.has_cls_token else "vision_attention"
    methods = ["full", "tprl", "random", "uniform", vision_score, "fastv", "oracle"]
    imitation = TPRLForConditionalGeneration.from_pretrained(output_dir / "imitation" / "final").eval()
    results = {"model": final}
    targets = [target for target in adaptive_targets if _reachable(model.config, target)]
    if len(targets) < len(adaptive_targets):
        logger.warning(
            f"Adaptive targets {sorted(set(adaptive_targets) - set(targets))} are outside the policy's measured "
            f"operating points {model.config.adaptive_operating_points}: not evaluated (widen compute_weight_range)."
        )
    for name, num_digits in DIGIT_WORLD_SPLITS.items():
        split = evaluate_methods(
            model, processor, methods, keep_ratios, num_examples, num_digits=num_digits, adaptive_targets=targets
        )
        imitation_rows = evaluate_methods(
            imitation, processor, ["tprl"], keep_ratios, num_examples, num_digits=num_digits, position_ablation=False
        )
        full_accuracy = split["rows"][0]["accuracy"]
        for row in imitation_rows["rows"]:
            row["method"] = "tprl (imitation only)"
            row["retention"] = round(row["accuracy"] / full_accuracy, 4) if full_accuracy else None
        split["rows"] += imitation_rows["rows"]
        add_digit_world_split(results, name, split)
    if not PartialState().is_main_process:
        return results

    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "results.json").write_text(json.dumps(results, indent=1))
    smallest = canvas_budget(model, processor, min(keep_ratios))
    report = "# TPRL training run\n\n" + digit_world_report(results, model, processor, methods, smallest, eval_dir)
    report += "![training curves](training_curves.png)\n"
    (eval_dir / "report.md").write_text(report)
    plot_training_curves(output_dir, eval_dir / "training_curves.png")
    for split in (results, results["digit_world_dense"]):
        print(markdown_table(split))
    return results


def _reachable(config, target: float) -> bool:
    """Whether the adaptive policy's operating points reach `target` on average (never, for a fixed-budget one)."""
    measured = config.adaptive_keep_ratio_range
    return measured is not None and measured[0] <= target <= measured[1]


def plot_training_curves(output_dir: Path, path: Path) -> None:
    """The stages' logged curves over their steps (from each stage's `log_history.json`): the autoencoder's relative
    error, the imitation loss and its relevance target's, PPO's return, kept accuracy, KL to the imitation policy,
    share of questions trained and relevance target, and the budget head's score error and the keep ratio it chooses
    at a compute weight of 1. A key a run did not log (no relevance target) has no panel."""
    curves = {
        "autoencoder": ["autoencoder/relative_error"],
        "imitation": ["loss", "relevance_loss"],
        "ppo": [
            "objective/episode_return",
            "objective/accuracy_kept",
            "objective/kl",
            "objective/trained_questions",
            "loss/relevance",
        ],
        "budget": ["budget/score_error", "budget/keep_ratio_at_1"],
    }
    panels = []
    for stage, keys in curves.items():
        log_path = output_dir / stage / "log_history.json"
        history = json.loads(log_path.read_text()) if log_path.exists() else []
        for key in keys:
            records = [record for record in history if key in record]
            if records:
                panels.append((f"{stage}: {key}", [r["step"] for r in records], [r[key] for r in records]))
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for axis, (title, steps, values) in zip(axes[0], panels):
        axis.plot(steps, values)
        axis.set(title=title, xlabel="step")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
