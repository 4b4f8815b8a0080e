"""Stage 2 of TPRL: the teacher's episodes on training examples, saved as a `datasets.Dataset`.

Each demonstration is one training example plus the budget it was pruned to and the teacher's picks at every
step. Budgets cycle through the trained keep ratios, so one policy learns all of them; `weights` gives a budget more
rows of the cycle (and so more of the imitation batches), e.g. the smallest, which is the hardest to imitate.
"""

import datasets
import torch
from tqdm.auto import tqdm

from modeling_tprl import TPRLForConditionalGeneration

from .teacher import teacher_demonstration


def make_demonstrations(
    model: TPRLForConditionalGeneration,
    dataset: datasets.Dataset,
    collator,
    keep_ratios: list[float],
    batch_size: int = 64,
    teacher: str = "gradient",
    weights: list[int] | None = None,
) -> datasets.Dataset:
    """
    `dataset` with two more columns: `keep_ratio` and `picks` (per step, the teacher's ordered picks). Rows cycle
    through `keep_ratios`, each repeated `weights[i]` times in the cycle (once each by default).
    """
    cycle = [ratio for ratio, weight in zip(keep_ratios, weights or [1] * len(keep_ratios)) for _ in range(weight)]
    ratio_of_row = [cycle[i % len(cycle)] for i in range(len(dataset))]
    picks_of_row: list[list[list[int]] | None] = [None] * len(dataset)
    for ratio in keep_ratios:
        rows = [i for i, r in enumerate(ratio_of_row) if r == ratio]
        num_kept = model.num_kept_tokens(keep_ratio=ratio)
        for start in tqdm(range(0, len(rows), batch_size), desc=f"teacher demonstrations at {ratio:.3f}"):
            chunk = rows[start : start + batch_size]
            batch = {k: v.to(model.device) for k, v in collator([dataset[i] for i in chunk]).items()}
            with torch.no_grad():
                image_features = model.get_image_features(batch["pixel_values"])
            steps = teacher_demonstration(model, batch, image_features, num_kept, teacher)
            for position, row in enumerate(chunk):
                picks_of_row[row] = [step[position].tolist() for step in steps]
    return dataset.add_column("keep_ratio", ratio_of_row).add_column("picks", picks_of_row)


def demonstration_batches(dataset: datasets.Dataset, collator, batch_size: int, seed: int):
    """
    Endless `(batch, picks per step)` pairs for imitation; each batch holds one budget, so shapes align. A budget's
    share of the batches is its share of the demonstrations (to the nearest multiple of the smallest share).
    """
    generator = torch.Generator().manual_seed(seed)
    ratios = sorted(set(dataset["keep_ratio"]))
    rows_by_ratio = {r: [i for i, v in enumerate(dataset["keep_ratio"]) if v == r] for r in ratios}
    fewest = min(len(rows) for rows in rows_by_ratio.values())
    draws = [r for r in ratios for _ in range(round(len(rows_by_ratio[r]) / fewest))]  # [1, 1, 2] -> 1/9 twice
    while True:
        ratio = draws[int(torch.randint(len(draws), (1,), generator=generator))]
        rows = rows_by_ratio[ratio]
        chosen = [rows[int(i)] for i in torch.randperm(len(rows), generator=generator)[:batch_size]]
        examples = [dataset[i] for i in chosen]
        picks = [torch.tensor([e["picks"][step] for e in examples]) for step in range(len(examples[0]["picks"]))]
        yield collator(examples), picks
