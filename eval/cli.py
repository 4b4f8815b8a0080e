"""`tprl-eval`: pruning methods at given budgets on the digit world (its usual and dense canvases) and the seven
LLaVA benchmarks.

    tprl-eval --methods full,random,uniform,cls_attention,fastv,oracle --keep_ratios 0.333,0.222,0.111 --output_dir outputs/eval
    tprl-eval --model <llava-hf or TPRL checkpoint> --benchmarks gqa,pope,mme --limit 500 --dataset_paths gqa=<local copy>
    tprl-eval --model <...> --benchmarks mmbench --prompt_style lmms_eval   # lmms-eval's prompts and answer lengths

Every method goes through the same insertion path, `TPRLForConditionalGeneration`: training-free methods are its
`pruning_method` values, the oracle (digit world only) imposes `kept_visual_indices`, and `full` keeps every token.
Writes `results.json` (the dense split under `digit_world_dense`), `results.md` (the digit world's detailed tables,
then all benchmarks in the paper's layout), plots (accuracy against kept tokens and against prefill FLOPs,
named-target coverage, every benchmark) and grids of the kept patches to `output_dir`.
`accelerate launch -m tprl_eval.cli ...` spreads the batches over processes, with the same numbers.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from transformers import AutoConfig, HfArgumentParser

from modeling_tprl import ALL_PRUNING_METHODS, TPRLForConditionalGeneration
from modeling_tprl.processing_tprl import load_processor
from tprl_digit_world import EMBEDDED_BASE_PATH, require_embedded_base

from .benchmark_eval import benchmark_scores, evaluate_benchmark, paper_table
from .benchmarks import BENCHMARKS, PROMPT_STYLES
from .command_line import check_model_argument, command
from .digit_world_eval import (
    DIGIT_WORLD_SPLITS,
    add_digit_world_split,
    canvas_budget,
    digit_world_report,
    evaluate_methods,
)
from .plots import plot_benchmarks


METHODS = ("full", *ALL_PRUNING_METHODS, "oracle")
BENCHMARK_NAMES = (*DIGIT_WORLD_SPLITS, *BENCHMARKS)


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
    adaptive_targets: str = field(
        default="",
        metadata={
            "help": "Comma-separated mean keep ratios at which an adaptive TPRL checkpoint (trained with adaptive_budgets) "
            "chooses each question's budget (keep_ratio='adaptive'), evaluated on the digit world next to the methods."
        },
    )
    benchmarks: str = field(
        default="digit_world,digit_world_dense", metadata={"help": f"Comma-separated, from {BENCHMARK_NAMES}."}
    )
    dataset_paths: str = field(
        default="",
        metadata={"help": "Local copies of lmms-lab datasets, e.g. 'gqa=/data/GQA,pope=/data/POPE' (else the Hub)."},
    )
    num_examples: int = field(
        default=2000, metadata={"help": "Digit-world test questions per split (held-out handwriting)."}
    )
    limit: int | None = field(default=None, metadata={"help": "At most this many examples per benchmark."})
    prompt_style: str = field(
        default="llava",
        metadata={
            "help": "Prompts and answer lengths of the LLaVA benchmarks: 'llava' as LLaVA-1.5's evaluation scripts, "
            "'lmms_eval' as lmms-eval's task defaults.",
            "choices": PROMPT_STYLES,
        },
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Answer length for the LLaVA benchmarks; else each one's, per prompt_style."}
    )
    batch_size: int = field(default=64)
    seed: int = field(default=0, metadata={"help": "Draws the digit-world test questions and the random method."})
    output_dir: str = field(default="outputs/eval")

    def __post_init__(self):
        check_model_argument(self.model, "--model")
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
        try:
            self.target_list = [float(r) for r in self.adaptive_targets.split(",") if r.strip()]
        except ValueError as error:
            raise ValueError(
                f"adaptive_targets must be comma-separated numbers, got {self.adaptive_targets!r}."
            ) from error
        require_embedded_base(self.model, "--model")
        if self.num_examples < 1 or self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("num_examples, limit and batch_size must be positive.")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"Unknown prompt_style {self.prompt_style!r}; choose from {PROMPT_STYLES}.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}.")
        self.benchmark_list = [b.strip() for b in self.benchmarks.split(",") if b.strip()]
        unknown = [b for b in self.benchmark_list if b not in BENCHMARK_NAMES]
        if unknown or not self.benchmark_list:
            raise ValueError(f"Unknown benchmark(s) {unknown}; choose from {BENCHMARK_NAMES}.")
        pairs = [item.split("=", 1) for item in self.dataset_paths.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"dataset_paths must be 'name=path' pairs, got {self.dataset_paths!r}.")
        self.dataset_path_map = {name.strip(): path.strip() for name, path in pairs}
        stray = [name for name in self.dataset_path_map if name not in self.benchmark_list]
        if stray:
            raise ValueError(
                f"dataset_paths names {stray} are not among the evaluated benchmarks {self.benchmark_list}."
            )
        if not set(DIGIT_WORLD_SPLITS) & set(self.benchmark_list):
            self.method_list = [m for m in self.method_list if m != "oracle"]  # the oracle needs digit layouts


def load_model(name_or_path: str, methods: list[str], **model_kwargs) -> TPRLForConditionalGeneration:
    """A TPRL checkpoint as it is, or a llava-hf base wrapped with an (unused) fresh pruner; `model_kwargs` (e.g.
    `dtype`) reach `from_pretrained`."""
    if AutoConfig.from_pretrained(name_or_path).model_type == "tprl":
        return TPRLForConditionalGeneration.from_pretrained(name_or_path, **model_kwargs)
    if "tprl" in methods:
        training_free = [method for method in ALL_PRUNING_METHODS if method != "tprl"]
        raise ValueError(
            f"Method 'tprl' needs a trained TPRL checkpoint; {name_or_path} is a llava-hf base without a trained "
            f"pruner: give a TPRL checkpoint, or a training-free method ({training_free})."
        )
    return TPRLForConditionalGeneration.from_base(name_or_path, model_kwargs, policy_hidden_size=64)


def run(args: EvalArguments) -> dict:
    """Evaluates, writes `results.json`, `results.md` and plots to `args.output_dir`, prints the tables."""
    # Data first: a missing dataset or column fails before any model work.
    benchmark_rows = {
        name: BENCHMARKS[name].load(args.dataset_path_map.get(name), args.limit)
        for name in args.benchmark_list
        if name not in DIGIT_WORLD_SPLITS
    }
    model = load_model(args.model, args.method_list).eval()
    for target in args.target_list:  # a fixed-budget pruner or an unreachable target fails before any evaluation
        model.config.compute_weight_for(target)
    processor = load_processor(args.model)
    results = {"model": args.model}
    count = args.num_examples if args.limit is None else min(args.num_examples, args.limit)
    for name, num_digits in DIGIT_WORLD_SPLITS.items():
        if name in args.benchmark_list:
            split = evaluate_methods(
                model,
                processor,
                args.method_list,
                args.ratio_list,
                count,
                args.batch_size,
                args.seed,
                num_digits,
                args.target_list,
            )
            add_digit_world_split(results, name, split)
    if benchmark_rows:
        results["benchmarks"] = {
            name: evaluate_benchmark(
                model,
                processor,
                name,
                rows,
                args.method_list,
                args.ratio_list,
                args.batch_size,
                args.max_new_tokens,
                args.seed,
                args.prompt_style,
            )
            for name, rows in benchmark_rows.items()
        }
    if not PartialState().is_main_process:
        return results
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1))
    smallest = canvas_budget(model, processor, min(args.ratio_list))
    report = digit_world_report(results, model, processor, args.method_list, smallest, output_dir, args.seed)
    report += "All benchmarks:\n\n" + paper_table(results) + "\n![benchmarks](benchmarks_vs_kept.png)\n"
    plot_benchmarks(benchmark_scores(results), output_dir / "benchmarks_vs_kept.png")
    (output_dir / "results.md").write_text(report)
    print(report)
    return results


@command("tprl-eval")
def main(argv: list[str]) -> None:
    (args,) = HfArgumentParser(EvalArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    main()
