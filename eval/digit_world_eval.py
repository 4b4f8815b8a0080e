"""The digit world's evaluation: every pruning method at every budget on held-out questions, per question type,
with prefill FLOPs and the patches each method keeps. `tprl-eval` and the main job's report run it."""

import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world.batching import DigitWorldCollator
from tprl_digit_world.evaluation import answer_hits, answer_prior, fixed_examples, summarize_hits

from .flops import prefill_flops
from .metrics import load_metric
from .oracle import oracle_indices
from .sharding import map_batches


def selection_kwargs(method: str, kept: int, examples: list[dict], patch_size: int) -> dict:
    """The forward arguments that make a TPRL model keep `kept` visual tokens of `examples` with `method`: `full`
    keeps them all, `oracle` imposes the named digits' patches, any other is a `pruning_method`."""
    if method == "full":
        return {"keep_ratio": 1.0}
    if method == "oracle":
        return {"kept_visual_indices": oracle_indices(examples, kept, patch_size)}
    return {"pruning_method": method, "num_kept_tokens": kept}


def evaluate_methods(
    model: TPRLForConditionalGeneration,
    processor,
    methods: list[str],
    keep_ratios: list[float],
    num_examples: int,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """Every method and budget on `num_examples` held-out test questions, per question type; `full` once.

    Batches are spread over `accelerate launch` processes; the numbers do not depend on how many there are.
    """
    examples = fixed_examples("test", num_examples, seed=seed)
    prior = answer_prior(fixed_examples("train", 4000, seed=seed + 100), examples)
    runs = [("full", 1.0, model.num_visual_tokens)] if "full" in methods else []
    runs += [(m, r, model.num_kept_tokens(keep_ratio=r)) for m in methods if m != "full" for r in keep_ratios]
    rows = []
    for method, ratio, kept in tqdm(runs, desc="methods x budgets", disable=not PartialState().is_main_process):

        def batch_hits(batch, index, method=method, kept=kept):
            selection = selection_kwargs(method, kept, batch, processor.patch_size)
            return answer_hits(model, processor, batch, **selection)

        hits = map_batches(batch_hits, examples, batch_size, seed)
        rows.append({"method": method, "keep_ratio": ratio, "kept_tokens": kept, **summarize_hits(examples, hits)})
    full = next((row for row in rows if row["method"] == "full"), None)
    for row in rows:
        row["retention"] = round(row["accuracy"] / full["accuracy"], 4) if full and full["accuracy"] else None
    add_compute(rows, model, processor, examples)
    return {"split": "test", "num_examples": len(examples), "answer_prior": prior, "rows": rows}


def add_compute(rows: list[dict], model: TPRLForConditionalGeneration, processor, examples: list[dict]) -> None:
    """Adds each row's token efficiency (kept ratio, analytic prefill FLOPs ratio) from the token_efficiency metric."""
    batch = DigitWorldCollator(processor)(examples[:64])
    text_tokens = round(float((batch["attention_mask"].sum(1) - model.num_visual_tokens).float().mean()))
    config, metric = model.base.config, load_metric("token_efficiency")
    full = prefill_flops(config, model.num_visual_tokens, text_tokens, method="full").total
    for row in rows:
        flops = prefill_flops(config, row["kept_tokens"], text_tokens, row["method"], tprl_config=model.config).total
        efficiency = metric.compute(
            kept_tokens=[row["kept_tokens"]],
            total_tokens=[model.num_visual_tokens],
            flops=[float(flops)],
            full_flops=[float(full)],
        )
        row.update(
            flops_ratio=round(efficiency["flops_ratio"], 4), flops_reduction=round(efficiency["flops_reduction"], 4)
        )


def kept_patch_selections(
    model: TPRLForConditionalGeneration, processor, methods: list[str], num_kept: int, seed: int = 0, count: int = 4
) -> tuple[list[dict], dict]:
    """A few test examples and, per method, the `num_kept` visual tokens it keeps on each."""
    examples = fixed_examples("test", count, seed=seed)
    inputs = DigitWorldCollator(processor)(examples)
    selections = {}
    for method in methods:
        if method == "full":
            continue
        torch.manual_seed(seed)
        selection = selection_kwargs(method, num_kept, examples, processor.patch_size)
        with torch.no_grad():
            selections[method] = model(**inputs, **selection).kept_visual_indices
    return examples, selections


def markdown_table(results: dict) -> str:
    """The digit world's table: per method and budget, prefill FLOPs, accuracy, retention and per question type."""
    question_types = list(results["rows"][0]["per_question_type"])
    lines = [
        f"Digit world, held-out test split, {results['num_examples']} questions. "
        f"Answer prior (no image): {100 * results['answer_prior']['accuracy']:.1f}%.",
        "",
        "| method | kept tokens | keep ratio | prefill FLOPs | accuracy | retention | "
        + " | ".join(question_types)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(question_types),
    ]
    for row in results["rows"]:
        retention = "n/a" if row["retention"] is None else f"{100 * row['retention']:.1f}%"
        flops = f"{100 * row['flops_ratio']:.1f}%" if "flops_ratio" in row else "n/a"
        per_type = " | ".join(f"{100 * row['per_question_type'][t]:.1f}" for t in question_types)
        lines.append(
            f"| {row['method']} | {row['kept_tokens']} | {row['keep_ratio']:.3f} | {flops} | "
            f"{100 * row['accuracy']:.1f} | {retention} | {per_type} |"
        )
    return "\n".join(lines) + "\n"
