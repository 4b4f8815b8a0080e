"""`tprl-eval`: accuracy of pruning methods at given budgets on the digit world's held-out test split.

    tprl-eval --methods full,random,uniform,cls_attention,fastv,oracle --keep_ratios 0.333,0.222,0.111 --output_dir outputs/eval

Every method goes through the same insertion path, `TPRLForConditionalGeneration`: training-free methods are its
`pruning_method` values, the oracle imposes `kept_visual_indices`, and `full` keeps every token.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoProcessor, HfArgumentParser

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import EMBEDDED_BASE_PATH
from tprl_digit_world.evaluation import answer_accuracy, answer_prior, fixed_examples

from .oracle import oracle_indices


METHODS = ("full", "tprl", "random", "uniform", "cls_attention", "fastv", "oracle")


@dataclass
class EvalArguments:
    model: str = field(
        default=EMBEDDED_BASE_PATH,
        metadata={
            "help": "A llava-hf base or a TPRL checkpoint (directory or Hub id); the embedded default if unset."
        },
    )
    methods: str = field(
        default="full,random,uniform,cls_attention,fastv,oracle",
        metadata={"help": f"Comma-separated, from {METHODS}."},
    )
    keep_ratios: str = field(default="0.3333,0.2222,0.1111", metadata={"help": "Comma-separated ratios in (0, 1]."})
    num_examples: int = field(default=2000, metadata={"help": "Test questions (held-out handwriting)."})
    batch_size: int = field(default=64)
    seed: int = field(default=0)
    output_dir: str = field(default="outputs/eval")

    def __post_init__(self):
        self.method_list = [m.strip() for m in self.methods.split(",") if m.strip()]
        unknown = [m for m in self.method_list if m not in METHODS]
        if unknown or not self.method_list:
            raise ValueError(f"Unknown method(s) {unknown}; choose from {METHODS}.")
        try:
            self.ratio_list = [float(r) for r in self.keep_ratios.split(",") if r.strip()]
        except ValueError as error:
            raise ValueError(f"keep_ratios must be comma-separated numbers, got {self.keep_ratios!r}.") from error
        bad = [r for r in self.ratio_list if not 0 < r <= 1]
        if bad or not self.ratio_list:
            raise ValueError(f"keep_ratios must lie in (0, 1], got {self.keep_ratios!r}.")
        if self.model == EMBEDDED_BASE_PATH and not Path(EMBEDDED_BASE_PATH, "config.json").exists():
            raise ValueError(
                "The embedded default base is not shipped in this version: pass --model <llava-hf directory>, e.g. "
                "one written by `tprl-train-base --output_dir <dir>`."
            )
        if self.num_examples < 1 or self.batch_size < 1:
            raise ValueError("num_examples and batch_size must be positive.")


def load_model(name_or_path: str, methods: list[str]) -> TPRLForConditionalGeneration:
    """A TPRL checkpoint as it is, or a llava-hf base wrapped with an (unused) fresh pruner."""
    if AutoConfig.from_pretrained(name_or_path).model_type == "tprl":
        return TPRLForConditionalGeneration.from_pretrained(name_or_path)
    if "tprl" in methods:
        raise ValueError(f"Method 'tprl' needs a trained TPRL checkpoint as --model; {name_or_path} is a base model.")
    return TPRLForConditionalGeneration.from_base(name_or_path, policy_hidden_size=64)


def evaluate_methods(model: TPRLForConditionalGeneration, processor, args: EvalArguments) -> dict:
    examples = fixed_examples("test", args.num_examples, seed=args.seed)
    prior = answer_prior(fixed_examples("train", 4000, seed=args.seed + 100), examples)
    full = answer_accuracy(model, processor, examples, args.batch_size, keep_ratio=1.0)
    rows = []
    runs = [(m, r) for m in args.method_list if m != "full" for r in args.ratio_list]
    if "full" in args.method_list:
        rows.append({"method": "full", "keep_ratio": 1.0, "kept_tokens": model.num_visual_tokens, **full})
    for method, ratio in tqdm(runs, desc="methods x budgets"):
        torch.manual_seed(args.seed)  # the random method's draws
        kept = model.num_kept_tokens(keep_ratio=ratio)
        if method == "oracle":
            indices = oracle_indices(examples, kept, processor.patch_size)
            result = answer_accuracy(model, processor, examples, args.batch_size, kept_visual_indices=indices)
        else:
            model.config.pruning_method = method
            result = answer_accuracy(model, processor, examples, args.batch_size, num_kept_tokens=kept)
        rows.append({"method": method, "keep_ratio": ratio, "kept_tokens": kept, **result})
    for row in rows:
        row["retention"] = round(row["accuracy"] / full["accuracy"], 4) if full["accuracy"] else None
    return {"model": args.model, "split": "test", "num_examples": len(examples), "answer_prior": prior, "rows": rows}


def markdown_table(results: dict) -> str:
    question_types = list(results["rows"][0]["per_question_type"])
    lines = [
        f"Digit world, held-out test split, {results['num_examples']} questions. "
        f"Answer prior (no image): {100 * results['answer_prior']['accuracy']:.1f}%.",
        "",
        "| method | kept tokens | keep ratio | accuracy | retention | " + " | ".join(question_types) + " |",
        "|---|---|---|---|---|" + "---|" * len(question_types),
    ]
    for row in results["rows"]:
        retention = "n/a" if row["retention"] is None else f"{100 * row['retention']:.1f}%"
        per_type = " | ".join(f"{100 * row['per_question_type'][t]:.1f}" for t in question_types)
        lines.append(
            f"| {row['method']} | {row['kept_tokens']} | {row['keep_ratio']:.3f} | {100 * row['accuracy']:.1f} | "
            f"{retention} | {per_type} |"
        )
    return "\n".join(lines) + "\n"


def run(args: EvalArguments) -> dict:
    """Evaluates, writes `results.json` and `results.md` to `args.output_dir`, prints the table."""
    model = load_model(args.model, args.method_list).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    results = evaluate_methods(model, processor, args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown_table(results)
    (output_dir / "results.md").write_text(table)
    print(table)
    return results


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(EvalArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    main()
