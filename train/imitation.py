"""Stage 3 of TPRL: imitation. The policy learns the teacher's multi-step keep decisions from the question alone.

Along each teacher episode the policy is trained to give the teacher's ordered picks the highest Plackett-Luce
likelihood, normalised per pick. With a relevance target (`relevance_coef`), its keep logits at every step also learn
which few tokens the teacher's leave-one-in scores most (`relevance_loss`): the tokens that alone best answer the
question, on the digit world the named digit's patches, which the teacher's full selections carry only faintly
(docs/experiments.md). What the policy reads of an example and does not train (the autoencoder's latents, the
question's token ids) is computed once per example (`encode_examples`), so the steps run the policy alone.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from modeling_tprl import EpisodeInputs, TPRLForConditionalGeneration

from .data import prompt_attention_mask
from .demonstrations import demonstrated_examples
from .stage_trainer import PrunerStageTrainer


@dataclass
class FrozenInputs:
    """The frozen part of what the policy reads of each example: the autoencoder's latents of its visual tokens and
    its question's token ids (the prompt's text, never the answer), and for an anyres base the policy's slots its
    image has a token in (`present`). Kept on the CPU (~0.3 MB per example at 7B)."""

    latents: torch.Tensor
    question_ids: list[torch.Tensor]
    present: torch.Tensor | None = None


@torch.no_grad()
def encode_examples(
    model: TPRLForConditionalGeneration, examples: datasets.Dataset, collator, batch_size: int
) -> FrozenInputs:
    """The `FrozenInputs` of `examples` (one image each), row `i` of `examples` being example `i`."""
    latents, question_ids, present = [], [], []
    for start in tqdm(range(0, len(examples), batch_size), desc="imitation inputs (latents, questions)"):
        rows = [examples[i] for i in range(start, min(start + batch_size, len(examples)))]
        batch = {k: v.to(model.device) for k, v in collator(rows).items()}
        image_inputs = model.image_inputs(batch)
        latents.append(model.pruner.autoencoder.encode(model.visual_tokens(**image_inputs)).cpu())
        present.append(model.policy_present(image_inputs))
        ids, mask = model.question_token_ids(batch["input_ids"], prompt_attention_mask(batch))
        question_ids.extend(row[keep].cpu() for row, keep in zip(ids, mask))
    present = None if present[0] is None else torch.cat(present).cpu()
    return FrozenInputs(torch.cat(latents), question_ids, present)


class DemonstrationDataset(Dataset):
    """The demonstrations (`make_demonstrations`) as imitation examples: per row, the example's frozen inputs and the
    teacher's picks at each step. With `relevance_tokens`, also the example's `relevant` tokens (`[tokens]` bool): of
    the `relevance_tokens` the teacher's leave-one-in scores most, those that alone give the answer a probability of
    at least `relevance_threshold`. A question that no token answers alone (e.g. a count) has none."""

    def __init__(
        self,
        demonstrations: datasets.Dataset,
        inputs: FrozenInputs,
        relevance_tokens: int = 0,
        relevance_threshold: float = 0.5,
    ):
        # Read into lists once: a dataset column reads each row from Arrow again (a fifth of the stage's time).
        self.examples, self.picks = list(demonstrations["example"]), list(demonstrations["picks"])
        self.inputs, self.relevant = inputs, None
        if relevance_tokens:
            if "leave_one_in" not in demonstrations.column_names:
                raise ValueError(
                    "A relevance target needs the teacher's leave-one-in scores, which these demonstrations lack "
                    "(another teacher, or an older tprl): use a leave-one-in teacher and delete the demonstrations "
                    "folder, or set relevance_coef to 0."
                )
            scores = torch.tensor(demonstrated_examples(demonstrations)["leave_one_in"])  # answer log-likelihoods
            top = torch.zeros_like(scores, dtype=torch.bool).scatter(
                1, scores.topk(relevance_tokens, dim=1).indices, True
            )
            self.relevant = top & (scores.exp() >= relevance_threshold)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def num_examples(self) -> int:
        """Examples demonstrated (each at every budget)."""
        return len(self.inputs.question_ids)

    def frozen_inputs(self, example: int) -> dict:
        """What the policy reads of `example` (an example index)."""
        inputs = {"latents": self.inputs.latents[example], "question_ids": self.inputs.question_ids[example]}
        if self.inputs.present is not None:
            inputs["present"] = self.inputs.present[example]
        return inputs

    def relevance_batch(self, examples: list[int]) -> dict:
        """The frozen inputs and the `relevant` tokens of `examples` (example indices), collated; for PPO's relevance
        target."""
        return collate_demonstrations(
            [self.frozen_inputs(example) | {"relevant": self.relevant[example]} for example in examples]
        )

    def __getitem__(self, row: int) -> dict:
        example = self.examples[row]
        item = self.frozen_inputs(example) | {"picks": [torch.tensor(step) for step in self.picks[row]]}
        if self.relevant is not None:
            item["relevant"] = self.relevant[example]
        return item


def collate_demonstrations(rows: list[dict]) -> dict:
    """Stacks the latents, the picks of each step (one budget per batch) and the relevant tokens, right-pads the
    question ids."""
    lengths = torch.tensor([len(row["question_ids"]) for row in rows])
    question_ids = pad_sequence([row["question_ids"] for row in rows], batch_first=True)
    batch = {
        "latents": torch.stack([row["latents"] for row in rows]),
        "question_ids": question_ids,
        "question_mask": torch.arange(question_ids.shape[1])[None] < lengths[:, None],
    }
    if "picks" in rows[0]:  # right-padded with -1 where images of different sizes keep different counts
        batch["picks"] = [
            pad_sequence([row["picks"][step] for row in rows], batch_first=True, padding_value=-1)
            for step in range(len(rows[0]["picks"]))
        ]
    for name in ("relevant", "present"):
        if name in rows[0]:
            batch[name] = torch.stack([row[name] for row in rows])
    return batch


def frozen_episode_inputs(model: TPRLForConditionalGeneration, batch: dict) -> EpisodeInputs:
    """The policy's inputs for collated `FrozenInputs` (`collate_demonstrations`): their latents and the base's
    embeddings of their question ids."""
    question_embeds = model.get_input_embeddings()(batch["question_ids"])
    return model.pruner.policy.embed_inputs(
        batch["latents"], question_embeds, batch["question_mask"], batch.get("present")
    )


def relevance_loss(keep_logits: list[torch.Tensor], relevant: torch.Tensor) -> torch.Tensor:
    """
    The relevance target's loss: per step of an episode, the binary cross-entropy of the keep logits (`[rows, tokens]`,
    `PolicyEpisode.keep_logits`) of the tokens still kept against each row's `relevant` tokens (`[rows, tokens]`
    bool), averaged over the steps; rows with no relevant token do not count. Every step, not the first alone: the
    policy otherwise drops the relevant tokens at the last step, among the few dozen that are left.
    """
    target, targeted = relevant.float(), relevant.any(1, keepdim=True)
    losses = []
    for logits in keep_logits:
        scored = logits.isfinite() & targeted
        bce = F.binary_cross_entropy_with_logits(logits.masked_fill(~scored, 0.0), target, reduction="none")
        losses.append((bce * scored).sum() / scored.sum().clamp(min=1))
    return torch.stack(losses).mean()


def episode_budgets(picks: list[torch.Tensor]) -> int | torch.Tensor:
    """The budget of each episode of given `picks` (per step, right-padded with -1): one for all, or one per row."""
    counts = (picks[-1] >= 0).sum(1)
    return picks[-1].shape[1] if bool((counts == picks[-1].shape[1]).all()) else counts


def pick_mean(values: torch.Tensor, picks: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """The mean of per-pick `values` over the real picks (`picks` right-padded with -1), over all or along `dim`."""
    real = picks >= 0
    if bool(real.all()):
        return values.mean() if dim is None else values.mean(dim)
    if dim is None:
        return (values * real).sum() / real.sum().clamp(min=1)
    return (values * real).sum(dim) / real.sum(dim).clamp(min=1)


class BudgetBatchSampler(Sampler):
    """
    `num_batches` batches of demonstration rows, each at one budget (so that shapes align), the budget drawn in
    proportion to `weights` (one per keep ratio, in the order they first appear), e.g. `[1, 1, 2]` for half of the
    batches at the last. Seeded, and reseeded per epoch (`set_epoch`).
    """

    def __init__(self, keep_ratios: list[float], weights: list[int], batch_size: int, num_batches: int, seed: int):
        ratios = list(dict.fromkeys(keep_ratios))
        if len(weights) != len(ratios):
            raise ValueError(
                f"{len(weights)} imitation weights {weights} for the demonstrations' {len(ratios)} budgets."
            )
        self.rows_by_ratio = [[i for i, value in enumerate(keep_ratios) if value == ratio] for ratio in ratios]
        self.draws = [index for index, weight in enumerate(weights) for _ in range(weight)]
        # Not called `batch_size`: accelerate's sharding would take a budget with fewer rows for a last, short batch.
        self.rows_per_batch, self.num_batches, self.seed, self.epoch = batch_size, num_batches, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for _ in range(self.num_batches):
            rows = self.rows_by_ratio[self.draws[int(torch.randint(len(self.draws), (1,), generator=generator))]]
            yield [rows[int(i)] for i in torch.randperm(len(rows), generator=generator)[: self.rows_per_batch]]


class ImitationTrainer(PrunerStageTrainer):
    """
    Trains `model.pruner.policy` on a [`DemonstrationDataset`]: the loss is the mean negative log-likelihood per pick
    of the teacher's picks, along the teacher's episode, plus `relevance_coef` x `relevance_loss` of the keep logits
    along that episode against the dataset's `relevant` tokens. The base and the autoencoder are frozen.

    Args:
        model ([`TPRLForConditionalGeneration`]): the model, its autoencoder trained.
        args ([`~transformers.TrainingArguments`]): the stage's arguments (`max_steps` imitation steps).
        train_dataset ([`DemonstrationDataset`]): the demonstrations.
        batch_sampler ([`BudgetBatchSampler`]): which rows make each batch.
        relevance_coef (`float`, *optional*, defaults to `0.0`): weight of the relevance target.
        **kwargs: the other `Trainer` arguments.
    """

    def __init__(
        self,
        model: TPRLForConditionalGeneration,
        args,
        train_dataset,
        batch_sampler,
        relevance_coef: float = 0.0,
        **kwargs,
    ):
        self.batch_sampler, self.relevance_coef = batch_sampler, relevance_coef
        super().__init__(
            model,
            args,
            trained_module="pruner.policy",
            train_dataset=train_dataset,
            data_collator=collate_demonstrations,
            **kwargs,
        )

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(self.train_dataset, batch_sampler=self.batch_sampler, collate_fn=self.data_collator)
        return self.accelerator.prepare(loader)

    def stage_loss(self, model: TPRLForConditionalGeneration, inputs: dict) -> tuple[torch.Tensor, dict[str, float]]:
        policy, picks = model.pruner.policy, inputs["picks"]
        episode = policy.episode(frozen_episode_inputs(model, inputs), episode_budgets(picks), actions=picks)
        loss = -torch.stack([pick_mean(log_probs, step) for log_probs, step in zip(episode.log_probs, picks)]).mean()
        if self.relevance_coef == 0:
            return loss, {}
        relevance = relevance_loss(episode.keep_logits, inputs["relevant"])
        return loss + self.relevance_coef * relevance, {
            "relevance_loss": relevance.item(),
            "imitation_loss": loss.item(),
        }
