"""The LLaVA benchmarks' evaluation: generated answers of every method and budget, scored by each benchmark's metric,
and the paper's table (a column per benchmark, the average relative to the full model)."""

from modeling_tprl import TPRLForConditionalGeneration

from .answering import generate_answers
from .benchmarks import BENCHMARKS
from .digit_world_eval import digit_world_splits
from .sharding import map_batches


def method_runs(
    model: TPRLForConditionalGeneration, methods: list[str], keep_ratios: list[float]
) -> list[tuple[str, float, int]]:
    """(method, keep ratio, kept tokens) for every evaluated setting, `full` first (the oracle needs digit layouts).
    The kept tokens are those of an image of the policy's grid (`config.visual_grid`): where image sizes vary (Qwen-VL),
    each image keeps the ratio of its own."""
    runs = [("full", 1.0, model.num_visual_tokens)] if "full" in methods else []
    return runs + [
        (method, ratio, model.num_kept_tokens(keep_ratio=ratio))
        for method in methods
        if method not in ("full", "oracle")
        for ratio in keep_ratios
    ]


def evaluate_benchmark(
    model: TPRLForConditionalGeneration,
    processor,
    name: str,
    rows: list[dict],
    methods: list[str],
    keep_ratios: list[float],
    batch_size: int,
    max_new_tokens: int | None = None,
    seed: int = 0,
    prompt_style: str = "llava",
) -> dict:
    """One LLaVA benchmark: generated answers of every method and budget, scored by its metric.

    The prompts and, unless `max_new_tokens` is given, the answer length are the `prompt_style` harness's.
    """
    benchmark = BENCHMARKS[name]
    max_new_tokens = max_new_tokens or benchmark.max_new_tokens(prompt_style)
    results = []
    for method, ratio, kept in method_runs(model, methods, keep_ratios):

        def batch_answers(batch, index, method=method, ratio=ratio):
            prompts, images = [benchmark.prompt(row, prompt_style) for row in batch], [row["image"] for row in batch]
            # The keep ratio of each image's own tokens (as many as `kept` where every image has the policy's grid).
            selection = {"keep_ratio": 1.0} if method == "full" else {"pruning_method": method, "keep_ratio": ratio}
            return generate_answers(model, processor, prompts, images, len(batch), max_new_tokens, **selection)

        answers = map_batches(batch_answers, rows, batch_size, seed, f"{name}: {method} at {kept}")
        scores = benchmark.evaluate(answers, rows)
        results.append({"method": method, "keep_ratio": ratio, "kept_tokens": kept, **scores})
    return {
        "score_name": benchmark.score_name,
        "num_examples": len(rows),
        "prompt_style": prompt_style,
        "max_new_tokens": max_new_tokens,
        "rows": results,
    }


def benchmark_scores(results: dict) -> dict[str, dict[tuple[str, int], float]]:
    """{benchmark: {(method, kept tokens): headline score}}, the digit world's accuracy (both splits) in percent."""
    scores = {
        name: {(r["method"], r["kept_tokens"]): 100 * r["accuracy"] for r in split["rows"]}
        for name, split in digit_world_splits(results).items()
    }
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
