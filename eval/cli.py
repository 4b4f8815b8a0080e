"""`tprl-eval`: pruning methods at given budgets on the digit world and the seven LLaVA benchmarks.

    tprl-eval --methods full,random,uniform,cls_attention,fastv,oracle --keep_ratios 0.333,0.222,0.111 --output_dir outputs/eval
    tprl-eval --model <llava-hf or TPRL checkpoint> --benchmarks gqa,pope,mme --limit 500 --dataset_paths gqa=<local copy>

Every method goes through the same insertion path, `TPRLForConditionalGeneration`: training-free methods are its
`pruning_method` values, the oracle (digit world only) imposes `kept_visual_indices`, and `full` keeps every token.
Writes `results.json`, `results.md` (the digit world's detailed table, then all benchmarks in the paper's layout),
plots (accuracy against kept tokens and against prefill FLOPs, every benchmark) and a grid of the kept patches to
`output_dir`. `accelerate launch -m tprl_eval.cli ...` spreads the batches over processes, with the same numbers.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoProcessor, HfArgumentParser

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import EMBEDDED_BASE_PATH, require_embedded_base
from tprl_digit_world.batching import DigitWorldCollator
from tprl_digit_world.evaluation import answer_hits, answer_prior, fixed_examples, summarize_hits

from .answering import generate_answers
from .benchmarks import BENCHMARKS
from .flops import prefill_flops
from .metrics import load_metric
from .oracle import oracle_indices
from .plots import plot_accuracy, plot_accuracy_vs_flops, plot_benchmarks, plot_kept_patches
from .sharding import map_batches


METHODS = ("full", "tprl", "random", "uniform", "cls_attention", "fastv", "oracle")
BENCHMARK_NAMES = ("digit_world", *BENCHMARKS)


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
    benchmarks: str = field(default="digit_world", metadata={"help": f"Comma-separated, from {BENCHMARK_NAMES}."})
    dataset_paths: str = field(
        default="",
        metadata={"help": "Local copies of lmms-lab datasets, e.g. 'gqa=/data/GQA,pope=/data/POPE' (else the Hub)."},
    )
    num_examples: int = field(default=2000, metadata={"help": "Digit-world test questions (held-out handwriting)."})
    limit: int | None = field(default=None, metadata={"help": "At most this many examples per benchmark."})
    max_new_tokens: int = field(default=16, metadata={"help": "Answer length for the LLaVA benchmarks."})
    batch_size: int = field(default=64)
    seed: int = field(default=0, metadata={"help": "Draws the digit-world test questions and the random method."})
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
        require_embedded_base(self.model, "--model")
        if self.num_examples < 1 or self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("num_examples, limit and batch_size must be positive.")
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
        if "digit_world" not in self.benchmark_list:
            self.method_list = [m for m in self.method_list if m != "oracle"]  # the oracle needs digit layouts


def load_model(name_or_path: str, methods: list[str]) -> TPRLForConditionalGeneration:
    """A TPRL checkpoint as it is, or a llava-hf base wrapped with an (unused) fresh pruner."""
    if AutoConfig.from_pretrained(name_or_path).model_type == "tprl":
        return TPRLForConditionalGeneration.from_pretrained(name_or_path)
    if "tprl" in methods:
        raise ValueError(f"Method 'tprl' needs a trained TPRL checkpoint as --model; {name_or_path} is a base model.")
    return TPRLForConditionalGeneration.from_base(name_or_path, policy_hidden_size=64)


def digit_world_selection(model, processor, method: str, kept: int, examples: list[dict]) -> dict:
    """Forward arguments that make `model` keep `kept` visual tokens of `examples` with `method`."""
    if method == "oracle":
        return {"kept_visual_indices": oracle_indices(examples, kept, processor.patch_size)}
    model.config.pruning_method = "random" if method == "full" else method
    return {"num_kept_tokens": kept}


def evaluate_methods(model: TPRLForConditionalGeneration, processor, args: EvalArguments) -> dict:
    """The digit world: every method and budget on the held-out test split, per question type.

    Batches are spread over `accelerate launch` processes; the numbers do not depend on how many there are.
    """
    count = args.num_examples if args.limit is None else min(args.num_examples, args.limit)
    examples = fixed_examples("test", count, seed=args.seed)
    prior = answer_prior(fixed_examples("train", 4000, seed=args.seed + 100), examples)
    runs = [("full", 1.0, model.num_visual_tokens)] if "full" in args.method_list else []
    runs += [
        (m, r, model.num_kept_tokens(keep_ratio=r)) for m in args.method_list if m != "full" for r in args.ratio_list
    ]
    rows = []
    for method, ratio, kept in tqdm(runs, desc="methods x budgets", disable=not PartialState().is_main_process):

        def batch_hits(batch, index, method=method, kept=kept):
            selection = digit_world_selection(model, processor, method, kept, batch)
            return answer_hits(model, processor, batch, **selection)

        hits = map_batches(batch_hits, examples, args.batch_size, args.seed)
        rows.append({"method": method, "keep_ratio": ratio, "kept_tokens": kept, **summarize_hits(examples, hits)})
    full = next((row for row in rows if row["method"] == "full"), None)
    for row in rows:
        row["retention"] = round(row["accuracy"] / full["accuracy"], 4) if full and full["accuracy"] else None
    add_compute(rows, model, processor, examples)
    return {"model": args.model, "split": "test", "num_examples": len(examples), "answer_prior": prior, "rows": rows}


def add_compute(rows: list[dict], model: TPRLForConditionalGeneration, processor, examples: list[dict]) -> None:
    """Adds each row's token efficiency (kept ratio, analytic prefill FLOPs ratio) from the token_efficiency metric."""
    batch = DigitWorldCollator(processor)(examples[:64])
    text_tokens = round(float((batch["attention_mask"].sum(1) - model.num_visual_tokens).float().mean()))
    config, metric = model.base.config, load_metric("token_efficiency")
    full = prefill_flops(config, model.num_visual_tokens, text_tokens, method="full").total
    for row in rows:
        flops = prefill_flops(config, row["kept_tokens"], text_tokens, row["method"], tprl_config=model.config).total
        efficiency = metric.compute(
            kept_tokens=[row["kept_tokens"]],
            total_tokens=[model.num_visual_tokens],
            flops=[float(flops)],
            full_flops=[float(full)],
        )
        row.update(
            flops_ratio=round(efficiency["flops_ratio"], 4), flops_reduction=round(efficiency["flops_reduction"], 4)
        )


def kept_patch_selections(model, processor, args: EvalArguments, count: int = 4) -> tuple[list[dict], dict]:
    """A few test examples and, per method at the smallest budget, the visual tokens it keeps on each."""
    examples = fixed_examples("test", count, seed=args.seed)
    kept = model.num_kept_tokens(keep_ratio=min(args.ratio_list))
    selections = {}
    for method in args.method_list:
        if method == "full":
            continue
        torch.manual_seed(args.seed)
        selection = digit_world_selection(model, processor, method, kept, examples)
        with torch.no_grad():
            output = model(**DigitWorldCollator(processor)(examples), **selection)
        selections[method] = output.kept_visual_indices
    return examples, selections


def method_runs(model: TPRLForConditionalGeneration, args: EvalArguments) -> list[tuple[str, float, int]]:
    """(method, keep ratio, kept tokens) for every evaluated setting, `full` first."""
    runs = [("full", 1.0, model.num_visual_tokens)] if "full" in args.method_list else []
    return runs + [
        (method, ratio, model.num_kept_tokens(keep_ratio=ratio))
        for method in args.method_list
        if method not in ("full", "oracle")
        for ratio in args.ratio_list
    ]


def evaluate_benchmark(model: TPRLForConditionalGeneration, processor, name: str, rows: list[dict], args) -> dict:
    """One LLaVA benchmark: generated answers of every method and budget, scored by its metric."""
    benchmark = BENCHMARKS[name]
    results = []
    for method, ratio, kept in method_runs(model, args):
        model.config.pruning_method = "random" if method == "full" else method

        def batch_answers(batch, index, kept=kept):
            prompts, images = [benchmark.prompt(row) for row in batch], [row["image"] for row in batch]
            return generate_answers(
                model, processor, prompts, images, len(batch), args.max_new_tokens, num_kept_tokens=kept
            )

        answers = map_batches(batch_answers, rows, args.batch_size, args.seed, f"{name}: {method} at {kept}")
        scores = benchmark.evaluate(answers, rows)
        results.append({"method": method, "keep_ratio": ratio, "kept_tokens": kept, **scores})
    return {"score_name": benchmark.score_name, "num_examples": len(rows), "rows": results}


def markdown_table(results: dict) -> str:
    question_types = list(results["rows"][0]["per_question_type"])
    lines = [
        f"Digit world, held-out test split, {results['num_examples']} questions. "
        f"Answer prior (no image): {100 * results['answer_prior']['accuracy']:.1f}%.",
        "",
        "| method | kept tokens | keep ratio | prefill FLOPs | accuracy | retention | "
        + " | ".join(question_types)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(question_types),
    ]
    for row in results["rows"]:
        retention = "n/a" if row["retention"] is None else f"{100 * row['retention']:.1f}%"
        flops = f"{100 * row['flops_ratio']:.1f}%" if "flops_ratio" in row else "n/a"
        per_type = " | ".join(f"{100 * row['per_question_type'][t]:.1f}" for t in question_types)
        lines.append(
            f"| {row['method']} | {row['kept_tokens']} | {row['keep_ratio']:.3f} | {flops} | "
            f"{100 * row['accuracy']:.1f} | {retention} | {per_type} |"
        )
    return "\n".join(lines) + "\n"


def benchmark_scores(results: dict) -> dict[str, dict[tuple[str, int], float]]:
    """{benchmark: {(method, kept tokens): headline score}}, the digit world's accuracy in percent."""
    scores = {}
    if "rows" in results:
        scores["digit_world"] = {(r["method"], r["kept_tokens"]): 100 * r["accuracy"] for r in results["rows"]}
    for name, benchmark in results.get("benchmarks", {}).items():
        scores[name] = {(r["method"], r["kept_tokens"]): r["score"] for r in benchmark["rows"]}
    return scores


def paper_table(results: dict) -> str:
    """The paper's layout: a row per method and budget, a column per benchmark, and the average relative to full."""
    scores = benchmark_scores(results)
    names = list(scores)
    settings = list(dict.fromkeys(key for table in scores.values() for key in table if key[0] != "oracle"))
    lines = [
        "| method | kept tokens | " + " | ".join(names) + " | avg. relative to full |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    full = {name: next((v for (m, _), v in table.items() if m == "full"), None) for name, table in scores.items()}
    for method, kept in settings:
        cells, relative = [], []
        for name in names:
            value = scores[name].get((method, kept))
            cells.append("-" if value is None else f"{value:.1f}")
            if value is not None and full[name]:
                relative.append(value / full[name])
        average = f"{100 * sum(relative) / len(relative):.1f}%" if len(relative) == len(names) else "-"
        lines.append(f"| {method} | {kept} | " + " | ".join(cells) + f" | {average} |")
    return "\n".join(lines) + "\n"


def run(args: EvalArguments) -> dict:
    """Evaluates, writes `results.json`, `results.md` and plots to `args.output_dir`, prints the tables."""
    # Data first: a missing dataset or column fails before any model work.
    benchmark_rows = {
        name: BENCHMARKS[name].load(args.dataset_path_map.get(name), args.limit)
        for name in args.benchmark_list
        if name != "digit_world"
    }
    model = load_model(args.model, args.method_list).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    results = {"model": args.model}
    if "digit_world" in args.benchmark_list:
        results.update(evaluate_methods(model, processor, args))
    if benchmark_rows:
        results["benchmarks"] = {
            name: evaluate_benchmark(model, processor, name, rows, args) for name, rows in benchmark_rows.items()
        }
    if not PartialState().is_main_process:
        return results
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1))
    report = ""
    if "rows" in results:
        report = markdown_table(results) + "\n![accuracy](accuracy_vs_kept.png) ![FLOPs](accuracy_vs_flops.png)\n\n"
        plot_accuracy(results, output_dir / "accuracy_vs_kept.png")
        plot_accuracy_vs_flops(results, output_dir / "accuracy_vs_flops.png")
        examples, selections = kept_patch_selections(model, processor, args)
        plot_kept_patches(examples, selections, processor.patch_size, output_dir / "kept_patches.png")
        report += "![kept patches](kept_patches.png)\n\n"
    report += "All benchmarks:\n\n" + paper_table(results) + "\n![benchmarks](benchmarks_vs_kept.png)\n"
    plot_benchmarks(benchmark_scores(results), output_dir / "benchmarks_vs_kept.png")
    (output_dir / "results.md").write_text(report)
    print(report)
    return results


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(EvalArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    main()
