"""Answer accuracy of a LLaVA-style model on fixed digit-world examples."""

from collections import Counter, defaultdict

import numpy as np
import torch

from .batching import DigitWorldCollator
from .canvas import QUESTION_TYPES, DigitWorld


def fixed_examples(split: str, count: int, seed: int = 0) -> list[dict]:
    """`count` examples of `split`, the same for the same seed; question types in equal shares."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}.")
    world = DigitWorld(split)
    rng = np.random.default_rng(seed)
    return [world.sample(rng, question_type=QUESTION_TYPES[i % len(QUESTION_TYPES)]) for i in range(count)]


@torch.no_grad()
def answer_hits(model, processor, examples: list[dict], **model_kwargs) -> list[bool]:
    """Whether the greedy first token (the answers are one word) is each example's answer, in one batch.

    `model_kwargs` reach the model's forward (e.g. a keep ratio, or `kept_visual_indices` of these examples).
    """
    model.eval()
    logits = model(**DigitWorldCollator(processor)(examples), **model_kwargs).logits[:, -1]
    predictions = processor.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
    return [prediction == example["answer"] for example, prediction in zip(examples, predictions)]


def summarize_hits(examples: list[dict], hits: list[bool]) -> dict:
    """Accuracy overall and per question type."""
    correct = defaultdict(list)
    for example, hit in zip(examples, hits):
        correct[example["question_type"]].append(hit)
    per_type = {name: round(float(np.mean(values)), 4) for name, values in correct.items()}
    return {"accuracy": round(float(np.mean(hits)), 4), "per_question_type": per_type, "num_examples": len(examples)}


def answer_accuracy(
    model,
    processor,
    examples: list[dict],
    batch_size: int = 64,
    kept_visual_indices: torch.Tensor | None = None,
    **model_kwargs,
) -> dict:
    """Greedy first-token accuracy, overall and per question type.

    `kept_visual_indices` (`[len(examples), num_kept]`) imposes a selection per example; `model_kwargs` reach the
    model's forward (e.g. a keep ratio for a pruning model).
    """
    hits = []
    for start in range(0, len(examples), batch_size):
        if kept_visual_indices is not None:
            model_kwargs["kept_visual_indices"] = kept_visual_indices[start : start + batch_size]
        hits += answer_hits(model, processor, examples[start : start + batch_size], **model_kwargs)
    return summarize_hits(examples, hits)


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
