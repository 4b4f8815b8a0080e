"""The digit world as an lmms-eval task: the same held-out questions `tprl-eval` asks, for `--include_path`.

    python -m tprl_eval.lmms_eval_task --output_dir tasks/digit_world --num_examples 200
    lmms-eval --model tprl --model_args keep_ratio=0.222,pruning_method=cls_attention --tasks digit_world \
        --include_path tasks/digit_world --batch_size 8 --output_path outputs/lmms

The folder holds the questions (a parquet dataset, images included), the task's YAML and its `utils.py`. The answer
is the first generated token, as `tprl-eval` scores the digit world (its answers are one word).
"""

import argparse
from pathlib import Path

import datasets
from PIL import Image

from tprl_digit_world.evaluation import fixed_examples


TASK_YAML = """task: {task}
dataset_path: {data_dir}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 1
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
metadata:
  - version: 0.0
"""

TASK_UTILS = '''"""Written by tprl_eval.lmms_eval_task: the digit world's questions, one image each, scored by exact answer."""


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"accuracy": float(results[0].strip() == doc["answer"])}
'''


def write_digit_world_task(
    output_dir: str | Path, num_examples: int = 200, seed: int = 0, num_digits: int | None = None
) -> Path:
    """Writes the task folder for `num_examples` digit-world test questions (as `tprl-eval --num_examples` draws
    them with `seed`, 6 digits per canvas if `num_digits=6`) and returns it."""
    output_dir = Path(output_dir).resolve()
    rows = [
        {"image": Image.fromarray(e["image"]), "question": e["question"], "answer": e["answer"],
         "question_type": e["question_type"]}
        for e in fixed_examples("test", num_examples, seed=seed, num_digits=num_digits)
    ]  # fmt: skip
    data_dir = output_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(str(data_dir / "test.parquet"))
    task = "digit_world" if num_digits is None else f"digit_world_{num_digits}_digits"
    (output_dir / f"{task}.yaml").write_text(TASK_YAML.format(task=task, data_dir=data_dir))
    (output_dir / "utils.py").write_text(TASK_UTILS)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_digits", type=int, default=None, help="6 for the dense canvases; 3-6 by default")
    args = parser.parse_args(argv)
    print(write_digit_world_task(args.output_dir, args.num_examples, args.seed, args.num_digits))


if __name__ == "__main__":
    main()
