"""Local `evaluate` modules: the benchmarks' official scoring, loadable offline by path.

from tprl_eval.metrics import load_metric
load_metric("vqa_accuracy").compute(predictions=["two"], references=[["2"] * 10])
"""

from pathlib import Path

import evaluate


METRICS_DIR = Path(__file__).parent
METRIC_NAMES = ("vqa_accuracy", "exact_match", "pope", "mme", "mmbench", "scienceqa", "token_efficiency")


def load_metric(name: str, config_name: str | None = None) -> evaluate.EvaluationModule:
    """One of `METRIC_NAMES` (and its config, e.g. `vqa_accuracy`'s "textvqa"), loaded with `evaluate.load` from its
    folder (the Hub's scripts need a network)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; choose from {METRIC_NAMES}.")
    return evaluate.load(str(METRICS_DIR / name), config_name)
