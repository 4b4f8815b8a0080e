"""Imitation learning: the policy learns the teacher's multi-step keep decisions from the question alone.

At every step of a teacher episode the policy sees the tokens the teacher still kept and is trained to give the
teacher's ordered picks the highest Plackett-Luce likelihood (see `selection.py`), normalised per pick.
"""

from collections.abc import Iterator

import torch
from tqdm.auto import tqdm

from modeling_tprl import TPRLForConditionalGeneration

from .data import prompt_attention_mask
from .selection import selection_log_prob


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
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    picks_per_step: list[torch.Tensor],
) -> torch.Tensor:
    """Mean negative log-likelihood per pick of the teacher's picks, over the steps of the episode."""
    latents = model.pruner.autoencoder.encode(image_features)
    question_embeds, question_mask = model.question_embeddings(
        batch["input_ids"], prompt_attention_mask(batch), len(image_features)
    )
    visual, question = model.pruner.policy.embed_inputs(latents, question_embeds)
    states = episode_states(image_features.shape[1], picks_per_step)
    loss = 0.0
    for step, (kept_mask, picks) in enumerate(zip(states, picks_per_step)):
        logits, _ = model.pruner.policy(visual, question, kept_mask, question_mask, step)
        loss = loss + (-selection_log_prob(logits, picks) / picks.shape[1]).mean()
    return loss / len(states)


def train_imitation(
    model: TPRLForConditionalGeneration,
    batches: Iterator[tuple[dict[str, torch.Tensor], list[torch.Tensor]]],
    num_steps: int,
    learning_rate: float = 1e-3,
    log_every: int = 50,
) -> list[dict]:
    """
    Trains `model.pruner.policy` on `(batch, teacher picks per step)` pairs; the base and the autoencoder are frozen.

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
        batch, picks_per_step = next(batches)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        picks_per_step = [picks.to(model.device) for picks in picks_per_step]
        with torch.no_grad():
            image_features = model.get_image_features(batch["pixel_values"])
        loss = imitation_loss(model, batch, image_features, picks_per_step)
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
