"""Configuration of the PPO stage: `TrainingArguments` plus TRL's PPO field names plus TPRL's reward and budget."""

from dataclasses import dataclass, field

from transformers import TrainingArguments

from modeling_tprl.configuration_tprl import check_keep_ratio


@dataclass
class TPRLPPOConfig(TrainingArguments):
    r"""
    Configuration class for [`TPRLPPOTrainer`]. The PPO fields keep the names of TRL's former `PPOConfig`.

    One PPO *update* (a Trainer step, counted by `max_steps`, `save_steps` and `logging_steps`) is: a rollout of
    `per_device_train_batch_size` questions per process, `num_episodes_per_question` episodes each, then
    `num_ppo_epochs` passes over it in `num_mini_batches` minibatches (one optimiser step each).

    Parameters:
        num_ppo_epochs (`int`, *optional*, defaults to `4`):
            Passes over each rollout.
        num_mini_batches (`int`, *optional*, defaults to `2`):
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
            GAE lambda.
        whiten_rewards (`bool`, *optional*, defaults to `False`):
            Whiten the rewards of each rollout before GAE (advantages are always whitened).
        advantage_std_floor (`float`, *optional*, defaults to `0.0`):
            Advantages are divided by max(their std, this floor): a rollout whose rewards are all near zero (a budget
            the base answers at with any selection) then gives small advantages instead of whitened noise.
        num_episodes_per_question (`int`, *optional*, defaults to `1`):
            Episodes sampled per question (as TRL's RLOO / GRPO `num_generations`). At 1, advantages come from GAE
            with the value head; above 1, each rollout runs `per_device_train_batch_size` questions this many times
            and an episode's advantage is its return minus the mean return of the question's other episodes
            (RLOO's leave-one-out baseline; the value head is still trained on the returns). The PPO epochs then
            train only on the questions whose episodes end with different scores (DAPO's dynamic sampling): the
            others' advantages are zero but for the KL term.
        kl_coef (`float`, *optional*, defaults to `0.05`):
            Weight of the per-pick KL penalty to the imitation policy, subtracted from each step's reward.
        keep_ratios (`list[float]`, *optional*, defaults to `[1/3, 2/9, 1/9]`):
            Budgets trained: each rollout draws one, so a single pruner serves all of them.
        rollout_weights (`list[int]`, *optional*):
            Per keep ratio, its share of the rollouts, e.g. `[0, 0, 1]` for PPO at the last budget only (the others
            are then still demonstrated, imitated and evaluated); default equal shares.
        score (`str`, *optional*, defaults to `"log_likelihood"`):
            Task score of the frozen LLaVA on the kept tokens: `"log_likelihood"` of the answer or `"correct"`.
        score_weight (`float`, *optional*, defaults to `1.0`):
            alpha: weight of each step's change in score.
        compute_weight (`float`, *optional*, defaults to `0.1`):
            beta: weight of each step's share of visual tokens removed (the paper's compute term; with exact
            budgets it is the same for every selection, so it shifts returns without changing the optimum).
    """

    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout."})
    num_mini_batches: int = field(default=2, metadata={"help": "Minibatches per pass."})
    cliprange: float = field(default=0.2, metadata={"help": "Clip range of the policy ratio (per pick)."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Clip range of the value prediction."})
    vf_coef: float = field(default=0.5, metadata={"help": "Weight of the value loss."})
    entropy_coef: float = field(default=0.0, metadata={"help": "Weight of the entropy bonus (per pick)."})
    gamma: float = field(default=1.0, metadata={"help": "Discount over the pruning steps."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten rewards before GAE."})
    advantage_std_floor: float = field(
        default=0.0, metadata={"help": "Advantages are divided by max(std, floor); 0 whitens as TRL does."}
    )
    num_episodes_per_question: int = field(
        default=1, metadata={"help": "Episodes per question; above 1, a leave-one-out baseline replaces GAE."}
    )
    kl_coef: float = field(default=0.05, metadata={"help": "Per-pick KL penalty to the imitation policy."})
    keep_ratios: list[float] = field(
        default_factory=lambda: [1 / 3, 2 / 9, 1 / 9], metadata={"help": "Budgets; each rollout draws one."}
    )
    rollout_weights: list[int] | None = field(
        default=None, metadata={"help": "Per keep ratio, its share of the rollouts; default equal shares."}
    )
    score: str = field(default="log_likelihood", metadata={"help": "'log_likelihood' or 'correct'."})
    score_weight: float = field(default=1.0, metadata={"help": "alpha: weight of the change in task score."})
    compute_weight: float = field(default=0.1, metadata={"help": "beta: weight of the share of tokens removed."})
    # TrainingArguments defaults that suit PPO on a frozen backbone.
    learning_rate: float = field(default=3e-4, metadata={"help": "Policy learning rate."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Questions per rollout per process."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "The collator needs the raw columns."})
    save_safetensors: bool = True
    report_to: str | list[str] = field(default="none", metadata={"help": "Where to log (e.g. 'tensorboard')."})

    def __post_init__(self):
        super().__post_init__()
        for name in ("num_ppo_epochs", "num_mini_batches", "num_episodes_per_question"):
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
        weights = self.rollout_weights
        if weights is not None and (len(weights) != len(self.keep_ratios) or min(weights) < 0 or sum(weights) < 1):
            raise ValueError(
                f"rollout_weights {weights} must give a whole number >= 0 for each of the {len(self.keep_ratios)} "
                f"keep_ratios {self.keep_ratios}, and not all 0."
            )
        if self.score not in ("log_likelihood", "correct"):
            raise ValueError(f"score must be 'log_likelihood' or 'correct', got {self.score!r}.")
        episodes = self.per_device_train_batch_size * self.num_episodes_per_question
        if episodes < self.num_mini_batches:
            raise ValueError(
                f"per_device_train_batch_size x num_episodes_per_question ({episodes} episodes) must be at least "
                f"num_mini_batches ({self.num_mini_batches}): each minibatch needs an episode."
            )
