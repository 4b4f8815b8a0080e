"""What every stage of the pruner's training shares: a `transformers.Trainer` that trains one part of the pruner.

Each stage (`StateAutoencoderTrainer`, `ImitationTrainer`, `TPRLPPOTrainer`) subclasses `PrunerStageTrainer` and
writes its loss in `stage_loss`, as TRL's trainers write theirs in `compute_loss`. The `Trainer` loop then gives
every stage the same optimiser, schedule, progress bar, `report_to` logging, checkpoints and resume.
"""

import os
from collections import defaultdict

import torch
from accelerate.utils import gather_object
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.modeling_tprl import load_pruner_weights


class StageModel(nn.Module):
    """
    The TPRL model as a stage's `Trainer` sees it: `forward(loss_fn, inputs)` returns `loss_fn(tprl_model, inputs)`.
    A stage's loss calls the pruner's parts several times (an episode's steps), which no single forward of the LLaVA
    model expresses; computed inside this forward, under `accelerate launch` it runs in the DDP-wrapped module, so DDP
    averages the gradients over the processes.
    """

    def __init__(self, tprl_model: TPRLForConditionalGeneration):
        super().__init__()
        self.tprl_model = tprl_model

    def forward(self, loss_fn, inputs: dict) -> tuple[torch.Tensor, dict[str, float]]:
        return loss_fn(self.tprl_model, inputs)


class PrunerStageTrainer(Trainer):
    """
    A `Trainer` for one part of a TPRL model's pruner; everything else (the LLaVA base, the other pruner parts) stays
    frozen. Checkpoints are pruner-only TPRL checkpoints (they load with `from_pretrained`).

    Args:
        model ([`TPRLForConditionalGeneration`]): the model; `trained_module` names the part trained (e.g.
            `"pruner.policy"`).
        args ([`~transformers.TrainingArguments`]): the stage's arguments.
        trained_module (`str`): the submodule whose parameters the stage trains.
        **kwargs: the other `Trainer` arguments (`train_dataset`, `data_collator`, `processing_class`, `callbacks`).
    """

    def __init__(self, model: TPRLForConditionalGeneration, args: TrainingArguments, trained_module: str, **kwargs):
        model.requires_grad_(False)
        model.get_submodule(trained_module).requires_grad_(True)
        budget_head = getattr(model.pruner.policy, "budget_head", None)
        if budget_head is not None and trained_module != "pruner.policy.budget_head":
            budget_head.requires_grad_(False)  # the budget stage's alone: no other stage's loss reaches it
        self.tprl_model = model
        self._metrics: dict[str, list[float]] = defaultdict(list)
        super().__init__(model=StageModel(model), args=args, **kwargs)

    def stage_loss(self, model: TPRLForConditionalGeneration, inputs: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """The stage's loss on a batch and the metrics to log with it (averaged between two logs)."""
        raise NotImplementedError

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = model(self.stage_loss, inputs)
        self.record(metrics)
        return (loss, None) if return_outputs else loss

    def record(self, metrics: dict[str, float]) -> None:
        """Adds metrics to the next log record, as TRL's trainers keep `_metrics`."""
        for key, value in metrics.items():
            self._metrics[key].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Every process logs (Trainer calls `log` on all of them): each metric is averaged over the processes that
        # recorded it. A process may lack one (PPO's loss statistics, where none of its questions carried signal), so
        # the processes agree on the keys first: a reduction one of them skipped would hang the others.
        keys = list(self._metrics)
        if self.accelerator.num_processes > 1:
            keys = sorted(set().union(*gather_object([keys])))
        for key in keys:
            values = self._metrics.get(key, [])
            mean = torch.tensor([sum(values) / len(values) if values else 0.0, float(bool(values))])
            total = self.accelerator.reduce(mean.to(self.args.device), reduction="sum")
            logs[key] = (total[0] / total[1]).item()
        self._metrics.clear()
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        self.tprl_model.save_pretrained(output_dir, processor=self.processing_class)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        if not os.path.isfile(os.path.join(resume_from_checkpoint, TRAINER_STATE_NAME)):
            raise ValueError(
                f"{resume_from_checkpoint} is not a checkpoint of a TPRL stage (no {TRAINER_STATE_NAME})."
            )
        self.tprl_model.pruner.load_state_dict(load_pruner_weights(resume_from_checkpoint, {}))
