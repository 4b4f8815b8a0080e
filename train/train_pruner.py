"""`tprl-train`: the main job. Trains a TPRL pruner for a frozen LLaVA and evaluates it.

    tprl-train --config train/configs/digit_world.yaml [--any_field value ...]

Stages, each a `transformers.Trainer` run (but the demonstrations) in its folder under `output_dir`, its model
written to `<stage>/final` and its log to `<stage>/log_history.json`. A stage whose `final` exists is skipped (with
a log line); an interrupted stage resumes from its last checkpoint.
1. `autoencoder/`: the state autoencoder, self-supervised on the base's projected visual tokens;
2. `demonstrations/`: the teacher's episodes on training examples (`teacher.py`), its batches shared out over the
   processes and written as they are done (an interrupted stage resumes from them);
3. `imitation/`: the policy trained to imitate them;
4. `ppo/`: PPO from the imitation policy (`TPRLPPOTrainer`);
5. `budget/`, with adaptive budgets (`adaptive_budgets`, `compute_weight_range`): the policy's budget choice
   (`BudgetTrainer`); the mean keep ratio it chooses at each compute weight is then stored in `budget/final`'s config;
6. `eval/`: held-out accuracy of TPRL, imitation only and the training-free methods, report and plots.
"""

import copy
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from accelerate import PartialState
from transformers import AutoConfig, PreTrainedConfig, ProcessorMixin, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import TrlParser

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration
from modeling_tprl.processing_tprl import load_processor
from tprl_digit_world.builder import DigitWorldBuilder
from tprl_digit_world.canvas import SQUARE_CANVAS
from tprl_digit_world.processor import canvas_shapes_of
from tprl_eval.command_line import command
from tprl_eval.flops import num_image_tokens

from .autoencoder import StateAutoencoderTrainer
from .budget import BudgetDataset, BudgetTrainer, budget_table
from .data import ImageCollator, VQACollator, load_split
from .demonstrations import demonstrated_examples, make_demonstrations
from .dry_run import (
    DRY_RUN_BATCH,
    TEXT_TOKENS,
    StageMeter,
    build_dry_run_base,
    dry_run_image_size,
    full_base_config,
    projection_table,
    write_fixture,
    write_report,
)
from .imitation import BudgetBatchSampler, DemonstrationDataset, ImitationTrainer, encode_examples
from .model_config import TPRLModelConfig
from .operating_points import compute_weight_grid, measure_operating_points
from .ppo_config import TPRLPPOConfig
from .ppo_trainer import TPRLPPOTrainer, check_budgets
from .teacher import BUDGET_TEACHERS, TEACHERS, leave_one_in_chunk_size


logger = logging.getLogger("tprl-train")


@dataclass
class PrunerTrainingArguments:
    """The data and the stages before PPO (the model is set by `TPRLModelConfig`, PPO by `TPRLPPOConfig`)."""

    dataset: str = field(
        default="digit_world",
        metadata={"help": "'digit_world', or a `save_to_disk` directory / Hub dataset with image, question, answer."},
    )
    dataset_split: str = field(default="train")
    train_size: int = field(default=20000, metadata={"help": "Digit-world training questions generated."})
    min_digits: int = field(
        default=5,
        metadata={
            "help": "Fewest digits on a digit-world training canvas: crowded canvases are where the question decides "
            "what to keep, and where the pruner learns it (the test canvases hold 3-6, the dense ones 6)."
        },
    )
    max_digits: int = field(default=6, metadata={"help": "Most digits on a digit-world training canvas."})
    autoencoder_steps: int = field(
        default=1500,
        metadata={
            "help": "The autoencoder learns the tokens' fine detail last (on the digit world, which digit a patch "
            "shows): stopped early, its latents lose what the question asks about."
        },
    )
    autoencoder_learning_rate: float = field(default=1e-3)
    teacher: str = field(
        default="leave_one_in_or_cls_attention",
        metadata={"help": f"The imitation teacher, one of {tuple(TEACHERS)} (train/teacher.py)."},
    )
    num_demonstrations: int = field(
        default=3072, metadata={"help": "Training examples the teacher prunes, each at every keep ratio."}
    )
    imitation_weights: list[int] | None = field(
        default=None,
        metadata={
            "help": "Per keep ratio, its share of the imitation batches. Default: two thirds of them at the smallest "
            "keep ratio, the hardest to imitate, the rest shared equally (e.g. [1, 1, 4] for three)."
        },
    )
    imitation_steps: int = field(default=900)
    relevance_coef: float = field(
        default=10.0,
        metadata={
            "help": "Weight of the relevance target in imitation and PPO: the keep logits at every step learn the "
            "relevance_tokens tokens the teacher's leave-one-in scores most (needs a leave-one-in teacher); 0: none."
        },
    )
    relevance_tokens: int = field(
        default=4,
        metadata={
            "help": "Tokens of the relevance target per example at most (a digit's patches on the digit world)."
        },
    )
    relevance_threshold: float = field(
        default=0.5,
        metadata={
            "help": "A token of the relevance target must alone give the answer at least this probability: questions "
            "that no token answers alone (counts) get no target."
        },
    )
    imitation_learning_rate: float = field(default=1e-3)
    stage_batch_size: int = field(default=64, metadata={"help": "Batch size of the autoencoder, teacher, imitation."})
    compute_weight_range: list[float] | None = field(
        default=None,
        metadata={
            "help": "Adaptive budgets: the smallest and the largest compute weight (price of a share of kept tokens) "
            "at which the mean keep ratio is measured after the budget stage, the range of target_keep_ratio it "
            "serves; needs adaptive_budgets."
        },
    )
    budget_questions: int = field(default=4096, metadata={"help": "Training questions scored at every budget."})
    budget_steps: int = field(default=1500, metadata={"help": "Steps of the budget stage (batches of 256)."})
    budget_learning_rate: float = field(default=3e-3)
    eval_size: int = field(default=2000, metadata={"help": "Held-out test questions (digit world); 0 skips eval."})
    adaptive_eval_targets: list[float] = field(
        default_factory=lambda: [1 / 18, 1 / 12, 1 / 9, 1 / 6],
        metadata={
            "help": "Mean keep ratios the adaptive policy is evaluated at (target_keep_ratio), those within its "
            "operating points (8, 12, 16 and 24 of 144 tokens)."
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Run every stage a few steps on a random-weight base of the recipe's widths with 2 layers and a "
            "fixture dataset, in <output_dir>/dry_run; print each stage's time and memory and the projected real run."
        },
    )
    dry_run_gpu_tflops: float = field(
        default=300.0,
        metadata={"help": "Sustained bf16 TFLOP/s assumed for the dry run's GPU projection (an H100: ~300-400)."},
    )
    dry_run_num_processes: list[int] = field(
        default_factory=lambda: [1, 8],
        metadata={"help": "The dry run projects the real run on each of these process counts (GPUs)."},
    )

    def __post_init__(self):
        for name in ("train_size", "autoencoder_steps", "num_demonstrations", "imitation_steps", "stage_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.eval_size < 0:
            raise ValueError(f"eval_size must not be negative, got {self.eval_size}.")
        if not self.dry_run_num_processes or min(self.dry_run_num_processes) < 1:
            raise ValueError(f"dry_run_num_processes must list positive counts, got {self.dry_run_num_processes}.")
        if self.teacher not in TEACHERS:
            raise ValueError(f"Unknown teacher {self.teacher!r}; choose from {tuple(TEACHERS)}.")
        if self.relevance_coef < 0 or self.relevance_tokens < 1 or not 0 <= self.relevance_threshold <= 1:
            raise ValueError(
                "relevance_coef must not be negative, relevance_tokens must be positive and relevance_threshold a "
                f"probability, got {self.relevance_coef}, {self.relevance_tokens} and {self.relevance_threshold}."
            )
        if self.relevance_coef > 0 and self.teacher not in BUDGET_TEACHERS:
            raise ValueError(
                f"The relevance target comes from leave-one-in scores, which the teacher {self.teacher!r} does not "
                f"compute: use one of {tuple(BUDGET_TEACHERS)}, or set relevance_coef to 0."
            )
        weights = self.compute_weight_range
        if weights is not None and (len(weights) != 2 or min(weights) <= 0 or weights[0] > weights[1]):
            raise ValueError(f"compute_weight_range must be [smallest, largest] positive numbers, got {weights}.")
        if self.num_demonstrations > self.train_size and self.dataset == "digit_world":
            raise ValueError(f"num_demonstrations ({self.num_demonstrations}) exceeds train_size ({self.train_size}).")


def load_training_data(
    args: PrunerTrainingArguments, cache_dir: str, seed: int, processor: ProcessorMixin | None = None
) -> datasets.Dataset:
    """The training split: the digit world (its canvases of the shapes the base's `processor` reads), or a dataset
    with image, question and answer columns."""
    if args.dataset == "digit_world":
        shapes = canvas_shapes_of(processor) if processor is not None else SQUARE_CANVAS
        builder = DigitWorldBuilder(
            cache_dir=cache_dir,
            seed=seed,
            train_size=args.train_size,
            min_digits=args.min_digits,
            max_digits=args.max_digits,
            **({} if shapes == SQUARE_CANVAS else {"canvas_shapes": shapes}),  # the square world's cache stays
        )
        builder.download_and_prepare()
        return builder.as_dataset(args.dataset_split)
    dataset = load_split(args.dataset, args.dataset_split)
    missing = {"image", "question", "answer"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"The training dataset lacks column(s) {sorted(missing)}; it needs image, question, answer.")
    return dataset


def stage_arguments(
    ppo_config: TPRLPPOConfig, stage_dir: Path, max_steps: int, learning_rate: float, batch_size: int
) -> TrainingArguments:
    """A stage's `TrainingArguments`: its own steps, learning rate and batch, the run's logging and hardware."""
    shared = ("seed", "report_to", "save_steps", "save_total_limit", "disable_tqdm", "use_cpu", "bf16")
    return TrainingArguments(
        output_dir=str(stage_dir),
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        logging_steps=50,
        remove_unused_columns=False,
        **{name: getattr(ppo_config, name) for name in shared},
    )


def write_stage(path: Path, save: Callable[[Path], None]) -> None:
    """Writes a stage's output folder whole or not at all, so an interrupted run never leaves a half stage behind."""
    partial = path.with_name(f".{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    save(partial)
    partial.rename(path)


def stage_done(path: Path, name: str) -> bool:
    if path.exists():
        logger.warning(f"Skipping the {name} stage: {path} exists (delete it to run the stage again).")
        return True
    return False


def train_stage(trainer: Trainer, stage_dir: Path) -> None:
    """Trains (from the stage's last checkpoint, if an earlier run left one), then writes `final` and the log."""
    checkpoint = get_last_checkpoint(str(stage_dir)) if stage_dir.is_dir() else None
    if checkpoint is not None:
        logger.warning(f"Resuming the {stage_dir.name} stage from {checkpoint}.")
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.is_world_process_zero():
        write_stage(stage_dir / "final", lambda path: trainer.save_model(str(path)))
        (stage_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trainer.accelerator.wait_for_everyone()


def load_model(path: Path, model_args: TPRLModelConfig, device) -> TPRLForConditionalGeneration:
    """A stage's model; one made for another base than `base_model_name_or_path` (a reused output_dir) is refused."""
    config = TPRLConfig.from_pretrained(path)
    if not _same_model(config.base_model_name_or_path, model_args.base_model_name_or_path):
        raise ValueError(
            f"{path} was trained for the base {config.base_model_name_or_path!r}, not --base_model_name_or_path "
            f"{model_args.base_model_name_or_path!r}: give another output_dir, or delete that run's stage folders."
        )
    model = TPRLForConditionalGeneration.from_pretrained(path, config=config, dtype=model_args.dtype).to(device)
    return model.requires_grad_(False)  # each stage's trainer unfreezes the part it trains; the base stays frozen


def _same_model(a: str | None, b: str) -> bool:
    if a is not None and os.path.isdir(a) and os.path.isdir(b):
        return os.path.samefile(a, b)
    return a == b


def default_imitation_weights(keep_ratios: list[float]) -> list[int]:
    """Two thirds of the imitation batches at the smallest keep ratio, the rest shared equally by the others."""
    others = len(keep_ratios) - 1
    return [2 * others if ratio == min(keep_ratios) else 1 for ratio in keep_ratios] if others else [1]


def examples_through_base(script_args: PrunerTrainingArguments, ppo_config: TPRLPPOConfig) -> dict[str, int]:
    """Per stage, the training examples the frozen base reads (what the stage's time scales with)."""
    rollouts = -(-ppo_config.max_steps // ppo_config.steps_per_rollout)
    return {
        "autoencoder": script_args.autoencoder_steps * script_args.stage_batch_size,
        "demonstrations": script_args.num_demonstrations,
        "imitation": script_args.num_demonstrations,
        "ppo": rollouts * ppo_config.per_device_train_batch_size * ppo_config.num_generations,
        "budget": script_args.budget_questions if script_args.compute_weight_range else 0,
    }


def batch_ratios(
    real: tuple[PrunerTrainingArguments, TPRLPPOConfig],
    dry: tuple[PrunerTrainingArguments, TPRLPPOConfig],
    tokens: int,
    hidden_size: int,
) -> dict[str, float]:
    """Per stage, the real run's batch over the dry run's (the teacher's: the selections it scores at once)."""
    (real_args, real_ppo), (dry_args, dry_ppo) = real, dry
    stage = real_args.stage_batch_size / dry_args.stage_batch_size
    chunk = leave_one_in_chunk_size(tokens + TEXT_TOKENS, hidden_size)
    in_flight = [min(chunk, args.stage_batch_size * tokens) for args in (real_args, dry_args)]
    return {
        "autoencoder": stage,
        "demonstrations": in_flight[0] / in_flight[1],
        "imitation": stage,
        "ppo": real_ppo.per_device_train_batch_size / dry_ppo.per_device_train_batch_size,
        "budget": stage,
    }


def shrink_to_dry_run(
    script_args: PrunerTrainingArguments, model_args: TPRLModelConfig, ppo_config: TPRLPPOConfig
) -> tuple[PreTrainedConfig, PreTrainedConfig]:
    """Points the run at a 2-layer random-weight copy of its base and a fixture, for a few steps of every stage, in
    `<output_dir>/dry_run`; returns the real and the dry base configs."""
    config = full_base_config(model_args.base_model_name_or_path)
    output_dir = Path(ppo_config.output_dir) / "dry_run"
    shutil.rmtree(output_dir, ignore_errors=True)  # a dry run starts afresh
    output_dir.mkdir(parents=True)
    image_size = dry_run_image_size(config, model_args.visual_grid)
    proxy = build_dry_run_base(config, output_dir / "base", model_args.dtype, image_size)
    write_fixture(output_dir / "data", image_size)
    model_args.base_model_name_or_path = str(output_dir / "base")
    script_args.dataset, script_args.eval_size = str(output_dir / "data"), 0
    script_args.autoencoder_steps = script_args.imitation_steps = script_args.budget_steps = 2
    script_args.budget_questions = DRY_RUN_BATCH
    script_args.num_demonstrations = script_args.stage_batch_size = DRY_RUN_BATCH
    ppo_config.output_dir = str(output_dir)
    ppo_config.per_device_train_batch_size = 2
    ppo_config.max_steps = ppo_config.steps_per_rollout  # one rollout
    ppo_config.save_steps, ppo_config.logging_steps, ppo_config.report_to = 10**6, 1, []
    return config, proxy


def run(script_args: PrunerTrainingArguments, model_args: TPRLModelConfig, ppo_config: TPRLPPOConfig) -> dict:
    if script_args.dry_run:
        real_examples = examples_through_base(script_args, ppo_config)
        real = copy.deepcopy((script_args, ppo_config))
        config, proxy = shrink_to_dry_run(script_args, model_args, ppo_config)
        image_size = dry_run_image_size(config, model_args.visual_grid)
        tokens = num_image_tokens(config, image_size)
        ratios = batch_ratios(real, (script_args, ppo_config), tokens, config.text_config.hidden_size)
    meter = StageMeter(count_flops=script_args.dry_run)
    examples = examples_through_base(script_args, ppo_config)
    base_config = AutoConfig.from_pretrained(model_args.base_model_name_or_path)
    num_visual_tokens = TPRLConfig(
        base_config=base_config.to_dict(), visual_grid=model_args.visual_grid
    ).num_visual_tokens
    check_budgets(num_visual_tokens, ppo_config.keep_ratios, model_args.num_pruning_steps)
    if bool(model_args.adaptive_budgets) != bool(script_args.compute_weight_range):
        raise ValueError(
            "Adaptive budgets need both adaptive_budgets (the budgets the policy chooses among) and "
            "compute_weight_range (the compute weights it learns to choose for); set both or neither."
        )
    weights = script_args.imitation_weights or default_imitation_weights(ppo_config.keep_ratios)
    if len(weights) != len(ppo_config.keep_ratios) or min(weights) < 1:
        raise ValueError(
            f"imitation_weights {weights} must give a positive whole number for each of the "
            f"{len(ppo_config.keep_ratios)} keep_ratios {ppo_config.keep_ratios}."
        )
    set_seed(ppo_config.seed)
    output_dir = Path(ppo_config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    processor = load_processor(model_args.base_model_name_or_path)
    collator = VQACollator(processor)
    distributed = PartialState()
    with distributed.main_process_first():
        dataset = load_training_data(script_args, str(output_dir / "data_cache"), ppo_config.seed, processor)
    device, batch_size = ppo_config.device, script_args.stage_batch_size

    stage_dir = output_dir / "autoencoder"
    if not stage_done(stage_dir / "final", "autoencoder"):
        with meter.stage("autoencoder", examples["autoencoder"]):
            model = TPRLForConditionalGeneration.from_base(
                model_args.base_model_name_or_path,
                base_model_kwargs={"dtype": model_args.dtype},
                **model_args.tprl_config_kwargs(),
            ).to(device)
            args = stage_arguments(
                ppo_config, stage_dir, script_args.autoencoder_steps, script_args.autoencoder_learning_rate, batch_size
            )
            trainer = StateAutoencoderTrainer(
                model, args, train_dataset=dataset, data_collator=ImageCollator(processor), processing_class=processor
            )
            train_stage(trainer, stage_dir)

    demonstrations_dir = output_dir / "demonstrations"
    if not stage_done(demonstrations_dir, "demonstrations"):  # every process demonstrates a share of the batches
        with meter.stage("demonstrations", examples["demonstrations"]):
            model = load_model(output_dir / "autoencoder" / "final", model_args, device)
            subset = dataset.select(range(min(script_args.num_demonstrations, len(dataset))))
            shards = output_dir / ".demonstrations.shards"  # what an interrupted stage resumes from
            demonstrations = make_demonstrations(
                model, subset, collator, ppo_config.keep_ratios, batch_size, script_args.teacher, shards
            )
            if distributed.is_main_process:
                write_stage(demonstrations_dir, lambda path: demonstrations.save_to_disk(str(path)))
                shutil.rmtree(shards)
    distributed.wait_for_everyone()

    stage_dir = output_dir / "imitation"
    if not stage_done(stage_dir / "final", "imitation"):
        with meter.stage("imitation", examples["imitation"]):
            model = load_model(output_dir / "autoencoder" / "final", model_args, device)
            demonstrations = datasets.load_from_disk(str(demonstrations_dir))
            steps = script_args.imitation_steps
            batches = BudgetBatchSampler(demonstrations["keep_ratio"], weights, batch_size, steps, ppo_config.seed)
            args = stage_arguments(ppo_config, stage_dir, steps, script_args.imitation_learning_rate, batch_size)
            trainer = ImitationTrainer(
                model,
                args,
                demonstration_dataset(model, demonstrations, collator, script_args),
                batches,
                relevance_coef=script_args.relevance_coef,
                processing_class=processor,
            )
            train_stage(trainer, stage_dir)

    stage_dir = output_dir / "ppo"
    if not stage_done(stage_dir / "final", "PPO"):
        with meter.stage("ppo", examples["ppo"]):
            model = load_model(output_dir / "imitation" / "final", model_args, device)
            ppo_config.output_dir = str(stage_dir)
            relevance_dataset = None
            if script_args.relevance_coef > 0:
                demonstrations = datasets.load_from_disk(str(demonstrations_dir))
                relevance_dataset = demonstration_dataset(model, demonstrations, collator, script_args)
            trainer = TPRLPPOTrainer(
                model=model,
                args=ppo_config,
                train_dataset=dataset,
                data_collator=collator,
                processing_class=processor,
                relevance_dataset=relevance_dataset,
                relevance_coef=script_args.relevance_coef,
                relevance_batch_size=batch_size,
            )
            train_stage(trainer, stage_dir)

    stage_dir = output_dir / "budget"
    if script_args.compute_weight_range:
        questions = dataset.shuffle(seed=ppo_config.seed)  # the budget stage's first, then the operating points'
        if not stage_done(stage_dir / "final", "budget"):
            with meter.stage("budget", examples["budget"]):
                model = load_model(output_dir / "ppo" / "final", model_args, device)
                scored = questions.select(range(min(script_args.budget_questions, len(questions))))
                table = budget_table(model, scored, collator, batch_size)
                args = stage_arguments(
                    ppo_config, stage_dir, script_args.budget_steps, script_args.budget_learning_rate, 256
                )
                trainer = BudgetTrainer(model, args, BudgetDataset(table), processing_class=processor)
                train_stage(trainer, stage_dir)
        add_operating_points(stage_dir / "final", model_args, script_args, questions, collator, device)
    distributed.wait_for_everyone()

    if script_args.dry_run and distributed.is_main_process:
        table, rows = projection_table(
            meter.records,
            real_examples,
            ratios,
            config,
            proxy,
            model_args.dtype,
            script_args.dry_run_gpu_tflops,
            image_size,
            script_args.dry_run_num_processes,
        )
        write_report(output_dir, table, rows)
        return {"dry_run": rows}
    results = {}
    if script_args.eval_size:  # every process evaluates a share of the batches; the main one writes the report
        from tprl_eval.training_report import evaluate_training_run  # evaluation imports the training outputs

        results = evaluate_training_run(
            output_dir, ppo_config.keep_ratios, script_args.eval_size, script_args.adaptive_eval_targets
        )
    return results


def demonstration_dataset(
    model: TPRLForConditionalGeneration,
    demonstrations: datasets.Dataset,
    collator,
    script_args: PrunerTrainingArguments,
) -> DemonstrationDataset:
    """The demonstrations as imitation examples, with the relevance target when `relevance_coef` is set."""
    inputs = encode_examples(model, demonstrated_examples(demonstrations), collator, script_args.stage_batch_size)
    relevance_tokens = script_args.relevance_tokens if script_args.relevance_coef > 0 else 0
    return DemonstrationDataset(demonstrations, inputs, relevance_tokens, script_args.relevance_threshold)


def add_operating_points(
    final: Path,
    model_args: TPRLModelConfig,
    script_args: PrunerTrainingArguments,
    dataset: datasets.Dataset,
    collator,
    device,
    num_questions: int = 1024,
) -> None:
    """Measures the adaptive policy's mean keep ratio over a grid of compute weights on held-back training questions
    (after the budget stage's) and stores it in `final`'s config (`adaptive_operating_points`), unless done. Every
    process measures a share of the questions; the main one writes."""
    state = PartialState()
    done = TPRLConfig.from_pretrained(final).adaptive_operating_points is not None
    state.wait_for_everyone()  # every process has read the config before the main one writes it
    if done:
        return
    model = load_model(final, model_args, device)
    start = min(script_args.budget_questions, len(dataset) - num_questions)
    questions = dataset.select(range(max(0, start), min(start + num_questions, len(dataset))))
    grid = compute_weight_grid(script_args.compute_weight_range)
    points = measure_operating_points(model, questions, collator, grid, script_args.stage_batch_size)
    if state.is_main_process:
        model.config.adaptive_operating_points = points
        model.config.save_pretrained(final)
    logger.info(f"Adaptive operating points (compute weight, mean keep ratio): {points}")


@command("tprl-train")
def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    parser = TrlParser((PrunerTrainingArguments, TPRLModelConfig, TPRLPPOConfig))
    script_args, model_args, ppo_config = parser.parse_args_and_config(args=argv)
    run(script_args, model_args, ppo_config)


if __name__ == "__main__":
    main()
