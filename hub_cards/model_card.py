"""Model cards for TPRL checkpoints, generated with `huggingface_hub`'s `ModelCard` from an evaluation's results."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData


TEMPLATE_PATH = Path(__file__).parent / "model_card_template.md"
RESULT_ROW_KEYS = ("method", "keep_ratio", "kept_tokens", "accuracy")


def check_results(results: dict) -> None:
    """Raises a `ValueError` naming what is missing when `results` is not a `tprl-eval` / `tprl-train` results file."""
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list) or not results["rows"]:
        raise ValueError("The results file must be a tprl-eval results.json: an object with a non-empty 'rows' list.")
    for index, row in enumerate(results["rows"]):
        missing = [key for key in RESULT_ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"Row {index} of the results lacks {missing}; expected keys {list(RESULT_ROW_KEYS)}.")
        if not isinstance(row["accuracy"], (int, float)) or not 0 <= row["accuracy"] <= 1:
            raise ValueError(
                f"Row {index} of the results has accuracy {row['accuracy']!r}; expected a number in [0, 1]."
            )


def results_table(results: dict) -> str:
    """The usual split's rows, then the dense split's (`digit_world_dense`) if `results` has it."""
    table = _split_table(results)
    if "digit_world_dense" in results:
        dense = results["digit_world_dense"]
        table += f"\n\nDense canvases ({dense.get('canvas', '6 digits per canvas')}):\n\n" + _split_table(dense)
    return table


def _split_table(results: dict) -> str:
    lines = ["| method | kept tokens | keep ratio | accuracy | retention |", "|---|---|---|---|---|"]
    for row in results["rows"]:
        retention = row.get("retention")
        retention = "n/a" if retention is None else f"{100 * retention:.1f}%"
        lines.append(
            f"| {row['method']} | {row['kept_tokens']} | {row['keep_ratio']:.3f} | {100 * row['accuracy']:.1f} | "
            f"{retention} |"
        )
    prior = results.get("answer_prior", {}).get("accuracy")
    if prior is not None:
        lines.append(f"\nAnswer prior (no image): {100 * prior:.1f}%.")
    return "\n".join(lines)


def build_model_card(
    config,
    repo_id: str,
    results: dict | None = None,
    dataset_name: str = "digit_world",
    training_config: str | None = None,
    plot: str | None = None,
    license: str = "apache-2.0",
    space: str | None = None,
) -> ModelCard:
    """
    The card of a TPRL checkpoint.

    Args:
        config ([`TPRLConfig`]): the model's configuration (base, budget, steps).
        repo_id (`str`): where the card will live, used in the usage code.
        results (`dict`, *optional*): a `results.json` of `tprl-eval` / `tprl-train`; its TPRL rows become the
            card's `model-index` (accuracy per budget) and every row goes into the results table.
        dataset_name (`str`): the evaluation dataset's name in `model-index`.
        training_config (`str`, *optional*): the YAML the pruner was trained with, shown in the card.
        plot (`str`, *optional*): relative path of a plot uploaded with the card.
        space (`str`, *optional*): the id of a Space with this model's demo page, linked from the card.
        license (`str`): the card's license.
    """
    eval_results = []
    if results is not None:
        check_results(results)
        for row in results["rows"]:
            if row["method"] != "tprl":
                continue
            eval_results.append(
                EvalResult(
                    task_type="visual-question-answering",
                    dataset_type=dataset_name,
                    dataset_name=dataset_name,
                    dataset_split=results.get("split", "test"),
                    metric_type="accuracy",
                    metric_name=f"accuracy at {row['kept_tokens']} visual tokens",
                    metric_value=row["accuracy"],
                    metric_config=f"keep_ratio={row['keep_ratio']:.4f}",
                )
            )
    base_model = config.base_model_name_or_path
    base_family = config.base_config.model_type
    card_data = ModelCardData(
        base_model=base_model,
        pipeline_tag="image-text-to-text",
        library_name="transformers",
        license=license,
        tags=["tprl", base_family, "token-pruning", "custom_code"],
        datasets=[dataset_name],
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )
    ratio = config.keep_ratio
    total = config.num_visual_tokens
    kept = config.num_kept_tokens or max(1, round(ratio * total))
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_model=base_model,
        base_family=base_family,
        pruner_only=config.pruner_only,
        num_visual_tokens=total,
        default_kept=kept,
        default_ratio=f"{100 * kept / total:.1f}% of the visual tokens",
        default_ratio_value=round(kept / total, 4),
        num_pruning_steps=config.num_pruning_steps,
        results_table=results_table(results) if results is not None else None,
        plot=plot,
        space=space,
        training_config=training_config,
    )
