"""PPO for the pruner's keep/drop policy, in a `transformers.Trainer` subclass; the LLaVA backbone stays frozen.

An episode prunes one (image, question) in `num_pruning_steps` steps. At step t the policy, seeing the tokens still
kept, keeps `k_t` of them (an ordered Plackett-Luce pick, `selection.py`). The reward of a step is

    score_weight * (score after the step - score before) + compute_weight * (share of tokens removed)
    - kl_coef * (per-pick KL of the policy to the imitation policy, on the picks made)

where the score is the frozen LLaVA's answer log-likelihood (or correctness) on the kept tokens. Advantages come
from GAE over the steps or, with `num_episodes_per_question` > 1, from RLOO's leave-one-out baseline over the
episodes of the same question; the clipped policy loss is taken per pick (as TRL's PPO takes it per token), the
value loss is clipped around the rollout's values.
"""

import copy
import os
from dataclasses import dataclass

import torch
from transformers import Trainer, TrainerState
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import TrainOutput, get_last_checkpoint

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.configuration_tprl import num_kept_for_ratio
from modeling_tprl.modeling_tprl import load_pruner_weights
from modeling_tprl.pruning_tprl import keep_schedule

from .data import prompt_attention_mask
from .ppo_config import TPRLPPOConfig
from .scoring import answer_scores
from .selection import pick_log_probs, sample_selection, selection_entropy


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over `[episodes, steps]`; the state after the last step is terminal.

    Returns `(advantages, returns)`, with `returns = advantages + values`.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    return advantages, advantages + values


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO's advantages over `[episodes, steps]` whose consecutive groups of `group_size` episodes share a question:
    each step's return-to-go minus the mean return-to-go of the group's other episodes at that step.

    Returns `(advantages, returns)`. Groups whose episodes all score alike give zero advantage (no noise), so the
    signal comes from the questions whose answer depends on the selection.
    """
    returns = rewards.flip(1).cumsum(1).flip(1)
    grouped = returns.view(-1, group_size, returns.shape[1])
    others = (grouped.sum(1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).view_as(returns), returns


def whiten(values: torch.Tensor, shift_mean: bool = True, std_floor: float = 0.0) -> torch.Tensor:
    """
    Scales to unit variance (and zero mean if `shift_mean`), as TRL's PPO whitens advantages and rewards; with
    `std_floor`, divides by max(std, std_floor) instead, so near-constant values stay small.
    """
    mean, var = values.mean(), values.var(unbiased=False)
    whitened = (values - mean) / torch.sqrt(var + 1e-8).clamp(min=std_floor)
    return whitened if shift_mean else whitened + mean


def check_budgets(num_visual_tokens: int, keep_ratios: list[float], num_pruning_steps: int) -> None:
    """Each step of an episode must remove at least one token: refuse budgets too close to all the tokens."""
    for ratio in keep_ratios:
        kept = num_kept_for_ratio(num_visual_tokens, ratio)
        if num_visual_tokens - kept < num_pruning_steps:
            raise ValueError(
                f"keep_ratio {ratio} keeps {kept} of {num_visual_tokens} visual tokens: {num_visual_tokens - kept} "
                f"to remove in num_pruning_steps={num_pruning_steps} steps, so some step would remove none. Lower "
                "the keep ratio or num_pruning_steps."
            )


PPO_STATS = ("loss", "policy_loss", "value_loss", "entropy", "clipfrac", "approxkl")


def policy_step(
    policy: torch.nn.Module,
    inputs: tuple[torch.Tensor, torch.Tensor],
    question_mask: torch.Tensor,
    kept_mask: torch.Tensor,
    step: int,
    episode_question: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The policy's keep logits and values `[episodes, tokens]`, `[episodes]` at `step`, from inputs embedded once per
    question (`inputs`, `question_mask`) and `episode_question`, the question of each episode. At step 0 every
    episode still keeps every token, so the outputs depend on the question alone: they are computed once per question.
    """
    # index_select, not indexing: its backward pass on the CPU sums in a fixed order, so runs are reproducible.
    if step == 0:
        all_kept = torch.ones(len(question_mask), kept_mask.shape[1], dtype=torch.bool, device=kept_mask.device)
        logits, values = policy(*inputs, all_kept, question_mask, step)
        return logits.index_select(0, episode_question), values.index_select(0, episode_question)
    visual, question = (value.index_select(0, episode_question) for value in inputs)
    return policy(visual, question, kept_mask, question_mask[episode_question], step)


@dataclass
class Rollout:
    """One batch of episodes, everything the PPO epochs need. Per question: the policy's frozen inputs (`latents`,
    `question_embeds`, `question_mask`); per episode, its question (`episode_question`) and whether the PPO epochs
    train on it (`trained`). Per step t: `states[t]` (kept before the step), `picks[t]` and `pick_log_probs[t]`
    (`[episodes, k_t]`); per episode and step: values, advantages, returns."""

    latents: torch.Tensor
    question_embeds: torch.Tensor
    question_mask: torch.Tensor
    episode_question: torch.Tensor
    states: list[torch.Tensor]
    picks: list[torch.Tensor]
    pick_log_probs: list[torch.Tensor]
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    trained: torch.Tensor
    metrics: dict[str, float]


class TPRLPPOTrainer(Trainer):
    """
    Trains `model.pruner.policy` with PPO; `model.base` and `model.pruner.autoencoder` are frozen.

    Args:
        model ([`TPRLForConditionalGeneration`]): the model, its policy usually initialised by imitation.
        args ([`TPRLPPOConfig`]): the configuration.
        train_dataset (`datasets.Dataset`): `image` / `question` / `answer` examples.
        data_collator: turns examples into inputs with answer `labels` (e.g. `VQACollator`).
        ref_policy (`torch.nn.Module`, *optional*): the policy of the KL penalty; defaults to a frozen copy of
            the model's policy as it is when the trainer is built (the imitation policy).
        processing_class: the base's processor, saved with each checkpoint.
        callbacks (`list[TrainerCallback]`, *optional*): extra callbacks.
    """

    def __init__(
        self,
        model: TPRLForConditionalGeneration,
        args: TPRLPPOConfig,
        train_dataset,
        data_collator,
        ref_policy: torch.nn.Module | None = None,
        processing_class=None,
        callbacks=None,
    ):
        if args.max_steps < 1:
            raise ValueError("Set max_steps, the number of PPO updates (rollouts), to a positive value.")
        check_budgets(model.num_visual_tokens, args.keep_ratios, model.config.num_pruning_steps)
        model.requires_grad_(False)
        model.pruner.policy.requires_grad_(True)
        self.ref_policy = copy.deepcopy(model.pruner.policy) if ref_policy is None else ref_policy
        self.ref_policy.requires_grad_(False).eval()
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            data_collator=data_collator,
            processing_class=processing_class,
            callbacks=callbacks,
        )

    # ---- rollout ------------------------------------------------------------------------------------------------

    def _score(self, batch: dict, image_features: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores = answer_scores(self.model, batch, image_features, kept)
        task = scores.log_likelihood if self.args.score == "log_likelihood" else scores.correct.float()
        return task, scores.correct.float()

    @torch.no_grad()
    def rollout(self, batch: dict[str, torch.Tensor], keep_ratio: float) -> Rollout:
        """Runs `num_episodes_per_question` episodes per example at `keep_ratio`, sampling from the current policy."""
        args, model = self.args, self.model
        policy = model.pruner.policy
        policy.eval()
        image_features = model.get_image_features(batch["pixel_values"])
        questions, total, _ = image_features.shape
        all_tokens = torch.arange(total, device=image_features.device).expand(questions, -1)
        score, _ = self._score(batch, image_features, all_tokens)
        latents = model.pruner.autoencoder.encode(image_features)
        question_embeds, question_mask = model.question_embeddings(
            batch["input_ids"], prompt_attention_mask(batch), questions
        )
        # Consecutive episodes share a question: what does not depend on the episode is computed once per question.
        group_size = args.num_episodes_per_question
        episode_question = torch.arange(questions, device=latents.device).repeat_interleave(group_size)
        # The episodes are scored from the image features: their pixels need no copy.
        batch = {key: value[episode_question] for key, value in batch.items() if key != "pixel_values"}
        image_features, score = image_features[episode_question], score[episode_question]
        full_score = score
        episodes = len(episode_question)
        kept_mask = torch.ones(episodes, total, dtype=torch.bool, device=latents.device)
        counts = keep_schedule(total, model.num_kept_tokens(keep_ratio=keep_ratio), model.config.num_pruning_steps)
        inputs = policy.embed_inputs(latents, question_embeds)
        ref_inputs = self.ref_policy.embed_inputs(latents, question_embeds)
        states, picks, log_probs, values, rewards, kls = [], [], [], [], [], []
        previous = total
        for step, count in enumerate(counts):
            logits, value = policy_step(policy, inputs, question_mask, kept_mask, step, episode_question)
            pick = sample_selection(logits, count)
            log_prob = pick_log_probs(logits, pick)
            ref_logits, _ = policy_step(self.ref_policy, ref_inputs, question_mask, kept_mask, step, episode_question)
            kl = (log_prob - pick_log_probs(ref_logits, pick)).mean(1)
            new_score, correct = self._score(batch, image_features, pick.sort(dim=1).values)
            reward = args.score_weight * (new_score - score) + args.compute_weight * (previous - count) / total
            states.append(kept_mask)
            picks.append(pick)
            log_probs.append(log_prob)
            values.append(value)
            rewards.append(reward - args.kl_coef * kl)
            kls.append(kl)
            kept_mask = torch.zeros_like(kept_mask).scatter(1, pick, True)
            score, previous = new_score, count
        values, rewards = torch.stack(values, 1), torch.stack(rewards, 1)
        if args.whiten_rewards:
            rewards = whiten(rewards, shift_mean=False)
        trained = torch.ones(episodes, dtype=torch.bool, device=latents.device)
        if group_size > 1:
            advantages, returns = leave_one_out_advantages(rewards, group_size)
            # Questions whose episodes all end with the same score have no advantage but the KL term's: leave them
            # out of the PPO epochs (DAPO's dynamic sampling), which then cost as many questions as carry signal.
            outcomes = score.view(-1, group_size)
            trained = (outcomes.amax(1) != outcomes.amin(1)).repeat_interleave(group_size)
        else:
            advantages, returns = compute_gae(rewards, values, args.gamma, args.lam)
        metrics = {
            "episode_return": rewards.sum(1).mean().item(),
            "score_full": full_score.mean().item(),
            "score_kept": score.mean().item(),
            "accuracy_kept": correct.mean().item(),
            "kept_ratio": counts[-1] / total,
            "kl": torch.stack(kls, 1).sum(1).mean().item(),
        }
        if group_size > 1:
            metrics["trained_questions"] = trained.float().mean().item()  # the share that carries the signal
        return Rollout(
            latents=latents,
            question_embeds=question_embeds,
            question_mask=question_mask,
            episode_question=episode_question,
            states=states,
            picks=picks,
            pick_log_probs=log_probs,
            values=values,
            advantages=whiten(advantages, std_floor=args.advantage_std_floor),  # over all, trained or not
            returns=returns,
            trained=trained,
            metrics=metrics,
        )

    # ---- PPO update ---------------------------------------------------------------------------------------------

    def ppo_loss(self, rollout: Rollout, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Clipped PPO loss of the episodes `rows` of `rollout`, averaged over the steps."""
        args, policy = self.args, self.model.pruner.policy
        num_steps = len(rollout.picks)
        loss, stats = 0.0, dict.fromkeys(PPO_STATS[1:], 0.0)
        questions, episode_question = rollout.episode_question[rows].unique(return_inverse=True)
        inputs = policy.embed_inputs(rollout.latents[questions], rollout.question_embeds[questions])
        question_mask = rollout.question_mask[questions]
        for step in range(num_steps):
            states = rollout.states[step][rows]
            logits, value = policy_step(policy, inputs, question_mask, states, step, episode_question)
            picks = rollout.picks[step][rows]
            log_ratio = pick_log_probs(logits, picks) - rollout.pick_log_probs[step][rows]
            ratio = log_ratio.exp()
            advantage = rollout.advantages[rows, step, None]
            clipped_ratio = ratio.clamp(1 - args.cliprange, 1 + args.cliprange)
            policy_loss = torch.max(-advantage * ratio, -advantage * clipped_ratio).mean()
            old_value, target = rollout.values[rows, step], rollout.returns[rows, step]
            clipped_value = old_value + (value - old_value).clamp(-args.cliprange_value, args.cliprange_value)
            value_loss = 0.5 * torch.max((value - target) ** 2, (clipped_value - target) ** 2).mean()
            with torch.set_grad_enabled(args.entropy_coef > 0 and torch.is_grad_enabled()):
                entropy = (selection_entropy(logits, picks) / picks.shape[1]).mean()
            loss = loss + (policy_loss + args.vf_coef * value_loss - args.entropy_coef * entropy) / num_steps
            stats["policy_loss"] += policy_loss.item() / num_steps
            stats["value_loss"] += value_loss.item() / num_steps
            stats["entropy"] += entropy.item() / num_steps
            stats["clipfrac"] += ((ratio - 1).abs() > args.cliprange).float().mean().item() / num_steps
            stats["approxkl"] += 0.5 * (log_ratio**2).mean().item() / num_steps
        return loss, stats

    def ppo_update(self, rollout: Rollout) -> dict[str, float]:
        """`num_ppo_epochs` passes over the rollout in `num_mini_batches` minibatches, one optimiser step each."""
        args, policy = self.args, self.model.pruner.policy
        policy.train()
        parameters = [p for p in policy.parameters() if p.requires_grad]
        totals, updates = dict.fromkeys(PPO_STATS, 0.0), 0
        trained = rollout.trained.nonzero()[:, 0]
        for _ in range(args.num_ppo_epochs):
            order = trained[torch.randperm(len(trained), device=trained.device)]
            for rows in torch.tensor_split(order, args.num_mini_batches):
                # Every process takes the same optimiser steps (their gradients are averaged); one whose minibatch
                # is empty adds a zero gradient, and a minibatch empty on every process is skipped by all.
                if self.accelerator.reduce(torch.tensor(len(rows), device=order.device), reduction="sum") == 0:
                    continue
                if len(rows):
                    loss, stats = self.ppo_loss(rollout, rows)
                else:
                    loss, stats = sum(p.sum() for p in parameters) * 0.0, dict.fromkeys(PPO_STATS[1:], 0.0)
                loss.backward()
                if self.accelerator.num_processes > 1:  # the policy is called per step, outside DDP: average here
                    for parameter in parameters:
                        if parameter.grad is not None:
                            parameter.grad = self.accelerator.reduce(parameter.grad, reduction="mean")
                if args.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                for key, value in {"loss": loss.item(), **stats}.items():
                    totals[key] += value
                updates += 1
        return {key: value / max(1, updates) for key, value in totals.items()}

    def _get_train_sampler(self, train_dataset=None) -> torch.utils.data.Sampler:
        # Its own generator: the order is fixed by the seed and does not draw from the RNG that a resumed run
        # restores, so a resumed run sees the same rollouts as an uninterrupted one.
        dataset = self.train_dataset if train_dataset is None else train_dataset
        return torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(self.args.seed))

    # ---- loop ---------------------------------------------------------------------------------------------------

    def _keep_ratio_for(self, update: int) -> float:
        """The budget of rollout `update`: drawn from `keep_ratios` in proportion to `rollout_weights`, the same on
        every process and after resuming."""
        generator = torch.Generator().manual_seed(self.args.seed * 1_000_003 + update)
        weights = torch.tensor(self.args.rollout_weights or [1] * len(self.args.keep_ratios), dtype=torch.float)
        return self.args.keep_ratios[int(torch.multinomial(weights, 1, generator=generator))]

    def _resume(self, checkpoint: str) -> None:
        if not os.path.isfile(os.path.join(checkpoint, "trainer_state.json")):
            raise ValueError(f"{checkpoint} is not a TPRL PPO checkpoint (no trainer_state.json).")
        weights = load_pruner_weights(checkpoint, {})
        policy_weights = {k.removeprefix("policy."): v for k, v in weights.items() if k.startswith("policy.")}
        self.model.pruner.policy.load_state_dict(policy_weights)
        self._load_optimizer_and_scheduler(checkpoint)
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs) -> TrainOutput:
        """Runs `max_steps` PPO updates; `resume_from_checkpoint` (a path, or `True` for the last checkpoint in
        `output_dir`) continues a run from its saved step with its optimiser, scheduler and RNG states."""
        args = self.args
        updates_per_rollout = args.num_ppo_epochs * args.num_mini_batches
        self.create_optimizer_and_scheduler(num_training_steps=args.max_steps * updates_per_rollout)
        self.state = TrainerState(
            stateful_callbacks=[
                cb for cb in self.callback_handler.callbacks + [self.control] if isinstance(cb, ExportableState)
            ]
        )
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True but {args.output_dir} holds no checkpoint-* folder.")
        if resume_from_checkpoint:
            self._resume(resume_from_checkpoint)
        self.state.max_steps = args.max_steps
        self.state.logging_steps = args.logging_steps
        self.state.save_steps = args.save_steps
        self.state.is_local_process_zero = self.is_local_process_zero()
        self.state.is_world_process_zero = self.is_world_process_zero()

        dataloader = self.get_train_dataloader()
        batches = _endless(dataloader, skip=self.state.global_step)
        batch = next(batches)  # starting the data iterator draws from the global RNG: do it before restoring it
        if resume_from_checkpoint:
            self._load_rng_state(resume_from_checkpoint)
        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        total_loss = 0.0
        while self.state.global_step < args.max_steps:
            self.control = self.callback_handler.on_step_begin(args, self.state, self.control)
            batch = batch if batch is not None else next(batches)
            rollout = self.rollout(batch, self._keep_ratio_for(self.state.global_step))
            batch = None
            metrics = {**rollout.metrics, **self.ppo_update(rollout)}
            metrics = {
                k: self.accelerator.reduce(torch.tensor(v), reduction="mean").item() for k, v in metrics.items()
            }
            total_loss += metrics["loss"]
            self.state.global_step += 1
            self.state.epoch = self.state.global_step / max(1, len(dataloader))
            self.control = self.callback_handler.on_step_end(args, self.state, self.control)
            if self.control.should_log:
                self.log({**metrics, "learning_rate": self.lr_scheduler.get_last_lr()[0]})
            if self.control.should_save:
                self._save_checkpoint(self.model, trial=None)
                self.control = self.callback_handler.on_save(args, self.state, self.control)
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        return TrainOutput(self.state.global_step, total_loss / max(1, args.max_steps), {"train_loss": total_loss})


def _endless(dataloader, skip: int = 0):
    """Batches forever, epoch after epoch, after skipping the `skip` already used (on resume)."""
    seen = 0
    while True:
        for batch in dataloader:
            if seen >= skip:
                yield batch
            seen += 1
