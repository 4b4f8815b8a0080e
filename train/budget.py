"""Stage 5 of TPRL with adaptive budgets: the policy learns how many visual tokens each question needs.

The budget head (`TPRLBudgetHead`) chooses, before the first pruning step, a budget among `adaptive_budgets` for a
compute weight beta, the price of a share of kept tokens. Its reward is the paper's: the task score minus the
compute term, `score_b - beta * b / tokens`. For each training question the trained policy's most likely episode is
run and scored at every budget (`budget_table`); the head learns to predict each budget's score from the policy's
state before the first step (binary cross-entropy), and chooses the budget of highest predicted reward (a
Boltzmann policy over it). Every budget's outcome is observed, so this is a bandit with full information, learned as
its value per arm; the price enters the choice in closed form, so one head serves every beta, and a higher beta
never keeps more. The rest of the policy is frozen: fixed budgets keep exactly the tokens they kept.
"""

from dataclasses import dataclass

import datasets
import torch
from torch.utils.data import Dataset

from modeling_tprl import EpisodeInputs, TPRLForConditionalGeneration
from tprl_eval.sharding import map_batches

from .data import prompt_attention_mask
from .scoring import answer_scores
from .stage_trainer import PrunerStageTrainer


@dataclass
class BudgetTable:
    """Per question: the policy's state before its first step (`TPRLPolicy.budget_state`) and `scores`
    (`[questions, budgets]`), whether its most likely episode at each budget answers correctly."""

    states: torch.Tensor
    scores: torch.Tensor


def policy_input_batch(
    model: TPRLForConditionalGeneration, examples: list[dict], collator
) -> tuple[dict, torch.Tensor, EpisodeInputs]:
    """A batch of `examples` collated on the model's device, its image features and the policy's inputs (the question
    read from the prompt alone)."""
    batch = {key: value.to(model.device) for key, value in collator(examples).items()}
    features = model.visual_tokens(**model.image_inputs(batch))
    question = model.question_embeddings(batch["input_ids"], prompt_attention_mask(batch), len(features))
    return batch, features, model.pruner.episode_inputs(features, *question)


@torch.no_grad()
def budget_table(
    model: TPRLForConditionalGeneration, examples: datasets.Dataset, collator, batch_size: int
) -> BudgetTable:
    """The `BudgetTable` of `examples` (image / question / answer rows) for `model`'s policy; under `accelerate
    launch` each process scores a share of the batches and every process gets the whole table."""
    policy = model.pruner.policy

    def score(rows: list[int], index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        batch, features, inputs = policy_input_batch(model, [examples[i] for i in rows], collator)
        states = policy.budget_state(inputs).cpu()
        # One episode per (budget, question) pair: the first step, where every token is still kept, runs once per
        # question (`episode_question`); each budget's rows then keep exactly their budget (no -1 padding).
        budgets = torch.tensor(policy.budgets, device=model.device)
        question = torch.arange(len(rows), device=model.device).repeat(len(budgets))
        kept = policy.episode(inputs, budgets.repeat_interleave(len(rows)), episode_question=question)
        kept = kept.kept_visual_indices()
        per_budget = [
            answer_scores(model, batch, features, kept[i * len(rows) : (i + 1) * len(rows), :budget]).correct.float()
            for i, budget in enumerate(policy.budgets)
        ]
        return list(zip(states, torch.stack(per_budget, 1).cpu()))

    desc = "budget table (every budget, scored)"
    rows = map_batches(score, list(range(len(examples))), batch_size, seed=0, description=desc)
    return BudgetTable(torch.stack([state for state, _ in rows]), torch.stack([scores for _, scores in rows]))


class BudgetDataset(Dataset):
    """A `BudgetTable` as training examples."""

    def __init__(self, table: BudgetTable):
        self.table = table

    def __len__(self) -> int:
        return len(self.table.scores)

    def __getitem__(self, row: int) -> dict:
        return {"state": self.table.states[row], "scores": self.table.scores[row]}


class BudgetTrainer(PrunerStageTrainer):
    """
    Trains `model.pruner.policy.budget_head` on a [`BudgetDataset`] to predict, per budget, whether the policy's most
    likely episode answers right (binary cross-entropy); logs the prediction's mean absolute error and the mean keep
    ratio the head chooses at a compute weight of 1.

    Args:
        model ([`TPRLForConditionalGeneration`]): the model, its policy trained and with `adaptive_budgets`.
        args ([`~transformers.TrainingArguments`]): the stage's arguments.
        train_dataset ([`BudgetDataset`]): the budget table.
        **kwargs: the other `Trainer` arguments.
    """

    def __init__(self, model: TPRLForConditionalGeneration, args, train_dataset, **kwargs):
        super().__init__(
            model, args, trained_module="pruner.policy.budget_head", train_dataset=train_dataset, **kwargs
        )

    def stage_loss(self, model: TPRLForConditionalGeneration, inputs: dict) -> tuple[torch.Tensor, dict[str, float]]:
        head, states, scores = model.pruner.policy.budget_head, inputs["state"], inputs["scores"]
        logits = head.score_logits(states)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, scores)
        choice = head(states, torch.ones(len(states), device=states.device)).argmax(-1)
        return loss, {
            "budget/score_error": (logits.detach().sigmoid() - scores).abs().mean().item(),
            "budget/keep_ratio_at_1": head.shares[choice].mean().item(),
        }
