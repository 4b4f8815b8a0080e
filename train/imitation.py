"""Imitation learning: the policy learns the teacher's multi-step keep decisions from the question alone.

At every step of a teacher episode the policy sees the tokens the teacher still kept and is trained to give the
teacher's ordered picks the highest Plackett-Luce likelihood (see `selection.py`), normalised per pick.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from modeling_tprl import TPRLForConditionalGeneration

from .data import prompt_attention_mask
from .selection import selection_log_prob


@dataclass
class PolicyInputs:
    """
    The frozen part of what the policy reads of each example: the autoencoder's latents of its visual tokens and
    its question's token ids. Computed once by `encode_examples`, so that the imitation steps run the policy alone,
    not the processor and the vision tower at every step. Kept on the CPU (at 7B shapes, ~0.3 MB per example).
    """

    latents: torch.Tensor
    question_ids: list[torch.Tensor]

    def batch(self, model: TPRLForConditionalGeneration, examples: list[int]):
        """`(latents, question_embeds, question_mask)` of `examples`, on the model's device, questions right-padded
        as `model.question_embeddings` pads them."""
        ids = [self.question_ids[example] for example in examples]
        lengths = torch.tensor([len(row) for row in ids])
        question_ids = pad_sequence(ids, batch_first=True).to(model.device)
        question_mask = (torch.arange(question_ids.shape[1])[None] < lengths[:, None]).to(model.device)
        latents = self.latents[examples].to(model.device)
        return latents, model.get_input_embeddings()(question_ids), question_mask


@torch.no_grad()
def encode_examples(
    model: TPRLForConditionalGeneration, examples: datasets.Dataset, collator, batch_size: int
) -> PolicyInputs:
    """The `PolicyInputs` of `examples` (one image each), row `i` of `examples` being example `i`."""
    latents, question_ids = [], []
    for start in tqdm(range(0, len(examples), batch_size), desc="imitation inputs (latents, questions)"):
        rows = [examples[i] for i in range(start, min(start + batch_size, len(examples)))]
        batch = {k: v.to(model.device) for k, v in collator(rows).items()}
        latents.append(model.pruner.autoencoder.encode(model.get_image_features(batch["pixel_values"])).cpu())
        ids, mask = model.question_token_ids(batch["input_ids"], prompt_attention_mask(batch))
        question_ids.extend(row[keep].cpu() for row, keep in zip(ids, mask))
    return PolicyInputs(torch.cat(latents), question_ids)


def episode_states(total: int, picks_per_step: list[torch.Tensor]) -> list[torch.Tensor]:
    """The kept masks `[images, total]` *before* each step of an episode whose picks are `picks_per_step`."""
    images = len(picks_per_step[0])
    device = picks_per_step[0].device
    states = [torch.ones(images, total, dtype=torch.bool, device=device)]
    for picks in picks_per_step[:-1]:
        states.append(torch.zeros(images, total, dtype=torch.bool, device=device).scatter(1, picks, True))
    return states


def imitation_loss(
    model: TPRLForConditionalGeneration,
    latents: torch.Tensor,
    question_embeds: torch.Tensor,
    question_mask: torch.Tensor,
    picks_per_step: list[torch.Tensor],
) -> torch.Tensor:
    """Mean negative log-likelihood per pick of the teacher's picks, over the steps of the episode."""
    visual, question = model.pruner.policy.embed_inputs(latents, question_embeds)
    states = episode_states(latents.shape[1], picks_per_step)
    loss = 0.0
    for step, (kept_mask, picks) in enumerate(zip(states, picks_per_step)):
        logits, _ = model.pruner.policy(visual, question, kept_mask, question_mask, step)
        loss = loss + (-selection_log_prob(logits, picks) / picks.shape[1]).mean()
    return loss / len(states)


def train_imitation(
    model: TPRLForConditionalGeneration,
    inputs: PolicyInputs,
    batches: Iterator[tuple[list[int], list[torch.Tensor]]],
    num_steps: int,
    learning_rate: float = 1e-3,
    log_every: int = 50,
) -> list[dict]:
    """
    Trains `model.pruner.policy` on `(examples, teacher picks per step)` pairs, the examples' frozen inputs read
    from `inputs`; the base and the autoencoder are frozen.

    Returns:
        `list[dict]`: one record per `log_every` steps with `step` and `loss` (NLL per pick).
    """
    policy = model.pruner.policy
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_steps)
    log, running = [], []
    progress = tqdm(range(num_steps), desc="imitation")
    for step in progress:
        examples, picks_per_step = next(batches)
        picks_per_step = [picks.to(model.device) for picks in picks_per_step]
        loss = imitation_loss(model, *inputs.batch(model, examples), picks_per_step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == num_steps:
            log.append({"step": step + 1, "loss": round(sum(running) / len(running), 4)})
            progress.set_postfix(loss=log[-1]["loss"])
            running = []
    policy.eval()
    return log
