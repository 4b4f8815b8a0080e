"""Configuration of the PPO stage: `TrainingArguments` plus TRL's PPO / RLOO field names plus TPRL's reward and budget.

The defaults are the recipe measured on the digit world (README); YAML configs and the command line override them.
"""

from dataclasses import dataclass, field

from transformers import TrainingArguments

from modeling_tprl.configuration_tprl import check_keep_ratio


@dataclass
class TPRLPPOConfig(TrainingArguments):
    r"""
    Configuration class for [`TPRLPPOTrainer`]. The PPO fields keep the names of TRL's former `PPOConfig`, the
    episodes per question TRL's RLOO / GRPO name (`num_generations`).

    A rollout is `per_device_train_batch_size` questions per process, `num_generations` episodes each. The `Trainer`
    loop then takes `num_ppo_epochs x num_mini_batches` optimiser steps on it (a step is one minibatch) before the
    next rollout; `max_steps`, `logging_steps` and `save_steps` count those steps.

    Parameters:
        num_ppo_epochs (`int`, *optional*, defaults to `4`):
            Passes over each rollout.
        num_mini_batches (`int`, *optional*, defaults to `1`):
            Minibatches per pass.
        cliprange (`float`, *optional*, defaults to `0.2`):
            Clip range of the policy ratio (per pick).
        cliprange_value (`float`, *optional*, defaults to `0.2`):
            Clip range of the value prediction around its rollout value.
        vf_coef (`float`, *optional*, defaults to `0.5`):
            Weight of the value loss.
        entropy_coef (`float`, *optional*, defaults to `0.0`):
            Weight of the entropy bonus (entropy per pick).
        gamma (`float`, *optional*, defaults to `1.0`):
            Discount over the episode's pruning steps.
        lam (`float`, *optional*, defaults to `0.95`):
            GAE lambda (with `num_generations=1`).
        whiten_rewards (`bool`, *optional*, defaults to `False`):
            Whiten the rewards of each rollout before computing advantages (advantages are always whitened).
        advantage_std_floor (`float`, *optional*, defaults to `0.0`):
            Advantages are divided by max(their std, this floor): a rollout whose rewards are all near zero then gives
            small advantages instead of whitened noise.
        num_generations (`int`, *optional*, defaults to `8`):
            Episodes sampled per question. Above 1, an episode's advantage is its return minus the mean return of
            the question's other episodes (RLOO's leave-one-out baseline; the value head is still trained on the
            returns), and the PPO epochs train only on the questions whose episodes end with different scores
            (DAPO's dynamic sampling): the others' advantages are zero but for the KL term. At 1, advantages come
            from GAE with the value head.
        kl_coef (`float`, *optional*, defaults to `0.05`):
            Weight of the per-pick KL penalty to the imitation policy, subtracted from each step's reward.
        keep_ratios (`list[float]`, *optional*, defaults to `[1/3, 2/9, 1/9]`):
            Budgets the pruner is trained for (demonstrated, imitated, evaluated; PPO by `rollout_weights`).
        rollout_weights (`list[int]`, *optional*):
            Per keep ratio, its share of the rollouts. By default PPO runs at the smallest budget only (at the
            others nearly every sampled selection answers, so their rollouts carry almost no signal).
        score (`str`, *optional*, defaults to `"correct"`):
            Task score of the frozen LLaVA on the kept tokens: `"correct"` (is the answer's first token the argmax)
            or `"log_likelihood"` of the answer.
        score_weight (`float`, *optional*, defaults to `1.0`):
            alpha: weight of each step's change in score.
        compute_weight (`float`, *optional*, defaults to `0.1`):
            beta: weight of each step's share of visual tokens removed (the paper's compute term; with exact
            budgets it is the same for every selection, so it shifts returns without changing the optimum).
    """

    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout."})
    num_mini_batches: int = field(default=1, metadata={"help": "Minibatches per pass."})
    cliprange: float = field(default=0.2, metadata={"help": "Clip range of the policy ratio (per pick)."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Clip range of the value prediction."})
    vf_coef: float = field(default=0.5, metadata={"help": "Weight of the value loss."})
    entropy_coef: float = field(default=0.0, metadata={"help": "Weight of the entropy bonus (per pick)."})
    gamma: float = field(default=1.0, metadata={"help": "Discount over the pruning steps."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten rewards before computing advantages."})
    advantage_std_floor: float = field(
        default=0.0, metadata={"help": "Advantages are divided by max(std, floor); 0 whitens as TRL does."}
    )
    num_generations: int = field(
        default=8, metadata={"help": "Episodes per question; above 1, RLOO's leave-one-out baseline replaces GAE."}
    )
    kl_coef: float = field(default=0.05, metadata={"help": "Per-pick KL penalty to the imitation policy."})
    keep_ratios: list[float] = field(
        default_factory=lambda: [1 / 3, 2 / 9, 1 / 9], metadata={"help": "Budgets the pruner is trained for."}
    )
    rollout_weights: list[int] | None = field(
        default=None, metadata={"help": "Per keep ratio, its share of the rollouts; default the smallest only."}
    )
    score: str = field(default="correct", metadata={"help": "'correct' or 'log_likelihood'."})
    score_weight: float = field(default=1.0, metadata={"help": "alpha: weight of the change in task score."})
    compute_weight: float = field(default=0.1, metadata={"help": "beta: weight of the share of tokens removed."})
    # TrainingArguments defaults that suit PPO on a frozen backbone (the recipe: 160 rollouts of 4 steps each).
    max_steps: int = field(
        default=640, metadata={"help": "Optimiser steps (num_ppo_epochs x num_mini_batches each rollout)."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Policy learning rate."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Questions per rollout per process."})
    logging_steps: float = field(default=20, metadata={"help": "Steps between log records."})
    save_steps: float = field(default=200, metadata={"help": "Steps between checkpoints."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "The rollout needs the raw columns."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Where to log (e.g. 'tensorboard')."})

    def __post_init__(self):
        super().__post_init__()
        for name in ("num_ppo_epochs", "num_mini_batches", "num_generations", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("cliprange", "cliprange_value"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("vf_coef", "entropy_coef", "kl_coef", "compute_weight", "advantage_std_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}.")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"gamma and lam must be in [0, 1], got {self.gamma} and {self.lam}.")
        if not self.keep_ratios:
            raise ValueError("keep_ratios must hold at least one budget.")
        for ratio in self.keep_ratios:
            check_keep_ratio(ratio)
        if self.rollout_weights is None:
            self.rollout_weights = [int(ratio == min(self.keep_ratios)) for ratio in self.keep_ratios]
        weights = self.rollout_weights
        if len(weights) != len(self.keep_ratios) or min(weights) < 0 or sum(weights) < 1:
            raise ValueError(
                f"rollout_weights {weights} must give a whole number >= 0 for each of the {len(self.keep_ratios)} "
                f"keep_ratios {self.keep_ratios}, and not all 0."
            )
        if self.score not in ("log_likelihood", "correct"):
            raise ValueError(f"score must be 'log_likelihood' or 'correct', got {self.score!r}.")
        episodes = self.per_device_train_batch_size * self.num_generations
        if episodes < self.num_mini_batches:
            raise ValueError(
                f"per_device_train_batch_size x num_generations ({episodes} episodes) must be at least "
                f"num_mini_batches ({self.num_mini_batches}): each minibatch needs an episode."
            )

    @property
    def steps_per_rollout(self) -> int:
        """Optimiser steps taken on each rollout."""
        return self.num_ppo_epochs * self.num_mini_batches
