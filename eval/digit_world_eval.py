"""The digit world's evaluation: every pruning method at every budget on held-out questions, per question type,
with named-target coverage, prefill FLOPs and the patches each method keeps, on the usual canvases (3-6 digits)
and on the dense ones (6 digits, where a question-blind selection cannot keep every digit). `tprl-eval` and the
main job's report run it."""

from collections import Counter, defaultdict
from pathlib import Path

import torch

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.configuration_tprl import num_kept_for_ratio
from tprl_digit_world.batching import DigitWorldCollator
from tprl_digit_world.canvas import CANVAS_SIZE
from tprl_digit_world.evaluation import (
    answer_hits,
    answer_hits_from_logits,
    answer_prior,
    fixed_examples,
    named_target_covered,
    summarize_coverage,
    summarize_hits,
)
from tprl_digit_world.processor import (
    base_view_tokens,
    canvas_shapes_of,
    content_tokens,
    num_canvas_tokens,
    token_patch_size,
)

from .flops import REFERENCE_SHAPES, load_configs, num_image_tokens, prefill_flops
from .metrics import load_metric
from .oracle import oracle_indices
from .plots import plot_accuracy, plot_accuracy_vs_flops, plot_coverage, plot_kept_patches
from .sharding import map_batches


ADAPTIVE = "tprl (adaptive)"
"""The rows of the learned policy choosing each question's budget (`keep_ratio="adaptive"`)."""

CONSECUTIVE_POSITIONS = "tprl (consecutive positions)"
"""For mRoPE families (Qwen-VL), the ablation of the kept tokens' positions: the policy's selection, with the pruned
sequence re-indexed 0, 1, 2, ... in every dimension, as calling the base with `inputs_embeds` and no positions does for
an unpadded prompt (the TPRL authors' code), instead of the base's own 3-D positions of the kept tokens."""

DIGIT_WORLD_SPLITS = {"digit_world": None, "digit_world_dense": 6}
"""The evaluated splits of held-out test questions and their digits per canvas (`None`: 3-6, as in training)."""


def selection_kwargs(method: str, kept: int, examples: list[dict], processor) -> dict:
    """The forward arguments that make a TPRL model keep `kept` visual tokens of `examples` with `method`: `full`
    keeps them all, `oracle` imposes the named digits' patches, any other is a `pruning_method`."""
    if method == "full":
        return {"keep_ratio": 1.0}
    if method == "oracle":
        return {"kept_visual_indices": oracle_indices(examples, kept, processor)}
    if method == ADAPTIVE:  # `kept` is the target mean share here
        return {"keep_ratio": "adaptive", "target_keep_ratio": kept}
    return {"pruning_method": method, "num_kept_tokens": kept}


def tiled_selection(
    model: TPRLForConditionalGeneration, method: str, keep_ratio: float, examples: list[dict], visual, processor
) -> dict:
    """For a tiled base, the forward arguments that make the model keep `keep_ratio` of each canvas's own content
    tokens with `method` (the oracle's picks completed with the newlines `config.layout_tokens` keeps)."""
    if method == "full":
        return {"keep_ratio": 1.0}
    if method != "oracle":
        return {"pruning_method": method, "keep_ratio": keep_ratio}
    budgets = model.visual_budgets(visual.content_counts, keep_ratio=keep_ratio).tolist()
    kept = oracle_indices(examples, budgets, processor).to(model.device)
    config = model.config
    return {
        "kept_visual_indices": model.family.complete_selection(config.base_config, kept, visual, config.layout_tokens)
    }


def canvas_budget(model: TPRLForConditionalGeneration, processor, keep_ratio: float) -> int:
    """Visual tokens a canvas keeps at `keep_ratio`, of its own count (a base's fresh pruner may be built for another
    grid: Qwen-VL's default is 16x16)."""
    return int(model.visual_budgets(torch.tensor([num_canvas_tokens(processor)]), keep_ratio=keep_ratio)[0])


def evaluate_methods(
    model: TPRLForConditionalGeneration,
    processor,
    methods: list[str],
    keep_ratios: list[float],
    num_examples: int,
    batch_size: int = 64,
    seed: int = 0,
    num_digits: int | None = None,
    adaptive_targets: list[float] = (),
    position_ablation: bool = True,
) -> dict:
    """Every method and budget on `num_examples` held-out test questions, per question type; `full` once. Each row
    has the accuracy and the named-target coverage (the share of questions whose named digits keep every patch).
    `adaptive_targets` add rows of the adaptive policy at those target mean keep ratios (method `ADAPTIVE`), with
    the mean kept tokens overall and per question type. With `position_ablation`, an mRoPE family's `tprl` rows are
    repeated with the kept tokens at consecutive positions (`CONSECUTIVE_POSITIONS`).

    `num_digits` fixes the digits per canvas (see `DIGIT_WORLD_SPLITS`). Batches are spread over `accelerate launch`
    processes; the numbers do not depend on how many there are.
    """
    shapes = canvas_shapes_of(processor)
    examples = fixed_examples("test", num_examples, seed=seed, num_digits=num_digits, canvas_shapes=shapes)
    prior = answer_prior(
        fixed_examples("train", 4000, seed=seed + 100, num_digits=num_digits, canvas_shapes=shapes), examples
    )
    # A tiled base's canvases differ in tokens: each keeps its keep ratio of its own, the rows give the mean.
    tiled = base_view_tokens(processor) > 0
    content = [len(content_tokens(processor, example["image"].shape[:2])) for example in examples]
    total = sum(content) / len(content) if tiled else num_canvas_tokens(processor)
    budgets = {
        r: sum(num_kept_for_ratio(count, r) for count in content) / len(content)
        if tiled
        else canvas_budget(model, processor, r)
        for r in keep_ratios
    }
    runs = [("full", 1.0, total)] if "full" in methods else []
    runs += [(m, r, budgets[r]) for m in methods if m != "full" for r in keep_ratios]
    runs += [(ADAPTIVE, target, target) for target in adaptive_targets]
    if position_ablation and "tprl" in methods and model.family.position_ndim > 2:
        runs += [(CONSECUTIVE_POSITIONS, r, budgets[r]) for r in keep_ratios]

    def batch_results(batch: list[dict], index: int) -> list[tuple]:
        """Per example, each run's (hit, named target covered, kept tokens). The batch is collated once, and its
        image features made once for every run that prunes (`cls_attention` still runs the vision tower for its
        [CLS] attention; `full` is the base's own forward)."""
        inputs = {key: value.to(model.device) for key, value in DigitWorldCollator(processor)(batch).items()}
        image_features = None
        if any(method != "full" for method, _, _ in runs):
            with torch.no_grad():
                image_inputs = model.image_inputs(inputs)
                image_features = model.encode_images(**image_inputs) if tiled else model.visual_tokens(**image_inputs)
        results = []
        for method, ratio, kept in runs:
            torch.manual_seed(seed + index)  # each run draws (the random method) as if it ran alone
            if method == CONSECUTIVE_POSITIONS:
                hits, kept_visual_indices = consecutive_position_hits(
                    model, processor, batch, inputs, image_features, kept
                )
            else:
                selection = (
                    tiled_selection(model, method, ratio, batch, image_features, processor)
                    if tiled
                    else selection_kwargs(method, kept, batch, processor)
                )
                hits, kept_visual_indices = answer_hits(
                    model, processor, batch, inputs, image_features=image_features, **selection
                )
            covered = named_target_covered(batch, kept_visual_indices, processor)
            counts = [total] * len(batch)
            if tiled:  # content tokens: the newlines kept are not counted
                counts = [num_kept_for_ratio(count, ratio) for count in image_features.content_counts.tolist()]
            elif kept_visual_indices is not None:
                counts = (kept_visual_indices >= 0).sum(1).tolist()
            results.append(list(zip(hits, covered, counts)))
        return list(zip(*results))

    description = f"{len(runs)} methods x budgets, batches of {batch_size} questions"
    per_example = map_batches(batch_results, examples, batch_size, seed, description)
    rows = []
    for position, (method, ratio, kept) in enumerate(runs):
        hits, covered, counts = zip(*(results[position] for results in per_example))
        row = {"method": method, "keep_ratio": ratio, "kept_tokens": kept}
        if method == ADAPTIVE:
            row.update(adaptive_budget_summary(examples, counts, total), target_keep_ratio=ratio)
        rows.append(row | summarize_hits(examples, hits) | summarize_coverage(examples, covered))
    full = next((row for row in rows if row["method"] == "full"), None)
    for row in rows:
        row["retention"] = round(row["accuracy"] / full["accuracy"], 4) if full and full["accuracy"] else None
    add_compute(rows, model, processor, examples)
    canvas = "3-6 digits per canvas" if num_digits is None else f"{num_digits} digits per canvas"
    results = {"split": "test", "canvas": canvas, "num_examples": len(examples), "answer_prior": prior, "rows": rows}
    if model.base.config.model_type in REFERENCE_SHAPES:
        results["flops_reference"] = REFERENCE_SHAPES[model.base.config.model_type]
    return results


@torch.no_grad()
def consecutive_position_hits(
    model: TPRLForConditionalGeneration,
    processor,
    examples: list[dict],
    inputs: dict,
    image_features: torch.Tensor,
    num_kept: int,
) -> tuple[list[bool], torch.LongTensor]:
    """`answer_hits` of the policy's selection of `num_kept` tokens with the pruned sequence's positions re-indexed
    consecutively in every dimension (`CONSECUTIVE_POSITIONS`), and the selection."""
    model.eval()
    pruned = model.prune_inputs(**inputs, image_features=image_features, num_kept=num_kept, pruning_method="tprl")
    positions = pruned.position_ids[:1].expand_as(pruned.position_ids)  # row 0: the sequence positions
    logits = model.base(
        inputs_embeds=pruned.inputs_embeds, attention_mask=pruned.attention_mask, position_ids=positions
    ).logits
    return answer_hits_from_logits(processor, examples, logits), pruned.kept_visual_indices


def adaptive_budget_summary(examples: list[dict], counts: list[int], total: int) -> dict:
    """An adaptive row's budgets: mean kept tokens and keep ratio, per question type, and how many chose each."""
    by_type = defaultdict(list)
    for example, count in zip(examples, counts):
        by_type[example["question_type"]].append(count)
    mean = sum(counts) / len(counts)
    return {
        "kept_tokens": round(mean, 2),
        "keep_ratio": round(mean / total, 4),
        "kept_tokens_per_question_type": {name: round(sum(v) / len(v), 2) for name, v in by_type.items()},
        "kept_token_counts": dict(sorted(Counter(counts).items())),
    }


def add_compute(rows: list[dict], model: TPRLForConditionalGeneration, processor, examples: list[dict]) -> None:
    """Adds each row's token efficiency (kept ratio, analytic prefill FLOPs ratio) from the token_efficiency metric;
    an adaptive row's FLOPs are the mean of each question's. Where the family has `REFERENCE_SHAPES`, also the same
    selections' FLOPs ratio at those shapes (`reference_flops_ratio`): the kept counts scaled to the reference's
    visual tokens (the same keep ratios), each method's selection cost counted there (`tprl-flops`'s figures)."""
    batch = DigitWorldCollator(processor)(examples[:64])
    image_tokens = batch["input_ids"].eq(model.config.image_token_id).sum(1)
    text_tokens = round(float((batch["attention_mask"].sum(1) - image_tokens).float().mean()))
    # A tiled base's FLOPs are those of a square canvas (its content tokens), at each row's keep ratio.
    tiled = base_view_tokens(processor) > 0
    total = len(content_tokens(processor, (CANVAS_SIZE, CANVAS_SIZE))) if tiled else num_canvas_tokens(processor)
    # (config, TPRL config, visual tokens per digit-world token, image side); the reference's images: its own size.
    shapes = {"": (model.base.config, model.config, 1.0, CANVAS_SIZE)}
    if model.base.config.model_type in REFERENCE_SHAPES:
        config, tprl_config = load_configs(REFERENCE_SHAPES[model.base.config.model_type])
        shapes["reference_"] = (config, tprl_config, num_image_tokens(config) / total, None)
    metric = load_metric("token_efficiency")
    for prefix, (config, tprl_config, scale, image_size) in shapes.items():
        tokens = round(total * scale)
        full = prefill_flops(config, tokens, text_tokens, method="full", image_size=image_size).total
        for row in rows:
            method = "tprl" if row["method"] in (ADAPTIVE, CONSECUTIVE_POSITIONS) else row["method"]
            counts = row.get("kept_token_counts", {row["kept_tokens"]: 1})
            if tiled:
                counts = {num_kept_for_ratio(total, row["keep_ratio"]): 1}
            kept = [round(count * scale) for count, times in counts.items() for _ in range(times)]
            per_count = {
                n: prefill_flops(config, n, text_tokens, method, tprl_config=tprl_config, image_size=image_size).total
                for n in kept
            }
            efficiency = metric.compute(
                kept_tokens=kept,
                total_tokens=[tokens] * len(kept),
                flops=[float(per_count[n]) for n in kept],
                full_flops=[float(full)] * len(kept),
            )
            row[f"{prefix}flops_ratio"] = round(efficiency["flops_ratio"], 4)
            row[f"{prefix}flops_reduction"] = round(efficiency["flops_reduction"], 4)


def kept_patch_selections(
    model: TPRLForConditionalGeneration,
    processor,
    methods: list[str],
    num_kept: int,
    seed: int = 0,
    count: int = 4,
    num_digits: int | None = None,
) -> tuple[list[dict], dict]:
    """A few test examples and, per method, the `num_kept` visual tokens it keeps on each."""
    examples = fixed_examples("test", count, seed=seed, num_digits=num_digits)
    inputs = DigitWorldCollator(processor)(examples)
    selections = {}
    for method in methods:
        if method == "full":
            continue
        torch.manual_seed(seed)
        selection = selection_kwargs(method, num_kept, examples, processor)
        with torch.no_grad():
            selections[method] = model(**inputs, **selection).kept_visual_indices
    return examples, selections


def markdown_table(results: dict) -> str:
    """The digit world's table: per method and budget, prefill FLOPs, accuracy, retention, per question type, and
    named-target coverage."""
    question_types = list(results["rows"][0]["per_question_type"])
    reference = results.get("flops_reference")
    lines = [
        f"Digit world, held-out test split, {results.get('canvas', '3-6 digits per canvas')}, "
        f"{results['num_examples']} questions. Answer prior (no image): {100 * results['answer_prior']['accuracy']:.1f}%. "
        "Coverage: the share of the questions naming a digit on the canvas whose named digits keep every patch. "
        "Prefill FLOPs: % of the full model's, the selection's own cost included"
        + (f"; at {reference}: the same keep ratios at that base's shapes." if reference else "."),
        "",
        "| method | kept tokens | keep ratio | prefill FLOPs | "
        + (f"prefill FLOPs at {reference} | " if reference else "")
        + "accuracy | retention | "
        + " | ".join(question_types)
        + " | coverage |",
        "|---|---|---|---|" + ("---|" if reference else "") + "---|---|" + "---|" * (len(question_types) + 1),
    ]
    for row in results["rows"]:
        retention = "n/a" if row["retention"] is None else f"{100 * row['retention']:.1f}%"
        flops = " | ".join(
            f"{100 * row[key]:.1f}%" if key in row else "n/a"
            for key in ("flops_ratio", "reference_flops_ratio")[: 2 if reference else 1]
        )
        per_type = " | ".join(f"{100 * row['per_question_type'][t]:.1f}" for t in question_types)
        coverage = row.get("named_target_coverage")
        coverage = "n/a" if coverage is None else f"{100 * coverage:.1f}"
        kept = row["kept_tokens"] if isinstance(row["kept_tokens"], int) else f"{row['kept_tokens']:.1f} (mean)"
        lines.append(
            f"| {row['method']} | {kept} | {row['keep_ratio']:.3f} | {flops} | "
            f"{100 * row['accuracy']:.1f} | {retention} | {per_type} | {coverage} |"
        )
    return "\n".join(lines) + "\n"


def coverage_table(results: dict) -> str:
    """Named-target coverage per question type, per method and budget (`full` keeps everything and is left out)."""
    question_types = [t for t in results["rows"][0]["per_question_type"] if t != "presence"] + ["presence"]
    lines = [
        "| method | kept tokens | " + " | ".join(question_types) + " |",
        "|---|---|" + "---|" * len(question_types),
    ]
    for row in results["rows"]:
        if row["method"] == "full":
            continue
        per_type = row.get("named_target_coverage_per_question_type", {})
        cells = ["n/a" if per_type.get(t) is None else f"{100 * per_type[t]:.1f}" for t in question_types]
        lines.append(f"| {row['method']} | {row['kept_tokens']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def adaptive_budget_table(results: dict) -> str:
    """Mean kept tokens per question type of the adaptive rows (empty when there are none)."""
    rows = [row for row in results["rows"] if row["method"] == ADAPTIVE]
    if not rows:
        return ""
    question_types = list(rows[0]["kept_tokens_per_question_type"])
    lines = [
        "| target keep ratio | mean kept | accuracy | " + " | ".join(question_types) + " |",
        "|---|---|---|" + "---|" * len(question_types),
    ]
    for row in rows:
        per_type = " | ".join(f"{row['kept_tokens_per_question_type'][t]:.1f}" for t in question_types)
        lines.append(
            f"| {row['target_keep_ratio']:.3f} | {row['kept_tokens']:.1f} | {100 * row['accuracy']:.1f} | {per_type} |"
        )
    return "\n".join(lines) + "\n"


def add_digit_world_split(results: dict, name: str, split: dict) -> None:
    """Puts a split's results where `digit_world_splits` finds them: the usual one at the top level (where the model
    card reads it), the dense one under its name."""
    if name == "digit_world":
        results.update(split)
    else:
        results[name] = split


def digit_world_splits(results: dict) -> dict[str, dict]:
    """The digit-world splits present in `results`: the usual one at the top level, the dense one under its name."""
    splits = {"digit_world": results} if "rows" in results else {}
    return splits | {name: results[name] for name in DIGIT_WORLD_SPLITS if name in results}


def digit_world_report(
    results: dict,
    model: TPRLForConditionalGeneration,
    processor,
    methods: list[str],
    num_kept: int,
    output_dir: Path,
    seed: int = 0,
) -> str:
    """
    The digit world's part of a report, per split in `results`: its table, its coverage per question type, plots of
    accuracy against kept tokens and against prefill FLOPs and a grid of the `num_kept` patches each method keeps
    (files suffixed `_dense` for the dense split); one plot of the named-target coverage of every split. Returns
    the Markdown that shows them.
    """
    splits = digit_world_splits(results)
    report = ""
    for name, split in splits.items():
        suffix = "" if name == "digit_world" else "_dense"
        plot_accuracy(split, output_dir / f"accuracy_vs_kept{suffix}.png")
        plot_accuracy_vs_flops(split, output_dir / f"accuracy_vs_flops{suffix}.png")
        kept_patches = ""
        if base_view_tokens(processor) == 0:  # the plot draws a square canvas's patches
            examples, selections = kept_patch_selections(
                model, processor, methods, num_kept, seed, num_digits=DIGIT_WORLD_SPLITS[name]
            )
            path = output_dir / f"kept_patches{suffix}.png"
            plot_kept_patches(examples, selections, token_patch_size(processor), path)
            kept_patches = f"![kept patches](kept_patches{suffix}.png)\n\n"
        budgets = adaptive_budget_table(split)
        if budgets:
            budgets = f"Adaptive budgets, mean kept tokens per question type:\n\n{budgets}\n"
        report += (
            f"{markdown_table(split)}\nNamed-target coverage per question type:\n\n{coverage_table(split)}\n{budgets}"
            f"![accuracy](accuracy_vs_kept{suffix}.png) ![FLOPs](accuracy_vs_flops{suffix}.png)\n\n{kept_patches}"
        )
    if splits:
        plot_coverage(splits, output_dir / "coverage_vs_kept.png")
        report += "![named-target coverage](coverage_vs_kept.png)\n\n"
    return report
