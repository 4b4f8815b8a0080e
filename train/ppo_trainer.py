"""PPO for the pruner's keep/drop policy on the `transformers.Trainer` loop; the LLaVA backbone stays frozen.

An episode prunes one (image, question) in `num_pruning_steps` steps. At step t the policy, seeing the tokens still
kept, keeps `k_t` of them (an ordered Plackett-Luce pick). The reward of a step is

    score_weight * (score after the step - score before) + compute_weight * (share of tokens removed)
    - kl_coef * (per-pick KL of the policy to the imitation policy, on the picks made)

where the score is the frozen LLaVA's answer correctness (or log-likelihood) on the kept tokens. Advantages come from
RLOO's leave-one-out baseline over the `num_generations` episodes of each question or, with one episode per question,
from GAE; the clipped policy loss is taken per pick (as TRL's PPO takes it per token), the value loss is clipped
around the rollout's values. With a `relevance_dataset`, each optimiser step also keeps imitation's relevance target
(`imitation.relevance_loss`), which PPO alone erodes.

As in TRL's RLOO / GRPO trainers, the dataloader gives each rollout's questions once per optimiser step it feeds;
`_prepare_inputs` runs the rollout at the first of those steps and hands out its minibatches, and `compute_loss` is
the PPO loss of one minibatch.
"""

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.configuration_tprl import num_kept_for_ratio
from modeling_tprl.pruning_tprl import TPRLPolicy

from .data import prompt_attention_mask
from .imitation import DemonstrationDataset, episode_budgets, frozen_episode_inputs, pick_mean, relevance_loss
from .ppo_config import TPRLPPOConfig
from .scoring import answer_scores
from .stage_trainer import PrunerStageTrainer


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


@dataclass
class Rollout:
    """One batch of episodes, everything the PPO epochs need. Per question: the policy's frozen inputs (`latents`,
    `question_embeds`, `question_mask`); per episode: its question (`episode_question`) and whether the PPO epochs
    train on it (`trained`); per step t: `picks[t]` and `log_probs[t]` (`[episodes, k_t]`); per episode and step:
    values, advantages, returns. `metrics` are logged. For an anyres base, `present`: the policy's slots each question's
    image has a token in (the picks then right-padded with -1)."""

    latents: torch.Tensor
    question_embeds: torch.Tensor
    question_mask: torch.Tensor
    episode_question: torch.Tensor
    picks: list[torch.Tensor]
    log_probs: list[torch.Tensor]
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    trained: torch.Tensor
    metrics: dict[str, float]
    present: torch.Tensor | None = None


class RolloutSampler(Sampler):
    """
    Question indices for the rollouts, as TRL's `RepeatSampler` gives generation batches: a seeded random order, cut
    in batches of `batch_size` (the questions of all processes), each batch repeated `repeat` times in a row since
    one rollout feeds `repeat` optimiser steps. Reseeded per epoch (`set_epoch`).
    """

    def __init__(self, num_questions: int, batch_size: int, repeat: int, seed: int):
        if num_questions < batch_size:
            raise ValueError(f"A rollout needs {batch_size} questions, but the dataset has {num_questions}.")
        self.num_questions, self.batch_size, self.repeat, self.seed, self.epoch = (
            num_questions,
            batch_size,
            repeat,
            seed,
            0,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_questions // self.batch_size * self.batch_size * self.repeat

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.num_questions, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for start in range(0, self.num_questions - self.batch_size + 1, self.batch_size):
            for _ in range(self.repeat):
                yield from order[start : start + self.batch_size].tolist()


class TPRLPPOTrainer(PrunerStageTrainer):
    """
    Trains `model.pruner.policy` with PPO; `model.base` and `model.pruner.autoencoder` are frozen.

    Args:
        model ([`TPRLForConditionalGeneration`]): the model, its policy usually initialised by imitation.
        args ([`TPRLPPOConfig`]): the configuration.
        train_dataset (`datasets.Dataset`): `image` / `question` / `answer` examples.
        data_collator: turns examples into inputs with answer `labels` (e.g. `VQACollator`); it runs once per
            rollout.
        ref_policy ([`TPRLPolicy`], *optional*): the policy of the KL penalty; defaults to a frozen copy of the
            model's policy as it is when the trainer is built (the imitation policy).
        processing_class: the base's processor, saved with each checkpoint.
        callbacks (`list[TrainerCallback]`, *optional*): extra callbacks.
        relevance_dataset ([`DemonstrationDataset`], *optional*): demonstrations with imitation's relevance target
            (`relevance_tokens`). PPO alone erodes what that target taught (the named digit kept whole); with it,
            each optimiser step also adds `relevance_coef` x `relevance_loss` on `relevance_batch_size` of its
            examples, drawn at random.
        relevance_coef (`float`, *optional*, defaults to `0.0`): weight of the relevance target.
        relevance_batch_size (`int`, *optional*, defaults to `64`): examples of the relevance target per step.
    """

    def __init__(
        self,
        model: TPRLForConditionalGeneration,
        args: TPRLPPOConfig,
        train_dataset,
        data_collator,
        ref_policy: TPRLPolicy | None = None,
        processing_class=None,
        callbacks=None,
        relevance_dataset: DemonstrationDataset | None = None,
        relevance_coef: float = 0.0,
        relevance_batch_size: int = 64,
    ):
        if relevance_coef > 0 and (relevance_dataset is None or relevance_dataset.relevant is None):
            raise ValueError("relevance_coef > 0 needs a relevance_dataset built with relevance_tokens.")
        self.relevance_dataset, self.relevance_coef = relevance_dataset, relevance_coef
        self.relevance_batch_size = relevance_batch_size
        check_budgets(model.num_visual_tokens, args.keep_ratios, model.config.num_pruning_steps)
        self.ref_policy = copy.deepcopy(model.pruner.policy) if ref_policy is None else ref_policy
        self.ref_policy.requires_grad_(False).eval()
        self.rollout_collator = data_collator
        self._minibatches: list[dict] = []
        super().__init__(
            model,
            args,
            trained_module="pruner.policy",
            train_dataset=train_dataset,
            data_collator=lambda examples: examples,  # collated once per rollout, not once per step
            processing_class=processing_class,
            callbacks=callbacks,
        )
        self.ref_policy.to(self.args.device)

    def _get_train_sampler(self, train_dataset=None) -> Sampler:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        questions = self.args.per_device_train_batch_size * self.accelerator.num_processes
        return RolloutSampler(len(dataset), questions, self.args.steps_per_rollout, self.args.seed)

    # ---- rollout ------------------------------------------------------------------------------------------------

    def _score(self, batch: dict, image_features: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores = answer_scores(self.tprl_model, batch, image_features, kept)
        task = scores.log_likelihood if self.args.score == "log_likelihood" else scores.correct.float()
        return task, scores.correct.float()

    @torch.no_grad()
    def rollout(self, batch: dict[str, torch.Tensor], keep_ratio: float) -> Rollout:
        """Runs `num_generations` episodes per example at `keep_ratio`, sampling from the current policy."""
        args, model = self.args, self.tprl_model
        policy = model.pruner.policy
        policy.eval()
        image_inputs = model.image_inputs(batch)
        image_features = model.visual_tokens(**image_inputs)
        present = model.policy_present(image_inputs)  # an anyres base: each image its own tokens and budget
        questions, total, _ = image_features.shape
        all_tokens = torch.arange(total, device=image_features.device).expand(questions, -1)
        full_score, _ = self._score(batch, image_features, all_tokens)
        latents = model.pruner.autoencoder.encode(image_features)
        question_embeds, question_mask = model.question_embeddings(
            batch["input_ids"], prompt_attention_mask(batch), questions if present is None else image_inputs
        )
        # Consecutive episodes share a question: what does not depend on the episode is computed once per question.
        group_size = args.num_generations
        episode_question = torch.arange(questions, device=latents.device).repeat_interleave(group_size)
        batch = {key: value[episode_question] for key, value in batch.items() if key != "pixel_values"}
        image_features, score = image_features[episode_question], full_score[episode_question]
        num_kept = model.num_kept_tokens(keep_ratio=keep_ratio)
        if present is not None:
            total = present.sum(1)[episode_question]
            num_kept = model.visual_budgets(present.sum(1), keep_ratio=keep_ratio)[episode_question]
        inputs = policy.embed_inputs(latents, question_embeds, question_mask, present)
        episode = policy.episode(inputs, num_kept, sample=True, episode_question=episode_question)
        ref_inputs = self.ref_policy.embed_inputs(latents, question_embeds, question_mask, present)
        reference = self.ref_policy.episode(
            ref_inputs, num_kept, actions=episode.picks, episode_question=episode_question
        )
        rewards, kls, previous = [], [], total
        for picks, log_probs, ref_log_probs in zip(episode.picks, episode.log_probs, reference.log_probs):
            kl = pick_mean(log_probs - ref_log_probs, picks, dim=1)
            new_score, correct = self._score(batch, image_features, picks.sort(dim=1).values)
            kept = picks.shape[1] if present is None else (picks >= 0).sum(1)
            removed = (previous - kept) / total
            rewards.append(args.score_weight * (new_score - score) + args.compute_weight * removed - args.kl_coef * kl)
            kls.append(kl)
            score, previous = new_score, kept
        rewards = torch.stack(rewards, 1)
        if args.whiten_rewards:
            rewards = whiten(rewards, shift_mean=False)
        trained = torch.ones(len(episode_question), dtype=torch.bool, device=latents.device)
        if group_size > 1:
            advantages, returns = leave_one_out_advantages(rewards, group_size)
            # Questions whose episodes all end with the same score have no advantage but the KL term's: leave them
            # out of the PPO epochs (DAPO's dynamic sampling), which then cost as many questions as carry signal.
            outcomes = score.view(-1, group_size)
            trained = (outcomes.amax(1) != outcomes.amin(1)).repeat_interleave(group_size)
        else:
            advantages, returns = compute_gae(rewards, episode.values, args.gamma, args.lam)
        metrics = {
            "objective/episode_return": rewards.sum(1).mean().item(),
            "objective/score_full": full_score.mean().item(),
            "objective/score_kept": score.mean().item(),
            "objective/accuracy_kept": correct.mean().item(),
            "objective/keep_ratio": num_kept / total if present is None else (num_kept / total).mean().item(),
            "objective/kl": torch.stack(kls, 1).sum(1).mean().item(),
            "objective/trained_questions": trained.float().mean().item(),  # the share that carries the signal
            "val/explained_variance": (1 - (returns - episode.values).var() / returns.var().clamp(min=1e-8)).item(),
        }
        return Rollout(
            latents=latents,
            question_embeds=question_embeds,
            question_mask=question_mask,
            episode_question=episode_question,
            picks=episode.picks,
            log_probs=episode.log_probs,
            values=episode.values,
            advantages=whiten(advantages, std_floor=args.advantage_std_floor),  # over all, trained or not
            returns=returns,
            trained=trained,
            metrics=metrics,
            present=present,
        )

    def _keep_ratio_for(self, rollout_index: int) -> float:
        """The budget of a rollout: drawn from `keep_ratios` in proportion to `rollout_weights`, the same on every
        process and after resuming."""
        generator = torch.Generator().manual_seed(self.args.seed * 1_000_003 + rollout_index)
        weights = torch.tensor(self.args.rollout_weights, dtype=torch.float)
        return self.args.keep_ratios[int(torch.multinomial(weights, 1, generator=generator))]

    def minibatches(self, rollout: Rollout) -> list[dict]:
        """`num_ppo_epochs` shuffled passes over the rollout's trained episodes, `num_mini_batches` each."""
        trained = rollout.trained.nonzero()[:, 0]
        batches = []
        for _ in range(self.args.num_ppo_epochs):
            order = trained[torch.randperm(len(trained), device=trained.device)]
            batches += [
                {"rollout": rollout, "rows": rows} for rows in torch.tensor_split(order, self.args.num_mini_batches)
            ]
        return batches

    def _prepare_inputs(self, examples: list[dict]) -> dict:
        # The first step fed by a rollout's questions runs it; the steps after it take its next minibatches.
        if self.state.global_step % self.args.steps_per_rollout == 0 or not self._minibatches:
            batch = self._prepare_input(self.rollout_collator(examples))
            rollout = self.rollout(batch, self._keep_ratio_for(self.state.global_step // self.args.steps_per_rollout))
            self.record(rollout.metrics)
            self._minibatches = self.minibatches(rollout)
        return self._minibatches.pop(0)

    # ---- PPO loss -----------------------------------------------------------------------------------------------

    def stage_loss(self, model: TPRLForConditionalGeneration, inputs: dict) -> tuple[torch.Tensor, dict[str, float]]:
        loss, stats = self.ppo_loss(model.pruner.policy, inputs["rollout"], inputs["rows"])
        if self.relevance_coef > 0:
            relevance = self.relevance_target_loss(model)
            loss, stats["loss/relevance"] = loss + self.relevance_coef * relevance, relevance.item()
        return loss, stats

    def relevance_target_loss(self, model: TPRLForConditionalGeneration) -> torch.Tensor:
        """Imitation's relevance target (`relevance_loss`) on `relevance_batch_size` examples of `relevance_dataset`,
        along the policy's own most likely episode at the smallest budget (the one PPO trains most)."""
        # Drawn from the step: the same examples after resuming; each process its own.
        seed = self.args.seed + 1_000_003 * self.state.global_step + self.args.process_index
        examples = torch.randint(
            self.relevance_dataset.num_examples,
            (self.relevance_batch_size,),
            generator=torch.Generator().manual_seed(seed),
        )
        batch = {
            k: v.to(self.args.device) for k, v in self.relevance_dataset.relevance_batch(examples.tolist()).items()
        }
        budget = model.num_kept_tokens(keep_ratio=min(self.args.keep_ratios))
        if "present" in batch:  # an anyres base: each image its keep ratio of its own tokens
            budget = model.visual_budgets(batch["present"].sum(1), keep_ratio=min(self.args.keep_ratios))
        episode = model.pruner.policy.episode(frozen_episode_inputs(model, batch), budget)
        return relevance_loss(episode.keep_logits, batch["relevant"])

    def ppo_loss(
        self, policy: TPRLPolicy, rollout: Rollout, rows: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Clipped PPO loss of the episodes `rows` of `rollout`, averaged over the steps, and its statistics."""
        args = self.args
        if len(rows) == 0:  # no episode here (but maybe on another process): a zero loss that reaches every weight
            return sum(parameter.sum() for parameter in policy.parameters()) * 0.0, {}
        questions, episode_question = rollout.episode_question[rows].unique(return_inverse=True)
        present = None if rollout.present is None else rollout.present[questions]
        inputs = policy.embed_inputs(
            rollout.latents[questions], rollout.question_embeds[questions], rollout.question_mask[questions], present
        )
        # These episodes' picks, right-padded to the most any of them keeps (a rollout's largest image may keep more).
        widths = [int((step_picks[rows] >= 0).sum(1).max()) for step_picks in rollout.picks]
        picks = [step_picks[rows, :width] for step_picks, width in zip(rollout.picks, widths)]
        episode = policy.episode(inputs, episode_budgets(picks), actions=picks, episode_question=episode_question)
        num_steps = len(picks)
        loss, stats = 0.0, dict.fromkeys(PPO_STATS, 0.0)
        for step in range(num_steps):
            log_ratio = episode.log_probs[step] - rollout.log_probs[step][rows, : widths[step]]
            ratio = log_ratio.exp()
            advantage = rollout.advantages[rows, step, None]
            clipped_ratio = ratio.clamp(1 - args.cliprange, 1 + args.cliprange)
            policy_loss = pick_mean(torch.max(-advantage * ratio, -advantage * clipped_ratio), picks[step])
            value, old_value, target = episode.values[:, step], rollout.values[rows, step], rollout.returns[rows, step]
            clipped_value = old_value + (value - old_value).clamp(-args.cliprange_value, args.cliprange_value)
            value_losses = torch.stack([(value - target) ** 2, (clipped_value - target) ** 2])
            value_loss = 0.5 * value_losses.max(0).values.mean()
            entropy = pick_mean(episode.entropies[step], picks[step])
            loss = loss + (policy_loss + args.vf_coef * value_loss - args.entropy_coef * entropy) / num_steps
            for key, value in (
                ("loss/policy_avg", policy_loss),
                ("loss/value_avg", value_loss),
                ("policy/entropy_avg", entropy),
                ("policy/clipfrac_avg", pick_mean(((ratio - 1).abs() > args.cliprange).float(), picks[step])),
                ("policy/approxkl_avg", 0.5 * pick_mean(log_ratio**2, picks[step])),
                ("val/clipfrac_avg", (value_losses[1] > value_losses[0]).float().mean()),
            ):
                stats[key] += value.item() / num_steps
        return loss, stats


PPO_STATS = (
    "loss/policy_avg",
    "loss/value_avg",
    "policy/entropy_avg",
    "policy/clipfrac_avg",
    "policy/approxkl_avg",
    "val/clipfrac_avg",
)
