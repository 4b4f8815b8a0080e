"""`tprl-train`: the main job. Trains a TPRL pruner for a frozen LLaVA and evaluates it.

    tprl-train --config train/configs/digit_world.yaml [--any_field value ...]

Stages, each written under `output_dir` and skipped (with a log line) when its output already exists:
1. `autoencoder/`: the state autoencoder, self-supervised on the base's projected visual tokens;
2. `demonstrations/`: the loss-based teacher's episodes on training examples (`teacher.py`);
3. `imitation/`: the policy trained to imitate them;
4. `ppo/`: PPO from the imitation policy (`TPRLPPOTrainer`), checkpoints and the final model in `ppo/final`;
5. `eval/`: held-out accuracy of TPRL, imitation only and the training-free methods, report and plots.
"""

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from accelerate import PartialState
from transformers import AutoConfig, AutoProcessor, set_seed
from trl import TrlParser

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration
from tprl_digit_world import EMBEDDED_BASE_PATH, require_embedded_base
from tprl_digit_world.builder import DigitWorldBuilder

from .autoencoder import train_state_autoencoder
from .data import VQACollator
from .demonstrations import demonstrated_examples, demonstration_batches, make_demonstrations
from .imitation import encode_examples, train_imitation
from .ppo_config import TPRLPPOConfig
from .ppo_trainer import TPRLPPOTrainer, check_budgets
from .teacher import TEACHERS


logger = logging.getLogger("tprl-train")


@dataclass
class PrunerTrainingArguments:
    """What to prune, on which data, and the stages before PPO (the PPO stage is configured by `TPRLPPOConfig`)."""

    base_model: str = field(
        default=EMBEDDED_BASE_PATH, metadata={"help": "llava-hf base (directory or Hub id); the embedded default."}
    )
    dataset: str = field(
        default="digit_world",
        metadata={"help": "'digit_world', or a `save_to_disk` directory / Hub dataset with image, question, answer."},
    )
    dataset_split: str = field(default="train")
    base_dtype: str = field(default="float32", metadata={"help": "dtype of the frozen base, e.g. 'bfloat16'."})
    train_size: int = field(default=20000, metadata={"help": "Digit-world training questions generated."})
    policy_hidden_size: int = field(default=64)
    policy_num_layers: int = field(default=2)
    policy_num_heads: int = field(default=4)
    policy_kernel_size: int = field(
        default=3, metadata={"help": "Patch-grid neighbourhood the policy reads each token with; 1 = the token alone."}
    )
    num_pruning_steps: int = field(default=3)
    autoencoder_latent_size: int | None = field(default=None, metadata={"help": "Default: LM hidden / 16."})
    autoencoder_steps: int = field(default=300)
    autoencoder_learning_rate: float = field(default=1e-3)
    teacher: str = field(
        default="cls_attention",
        metadata={
            "help": "The imitation teacher, one of train/teacher.py's TEACHERS: cls_attention, leave_one_out, "
            "cls_attention_then_leave_one_out, leave_one_in_or_cls_attention, gradient or answer_attention."
        },
    )
    num_demonstrations: int = field(
        default=3072, metadata={"help": "Training examples the teacher prunes, each at every keep ratio."}
    )
    imitation_weights: list[int] | None = field(
        default=None,
        metadata={
            "help": "Per keep ratio, its share of the imitation batches, e.g. [1, 1, 2] for half of them at the last; "
            "default equal shares. Every demonstrated example is demonstrated at every keep ratio."
        },
    )
    imitation_steps: int = field(default=600)
    imitation_learning_rate: float = field(default=1e-3)
    stage_batch_size: int = field(default=64, metadata={"help": "Batch size of the autoencoder, teacher, imitation."})
    eval_size: int = field(default=2000, metadata={"help": "Held-out test questions (digit world); 0 skips eval."})

    def __post_init__(self):
        for name in ("train_size", "autoencoder_steps", "num_demonstrations", "imitation_steps", "stage_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.eval_size < 0:
            raise ValueError(f"eval_size must not be negative, got {self.eval_size}.")
        if self.teacher not in TEACHERS:
            raise ValueError(f"Unknown teacher {self.teacher!r}; choose from {tuple(TEACHERS)}.")
        require_embedded_base(self.base_model, "--base_model")
        if self.num_demonstrations > self.train_size and self.dataset == "digit_world":
            raise ValueError(f"num_demonstrations ({self.num_demonstrations}) exceeds train_size ({self.train_size}).")


def load_training_data(args: PrunerTrainingArguments, cache_dir: str, seed: int) -> datasets.Dataset:
    if args.dataset == "digit_world":
        builder = DigitWorldBuilder(cache_dir=cache_dir, seed=seed, train_size=args.train_size)
        builder.download_and_prepare()
        return builder.as_dataset(args.dataset_split)
    if os.path.isdir(args.dataset):
        dataset = datasets.load_from_disk(args.dataset)
        dataset = dataset[args.dataset_split] if isinstance(dataset, datasets.DatasetDict) else dataset
    else:
        dataset = datasets.load_dataset(args.dataset, split=args.dataset_split)
    missing = {"image", "question", "answer"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"The training dataset lacks column(s) {sorted(missing)}; it needs image, question, answer.")
    return dataset


def _endless_pixels(dataset: datasets.Dataset, collator: VQACollator, batch_size: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    while True:
        rows = torch.randperm(len(dataset), generator=generator)[:batch_size].tolist()
        yield collator([dataset[i] for i in rows])["pixel_values"]


def _write_stage(path: Path, save) -> None:
    """Writes a stage's output folder whole or not at all, so an interrupted run never leaves a half stage behind."""
    partial = path.with_name(f".{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    save(partial)
    partial.rename(path)


def _stage_done(path: Path, name: str) -> bool:
    if path.exists():
        logger.warning(f"Skipping the {name} stage: {path} exists (delete it to run the stage again).")
        return True
    return False


def run(script_args: PrunerTrainingArguments, ppo_config: TPRLPPOConfig) -> dict:
    base_config = TPRLConfig(base_config=AutoConfig.from_pretrained(script_args.base_model).to_dict())
    check_budgets(base_config.num_visual_tokens, ppo_config.keep_ratios, script_args.num_pruning_steps)
    weights = script_args.imitation_weights
    if weights is not None and (len(weights) != len(ppo_config.keep_ratios) or min(weights) < 1):
        raise ValueError(
            f"imitation_weights {weights} must give a positive whole number for each of the "
            f"{len(ppo_config.keep_ratios)} keep_ratios {ppo_config.keep_ratios}."
        )
    set_seed(ppo_config.seed)
    output_dir = Path(ppo_config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    processor = AutoProcessor.from_pretrained(script_args.base_model)
    collator = VQACollator(processor)
    distributed = PartialState()  # under `accelerate launch`, the stages before PPO run on the main process only
    with distributed.main_process_first():
        dataset = load_training_data(script_args, str(output_dir / "data_cache"), ppo_config.seed)
    if distributed.is_main_process:
        prepare_policy(script_args, ppo_config, output_dir, processor, collator, dataset)
    distributed.wait_for_everyone()
    imitation_dir = output_dir / "imitation"
    final_dir = output_dir / "ppo" / "final"
    if not _stage_done(final_dir, "PPO"):
        model = load_model(imitation_dir, script_args, ppo_config)
        ppo_config.output_dir = str(output_dir / "ppo")
        trainer = TPRLPPOTrainer(
            model=model,
            args=ppo_config,
            train_dataset=dataset,
            data_collator=collator,
            processing_class=processor,
        )
        resume = ppo_config.resume_from_checkpoint
        trainer.train(resume_from_checkpoint=resume if resume else None)
        if distributed.is_main_process:
            _write_stage(final_dir, lambda path: trainer.save_model(str(path)))
            history = json.dumps(trainer.state.log_history, indent=1)
            (output_dir / "ppo" / "log_history.json").write_text(history)
    distributed.wait_for_everyone()

    results = {}
    if script_args.eval_size:  # every process evaluates a share of the batches; the main one writes the report
        from tprl_eval.training_report import evaluate_training_run  # evaluation imports the training outputs

        results = evaluate_training_run(output_dir, ppo_config.keep_ratios, script_args.eval_size)
    return results


def load_model(path: Path, script_args: PrunerTrainingArguments, ppo_config: TPRLPPOConfig):
    """A stage's checkpoint; one made for another base than `--base_model` (a reused output_dir) is refused."""
    config = TPRLConfig.from_pretrained(path)
    if not _same_model(config.base_model_name_or_path, script_args.base_model):
        raise ValueError(
            f"{path} was trained for the base {config.base_model_name_or_path!r}, not --base_model "
            f"{script_args.base_model!r}: give another output_dir, or delete that run's stage folders."
        )
    model = TPRLForConditionalGeneration.from_pretrained(path, config=config, dtype=script_args.base_dtype)
    return model.to(ppo_config.device)


def _same_model(a: str | None, b: str) -> bool:
    if a is not None and os.path.isdir(a) and os.path.isdir(b):
        return os.path.samefile(a, b)
    return a == b


def prepare_policy(script_args, ppo_config, output_dir: Path, processor, collator, dataset) -> None:
    """The stages before PPO: autoencoder, teacher demonstrations, imitation."""
    autoencoder_dir = output_dir / "autoencoder"
    if not _stage_done(autoencoder_dir, "autoencoder"):
        model = TPRLForConditionalGeneration.from_base(
            script_args.base_model,
            base_model_kwargs={"dtype": script_args.base_dtype},
            keep_ratio=min(ppo_config.keep_ratios),
            num_pruning_steps=script_args.num_pruning_steps,
            policy_hidden_size=script_args.policy_hidden_size,
            policy_num_layers=script_args.policy_num_layers,
            policy_num_heads=script_args.policy_num_heads,
            policy_kernel_size=script_args.policy_kernel_size,
            autoencoder_latent_size=script_args.autoencoder_latent_size,
        ).to(ppo_config.device)
        pixels = _endless_pixels(dataset, collator, script_args.stage_batch_size, ppo_config.seed)
        log = train_state_autoencoder(
            model, pixels, script_args.autoencoder_steps, script_args.autoencoder_learning_rate
        )
        _write_stage(autoencoder_dir, lambda path: _save_with_log(model, processor, log, path))

    demonstrations_dir = output_dir / "demonstrations"
    if not _stage_done(demonstrations_dir, "demonstrations"):
        model = load_model(autoencoder_dir, script_args, ppo_config)
        subset = dataset.select(range(min(script_args.num_demonstrations, len(dataset))))
        demonstrations = make_demonstrations(
            model,
            subset,
            collator,
            ppo_config.keep_ratios,
            script_args.stage_batch_size,
            script_args.teacher,
        )
        _write_stage(demonstrations_dir, lambda path: demonstrations.save_to_disk(str(path)))

    imitation_dir = output_dir / "imitation"
    if not _stage_done(imitation_dir, "imitation"):
        model = load_model(autoencoder_dir, script_args, ppo_config)
        model.requires_grad_(False)
        model.pruner.policy.requires_grad_(True)
        demonstrations = datasets.load_from_disk(str(demonstrations_dir))
        examples = demonstrated_examples(demonstrations)
        inputs = encode_examples(model, examples, collator, script_args.stage_batch_size)
        batches = demonstration_batches(
            demonstrations, script_args.stage_batch_size, ppo_config.seed, script_args.imitation_weights
        )
        log = train_imitation(model, inputs, batches, script_args.imitation_steps, script_args.imitation_learning_rate)
        _write_stage(imitation_dir, lambda path: _save_with_log(model, processor, log, path))


def _save_with_log(model: TPRLForConditionalGeneration, processor, log: list[dict], path: Path) -> None:
    model.save_pretrained(path, processor=processor)
    (path / "log.json").write_text(json.dumps(log, indent=1))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    parser = TrlParser((PrunerTrainingArguments, TPRLPPOConfig))
    script_args, ppo_config = parser.parse_args_and_config(args=argv)
    run(script_args, ppo_config)


if __name__ == "__main__":
    main()
