"""What a pruned tiled image should keep of its layout tokens (LLaVA-NeXT's newline after each row of tiles): every
method at every budget under each `layout_tokens` choice (`"all"`, `"rows"`, `"none"`), on the tiled digit world's
held-out questions. The budget counts content tokens, so the choices differ only in the newlines they add."""

import torch

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.configuration_tprl import LAYOUT_TOKEN_CHOICES
from tprl_digit_world.batching import DigitWorldCollator
from tprl_digit_world.evaluation import answer_hits, fixed_examples, summarize_hits
from tprl_digit_world.processor import canvas_shapes_of

from .oracle import oracle_indices
from .sharding import map_batches


@torch.no_grad()
def evaluate_layout_tokens(
    model: TPRLForConditionalGeneration,
    processor,
    methods: list[str],
    keep_ratios: list[float],
    num_examples: int,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """
    `full` once, then each of `methods` (training-free pruning methods, or `"oracle"`: the question's digits' patches
    first) at each keep ratio of each image's own content tokens, under each `layout_tokens` choice, on `num_examples`
    held-out questions about canvases of the base's shapes (`canvas_shapes_of`). Each row has the accuracy (overall
    and per question type), its retention of the full model's, and the mean content and newline tokens kept.
    """
    examples = fixed_examples("test", num_examples, seed=seed, canvas_shapes=canvas_shapes_of(processor))
    runs = [("full", 1.0, None)]
    runs += [(method, ratio, choice) for method in methods for ratio in keep_ratios for choice in LAYOUT_TOKEN_CHOICES]
    config = model.config.base_config

    def batch_results(batch: list[dict], index: int) -> list[tuple]:
        """Per example, each run's (hit, content tokens kept, newlines kept); the images are encoded once."""
        model.eval()
        inputs = {key: value.to(model.device) for key, value in DigitWorldCollator(processor)(batch).items()}
        visual = model.encode_images(keep_vision_layer_input=True, **model.image_inputs(inputs))
        content = visual.content_counts
        results = []
        for method, ratio, choice in runs:
            torch.manual_seed(seed + index)  # each run draws (the random method) as if it ran alone
            if method == "full":
                hits, _ = answer_hits(model, processor, batch, inputs, keep_ratio=1.0)
                newlines = (visual.counts - content).tolist()
                results.append(list(zip(hits, content.tolist(), newlines)))
                continue
            budgets = model.visual_budgets(content, keep_ratio=ratio)
            if method == "oracle":
                kept = oracle_indices(batch, budgets.tolist(), processor).to(model.device)
                kept = model.family.complete_selection(config, kept, visual, choice)
            else:
                input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
                kept = model.select_visual_tokens(
                    visual, input_ids, attention_mask, budgets, method, layout_tokens=choice
                )
            hits, _ = answer_hits(model, processor, batch, inputs, image_features=visual, kept_visual_indices=kept)
            newlines = (kept >= 0).sum(1) - budgets
            results.append(list(zip(hits, budgets.tolist(), newlines.tolist())))
        return list(zip(*results))

    per_example = map_batches(batch_results, examples, batch_size, seed, f"{len(runs)} runs, newline choices")
    rows = []
    for position, (method, ratio, choice) in enumerate(runs):
        hits, content, newlines = zip(*(results[position] for results in per_example))
        row = {"method": method, "keep_ratio": ratio, "layout_tokens": choice}
        row |= {
            "content_tokens": round(sum(content) / len(content), 2),
            "newline_tokens": round(sum(newlines) / len(newlines), 2),
        }
        rows.append(row | summarize_hits(examples, hits))
    full = rows[0]["accuracy"]
    for row in rows:
        row["retention"] = round(row["accuracy"] / full, 4) if full else None
    shapes = sorted({example["image"].shape[:2] for example in examples})
    return {
        "split": "test",
        "canvas_shapes": [list(shape) for shape in shapes],
        "num_examples": num_examples,
        "rows": rows,
    }
