"""Stage 2 of TPRL: the teacher's episodes on training examples, saved as a `datasets.Dataset`.

Each demonstration is one training example plus the budget it was pruned to and the teacher's picks at every
step. Every example is demonstrated at every trained keep ratio, so one policy learns all of them from the same
examples; the teacher's budget-free scores (all of leave-one-in, the costly part) are computed once for all budgets.
"""

import datasets
import torch
from tqdm.auto import tqdm

from modeling_tprl import TPRLForConditionalGeneration

from .teacher import BUDGET_TEACHERS, leave_one_in_scores, teacher_demonstrations


def make_demonstrations(
    model: TPRLForConditionalGeneration,
    dataset: datasets.Dataset,
    collator,
    keep_ratios: list[float],
    batch_size: int,
    teacher: str,
) -> datasets.Dataset:
    """
    `dataset` once per keep ratio, in the order of `keep_ratios`, with three more columns: `example` (the row in
    `dataset`), `keep_ratio` and `picks` (per step, the teacher's ordered picks); a leave-one-in teacher adds a
    fourth, `leave_one_in` (per visual token, the answer's log-likelihood with that token alone kept: the relevance
    target of imitation).
    """
    budgets = [model.num_kept_tokens(keep_ratio=ratio) for ratio in keep_ratios]
    picks_by_ratio: list[list[list[list[int]]]] = [[] for _ in keep_ratios]
    leave_one_in: list[list[float]] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=f"teacher demonstrations at {budgets} kept"):
        examples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: v.to(model.device) for k, v in collator(examples).items()}
        with torch.no_grad():  # the teachers' [CLS]-attention scores read this same vision pass
            image_features = model.visual_tokens(**model.image_inputs(batch), keep_vision_layer_input=True)
        alone = None
        if teacher in BUDGET_TEACHERS:
            alone = leave_one_in_scores(model, batch, image_features)
            leave_one_in.extend(alone.tolist())
        episodes = teacher_demonstrations(model, batch, image_features, budgets, teacher, alone)
        for picks, steps in zip(picks_by_ratio, episodes):
            picks.extend([step[position].tolist() for step in steps] for position in range(len(examples)))
    examples = dataset.add_column("example", list(range(len(dataset))))
    if leave_one_in:
        examples = examples.add_column("leave_one_in", leave_one_in)
    return datasets.concatenate_datasets(
        [
            examples.add_column("keep_ratio", [ratio] * len(dataset)).add_column("picks", picks)
            for ratio, picks in zip(keep_ratios, picks_by_ratio)
        ]
    )


def demonstrated_examples(demonstrations: datasets.Dataset) -> datasets.Dataset:
    """The examples of `demonstrations` once each, row `i` being `example` `i`."""
    if "example" not in demonstrations.column_names:
        raise ValueError(
            "These demonstrations have no `example` column (they were made by an older tprl): delete the "
            "demonstrations folder so that the stage runs again."
        )
    first_row: dict[int, int] = {}
    for row, example in enumerate(demonstrations["example"]):
        first_row.setdefault(example, row)
    return demonstrations.select([first_row[example] for example in range(len(first_row))])
