"""Evaluation and report of a `tprl-train` run: TPRL vs. imitation only vs. training-free methods, with plots."""

import json
from pathlib import Path

import matplotlib


matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from accelerate import PartialState  # noqa: E402
from transformers import AutoProcessor  # noqa: E402

from modeling_tprl import TPRLForConditionalGeneration  # noqa: E402

from .cli import EvalArguments, evaluate_methods, kept_patch_selections, markdown_table  # noqa: E402
from .plots import plot_accuracy, plot_accuracy_vs_flops, plot_kept_patches  # noqa: E402


def evaluate_training_run(output_dir: str | Path, keep_ratios: list[float], num_examples: int) -> dict:
    """
    Evaluates `output_dir/ppo/final` and `output_dir/imitation` on the held-out split; writes `eval/`.

    The questions and the random method's draws are `tprl-eval`'s defaults whatever the training seed, so runs with
    different seeds are compared on the same questions.
    """
    output_dir = Path(output_dir)
    eval_dir = output_dir / "eval"
    ratios = ",".join(str(r) for r in keep_ratios)
    final = str(output_dir / "ppo" / "final")
    processor = AutoProcessor.from_pretrained(final)

    final_args = EvalArguments(
        model=final,
        methods="full,tprl,random,uniform,cls_attention,fastv,oracle",
        keep_ratios=ratios,
        num_examples=num_examples,
    )
    model = TPRLForConditionalGeneration.from_pretrained(final).eval()
    results = evaluate_methods(model, processor, final_args)
    imitation = str(output_dir / "imitation")
    args = EvalArguments(model=imitation, methods="tprl", keep_ratios=ratios, num_examples=num_examples)
    imitation_rows = evaluate_methods(TPRLForConditionalGeneration.from_pretrained(imitation).eval(), processor, args)
    full_accuracy = results["rows"][0]["accuracy"]
    for row in imitation_rows["rows"]:
        row["method"] = "tprl (imitation only)"
        row["retention"] = round(row["accuracy"] / full_accuracy, 4) if full_accuracy else None
    results["rows"] += imitation_rows["rows"]
    results["model"] = final
    if not PartialState().is_main_process:
        return results

    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "results.json").write_text(json.dumps(results, indent=1))
    report = "# TPRL training run\n\n" + markdown_table(results)
    report += (
        "\n![accuracy](accuracy_vs_kept.png) ![FLOPs](accuracy_vs_flops.png)\n\n![kept patches](kept_patches.png)\n"
    )
    report += "\n![training curves](training_curves.png)\n"
    (eval_dir / "report.md").write_text(report)
    plot_accuracy(results, eval_dir / "accuracy_vs_kept.png")
    plot_accuracy_vs_flops(results, eval_dir / "accuracy_vs_flops.png")
    examples, selections = kept_patch_selections(model, processor, final_args)
    plot_kept_patches(examples, selections, processor.patch_size, eval_dir / "kept_patches.png")
    plot_training_curves(output_dir, eval_dir / "training_curves.png")
    print(markdown_table(results))
    return results


def plot_training_curves(output_dir: Path, path: Path) -> None:
    """Autoencoder error, imitation loss and PPO's reward, kept accuracy, KL to the imitation policy (and, with
    several episodes per question, the share of questions trained) over their steps."""
    panels = []
    for name, key in (("autoencoder", "relative_error"), ("imitation", "loss")):
        log_path = output_dir / name / "log.json"
        if log_path.exists():
            log = json.loads(log_path.read_text())
            panels.append((f"{name}: {key}", [r["step"] for r in log], [r[key] for r in log]))
    history_path = output_dir / "ppo" / "log_history.json"
    if history_path.exists():
        history = [r for r in json.loads(history_path.read_text()) if "episode_return" in r]
        keys = ["episode_return", "accuracy_kept", "kl", "trained_questions"]
        for key in [key for key in keys if history and key in history[0]]:
            panels.append((f"PPO: {key}", [r["step"] for r in history], [r[key] for r in history]))
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for axis, (title, steps, values) in zip(axes[0], panels):
        axis.plot(steps, values)
        axis.set(title=title, xlabel="step")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
