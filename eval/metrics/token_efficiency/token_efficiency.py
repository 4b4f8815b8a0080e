"""Token efficiency: visual tokens kept and prefill FLOPs relative to the unpruned model."""

import datasets
import evaluate


_DESCRIPTION = """
How much of the unpruned model's work a pruned model does, averaged over examples: visual tokens kept (count and
ratio) and prefill FLOPs (ratio and reduction). FLOPs come from `tprl_eval.flops` (analytic, FastV convention) or a
measurement; this module only aggregates them.
"""

_KWARGS_DESCRIPTION = """
Args:
    kept_tokens (`list[int]`): visual tokens the language model saw, per example.
    total_tokens (`list[int]`): visual tokens before pruning, per example.
    flops (`list[float]`): the pruned prefill's FLOPs, per example (pruner overhead included).
    full_flops (`list[float]`): the unpruned prefill's FLOPs, per example.
Returns:
    kept_tokens, keep_ratio, flops_ratio, flops_reduction (`float`s; ratios in [0, 1] or above for overhead).
Examples:
    >>> metric = evaluate.load("eval/metrics/token_efficiency")
    >>> metric.compute(kept_tokens=[64], total_tokens=[576], flops=[1.0], full_flops=[4.0])
    {'kept_tokens': 64.0, 'keep_ratio': 0.1111111111111111, 'flops_ratio': 0.25, 'flops_reduction': 0.75}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TokenEfficiency(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "kept_tokens": datasets.Value("int64"),
                    "total_tokens": datasets.Value("int64"),
                    "flops": datasets.Value("float64"),
                    "full_flops": datasets.Value("float64"),
                }
            ),
        )

    def _compute(self, kept_tokens, total_tokens, flops, full_flops):
        if any(kept > total for kept, total in zip(kept_tokens, total_tokens)) or min(full_flops) <= 0:
            raise ValueError("kept_tokens must not exceed total_tokens, and full_flops must be positive.")
        count = len(kept_tokens)
        flops_ratio = sum(f / full for f, full in zip(flops, full_flops)) / count
        return {
            "kept_tokens": sum(kept_tokens) / count,
            "keep_ratio": sum(k / t for k, t in zip(kept_tokens, total_tokens)) / count,
            "flops_ratio": flops_ratio,
            "flops_reduction": 1 - flops_ratio,
        }
