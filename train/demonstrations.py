"""Stage 2 of TPRL: the teacher's episodes on training examples, saved as a `datasets.Dataset`.

Each demonstration is one training example plus the budget it was pruned to and the teacher's picks at every
step. Every example is demonstrated at every trained keep ratio, so one policy learns all of them from the same
examples; the teacher's budget-free scores (all of leave-one-in, the costly part) are computed once for all budgets.

Under `accelerate launch` the batches are shared out over the processes (`tprl_eval.sharding.map_batches`): the
batches, and so the rows and their order, are the same whatever the number of processes. Each batch is written to
`shard_dir` as it is done, so an interrupted stage resumes from the batches already written.
"""

import json
import os
import shutil
from pathlib import Path

import datasets
import torch
from accelerate import PartialState

from modeling_tprl import TPRLForConditionalGeneration
from tprl_eval.sharding import map_batches

from .teacher import BUDGET_TEACHERS, leave_one_in_scores, teacher_demonstrations


def make_demonstrations(
    model: TPRLForConditionalGeneration,
    dataset: datasets.Dataset,
    collator,
    keep_ratios: list[float],
    batch_size: int,
    teacher: str,
    shard_dir: str | Path | None = None,
) -> datasets.Dataset:
    """
    `dataset` once per keep ratio, in the order of `keep_ratios`, with three more columns: `example` (the row in
    `dataset`), `keep_ratio` and `picks` (per step, the teacher's ordered picks); a leave-one-in teacher adds a
    fourth, `leave_one_in` (per visual token, the answer's log-likelihood with that token alone kept: the relevance
    target of imitation). With `shard_dir`, each batch's demonstrations are written there and read back on a rerun
    with the same settings (other settings start the shards afresh). On an anyres base each image's budget is the
    keep ratio of its own tokens.
    """
    budgets = [model.num_kept_tokens(keep_ratio=ratio) for ratio in keep_ratios]
    settings = {"teacher": teacher, "budgets": budgets, "batch_size": batch_size, "examples": len(dataset)}
    if shard_dir is not None:
        shard_dir = _prepare_shards(Path(shard_dir), settings)

    def demonstrate(rows: list[int], index: int) -> list[dict]:
        shard = None if shard_dir is None else shard_dir / f"batch-{index:06d}.json"
        if shard is not None and shard.exists():
            return json.loads(shard.read_text())
        batch = {k: v.to(model.device) for k, v in collator([dataset[i] for i in rows]).items()}
        image_inputs = model.image_inputs(batch)
        with torch.no_grad():  # the teachers' [CLS]-attention scores read this same vision pass
            image_features = model.visual_tokens(**image_inputs, keep_vision_layer_input=True)
        present = model.policy_present(image_inputs)
        batch_budgets = budgets
        if present is not None:  # an anyres base: each image its keep ratio of its own tokens
            batch_budgets = [model.visual_budgets(present.sum(1), keep_ratio=ratio) for ratio in keep_ratios]
        alone = leave_one_in_scores(model, batch, image_features) if teacher in BUDGET_TEACHERS else None
        episodes = teacher_demonstrations(model, batch, image_features, batch_budgets, teacher, alone)
        demonstrated = [
            {
                "picks": [[step[position][step[position] >= 0].tolist() for step in steps] for steps in episodes],
                "leave_one_in": None if alone is None else alone[position].tolist(),
            }
            for position in range(len(rows))
        ]
        if shard is not None:  # written whole or not at all
            shard.with_suffix(".partial").write_text(json.dumps(demonstrated))
            os.replace(shard.with_suffix(".partial"), shard)
        return demonstrated

    description = f"teacher demonstrations at keep ratios {[round(ratio, 3) for ratio in keep_ratios]}"
    demonstrated = map_batches(demonstrate, list(range(len(dataset))), batch_size, seed=0, description=description)
    examples = dataset.add_column("example", list(range(len(dataset))))
    if teacher in BUDGET_TEACHERS:
        examples = examples.add_column("leave_one_in", [row["leave_one_in"] for row in demonstrated])
    return datasets.concatenate_datasets(
        [
            examples.add_column("keep_ratio", [ratio] * len(dataset)).add_column(
                "picks", [row["picks"][position] for row in demonstrated]
            )
            for position, ratio in enumerate(keep_ratios)
        ]
    )


def _prepare_shards(shard_dir: Path, settings: dict) -> Path:
    """`shard_dir`, emptied by the main process if its shards were made with other `settings`."""
    state = PartialState()
    manifest = shard_dir / "settings.json"
    if state.is_main_process:
        if manifest.exists() and json.loads(manifest.read_text()) != settings:
            shutil.rmtree(shard_dir)
        shard_dir.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(settings))
    state.wait_for_everyone()
    return shard_dir


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
