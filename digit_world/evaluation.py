"""Answer accuracy of a tiny base (or a pruning model of one) on fixed digit-world examples."""

from collections import Counter, defaultdict

import numpy as np
import torch

from .batching import DigitWorldCollator
from .canvas import QUESTION_TYPES, SQUARE_CANVAS, DigitWorld, patch_indices, relevant_placements
from .processor import canvas_token_grid, token_patch_size


def fixed_examples(
    split: str,
    count: int,
    seed: int = 0,
    num_digits: int | None = None,
    canvas_shapes: tuple[tuple[int, int], ...] = SQUARE_CANVAS,
) -> list[dict]:
    """`count` examples of `split`, the same for the same seed; question types in equal shares. `num_digits` fixes
    the digits per canvas (6: the dense canvases); by default each canvas holds 3-6. `canvas_shapes`: those of the
    base's canvases (`canvas_shapes_of` its processor)."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}.")
    world = DigitWorld(split, canvas_shapes)
    rng = np.random.default_rng(seed)
    types = [QUESTION_TYPES[i % len(QUESTION_TYPES)] for i in range(count)]
    return [world.sample(rng, num_digits=num_digits, question_type=question_type) for question_type in types]


@torch.no_grad()
def answer_hits(
    model, processor, examples: list[dict], inputs: dict | None = None, **model_kwargs
) -> tuple[list[bool], torch.Tensor | None]:
    """Whether the greedy first token (the answers are one word) is each example's answer, in one batch, and the
    visual tokens the model kept (`None` if it does not prune).

    `inputs` are the examples collated (`DigitWorldCollator`), if the caller has them; `model_kwargs` reach the
    model's forward (e.g. a keep ratio, or `kept_visual_indices` of these examples).
    """
    model.eval()
    if inputs is None:
        inputs = DigitWorldCollator(processor)(examples)
    # The collator and the imposed selections are on the CPU; the model may be on a GPU.
    inputs = {key: value.to(model.device) for key, value in inputs.items()}
    model_kwargs = {
        key: value.to(model.device) if isinstance(value, torch.Tensor) else value
        for key, value in model_kwargs.items()
    }
    outputs = model(**inputs, **model_kwargs)
    return answer_hits_from_logits(processor, examples, outputs.logits), getattr(outputs, "kept_visual_indices", None)


def answer_hits_from_logits(processor, examples: list[dict], logits: torch.Tensor) -> list[bool]:
    """Whether the greedy next token after each left-padded prompt (`logits[:, -1]`) is the example's answer."""
    predictions = processor.tokenizer.convert_ids_to_tokens(logits[:, -1].argmax(-1).tolist())
    return [prediction == example["answer"] for example, prediction in zip(examples, predictions)]


def named_target_covered(
    examples: list[dict], kept_visual_indices: torch.Tensor | None, processor
) -> list[bool | None]:
    """Per example, whether every patch of the digits its question names (`relevant_placements`) is kept (for a tiled
    base, its tile tokens); `None` when the question names no digit on the canvas (a presence question answered
    "no"). `None` indices keep every patch."""
    patch_size = token_patch_size(processor)
    covered = []
    for row, example in enumerate(examples):
        named = relevant_placements(example["question"], example["layout"])
        if not named:
            covered.append(None)
            continue
        kept = None if kept_visual_indices is None else set(kept_visual_indices[row].tolist())
        height, width = example["image"].shape[:2]
        tokens = canvas_token_grid(processor, (height, width)).flatten()
        patches = {int(tokens[i]) for item in named for i in patch_indices(item.box, patch_size, width)}
        covered.append(kept is None or patches <= kept)
    return covered


def summarize_hits(examples: list[dict], hits: list[bool]) -> dict:
    """Accuracy overall and per question type."""
    correct = defaultdict(list)
    for example, hit in zip(examples, hits):
        correct[example["question_type"]].append(hit)
    per_type = {name: round(float(np.mean(values)), 4) for name, values in correct.items()}
    return {"accuracy": round(float(np.mean(hits)), 4), "per_question_type": per_type, "num_examples": len(examples)}


def summarize_coverage(examples: list[dict], covered: list[bool | None]) -> dict:
    """Named-target coverage (`named_target_covered`) overall and per question type, over the questions that name a
    digit on the canvas."""
    by_type = defaultdict(list)
    for example, value in zip(examples, covered):
        if value is not None:
            by_type[example["question_type"]].append(value)
    every = [value for values in by_type.values() for value in values]
    return {
        "named_target_coverage": round(float(np.mean(every)), 4) if every else None,
        "named_target_coverage_per_question_type": {k: round(float(np.mean(v)), 4) for k, v in by_type.items()},
    }


def answer_accuracy(
    model,
    processor,
    examples: list[dict],
    batch_size: int = 64,
    kept_visual_indices: torch.Tensor | None = None,
    **model_kwargs,
) -> dict:
    """Greedy first-token accuracy, overall and per question type, and the named-target coverage.

    `kept_visual_indices` (`[len(examples), num_kept]`) imposes a selection per example; `model_kwargs` reach the
    model's forward (e.g. a keep ratio for a pruning model).
    """
    hits, covered = [], []
    for start in range(0, len(examples), batch_size):
        if kept_visual_indices is not None:
            model_kwargs["kept_visual_indices"] = kept_visual_indices[start : start + batch_size]
        batch = examples[start : start + batch_size]
        batch_hits, kept = answer_hits(model, processor, batch, **model_kwargs)
        hits += batch_hits
        covered += named_target_covered(batch, kept, processor)
    return summarize_hits(examples, hits) | summarize_coverage(examples, covered)


def answer_prior(train_examples: list[dict], test_examples: list[dict]) -> dict:
    """Accuracy of always giving the most frequent training answer of each question type (no image)."""
    answers = defaultdict(Counter)
    for example in train_examples:
        answers[example["question_type"]][example["answer"]] += 1
    best = {name: counts.most_common(1)[0][0] for name, counts in answers.items()}
    hits = defaultdict(list)
    for example in test_examples:
        hits[example["question_type"]].append(best.get(example["question_type"]) == example["answer"])
    overall = float(np.mean([hit for values in hits.values() for hit in values]))
    return {
        "accuracy": round(overall, 4),
        "per_question_type": {k: round(float(np.mean(v)), 4) for k, v in hits.items()},
    }
