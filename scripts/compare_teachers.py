"""How good is each imitation teacher? Its final selection's accuracy on validation questions, and its cost.

    python scripts/compare_teachers.py [--base <llava-hf dir>] [--num_examples 512] [--kept 48,16]
    python scripts/compare_teachers.py --split test --num_digits 6 --num_examples 1000 --kept 16   # dense canvases

The teachers (`train/teacher.py`) know the answer, so they run on training data only; here they prune validation
questions (handwriting unseen in training; or the held-out test questions, to set a ceiling beside the pruner's
figures) to measure how much accuracy their selections keep, and their named-target coverage. FastV as a
pruning method, the layout oracle and the full model are printed beside them. The best teacher per second of
demonstration time is the one `train/configs/digit_world.yaml` uses.
"""

import argparse
import time

import torch
from transformers import AutoProcessor

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import EMBEDDED_BASE_PATH
from tprl_digit_world.evaluation import answer_accuracy, fixed_examples
from tprl_eval.oracle import oracle_indices
from tprl_train.data import VQACollator
from tprl_train.teacher import TEACHERS, teacher_demonstrations


@torch.no_grad()
def teacher_selection(model, processor, examples, num_kept: int, teacher: str, batch_size: int) -> torch.Tensor:
    collator, picks = VQACollator(processor), []
    for start in range(0, len(examples), batch_size):
        batch = collator(examples[start : start + batch_size])
        # The teachers' [CLS]-attention scores read this same vision pass.
        features = model.visual_tokens(batch["pixel_values"], keep_vision_layer_input=True)
        picks.append(teacher_demonstrations(model, batch, features, [num_kept], teacher)[0][-1].sort(dim=1).values)
    return torch.cat(picks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=EMBEDDED_BASE_PATH)
    parser.add_argument("--num_examples", type=int, default=512)
    parser.add_argument("--kept", default="48,16")
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--num_digits", type=int, default=None, help="Digits per canvas (6: dense); default 3-6.")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(args.base, policy_hidden_size=64).eval()
    processor = AutoProcessor.from_pretrained(args.base)
    seed = 1 if args.split == "validation" else 0  # the test questions of tprl-eval and the main job
    examples = fixed_examples(args.split, args.num_examples, seed=seed, num_digits=args.num_digits)

    def score(**selection) -> tuple[float, float]:
        result = answer_accuracy(model, processor, examples, batch_size=args.batch_size, **selection)
        return result["accuracy"], result["named_target_coverage"]

    full, _ = score(keep_ratio=1.0)
    print(f"{len(examples)} {args.split} questions; full model {100 * full:.1f}%")
    print("| selection | kept | accuracy | retention | named-target coverage | seconds per 100 examples |")
    print("|---|---|---|---|---|---|")
    for kept in (int(k) for k in args.kept.split(",")):
        accuracy, coverage = score(kept_visual_indices=oracle_indices(examples, kept, processor))
        print(f"| oracle | {kept} | {100 * accuracy:.1f} | {100 * accuracy / full:.1f}% | {100 * coverage:.1f} | - |")
        accuracy, coverage = score(pruning_method="fastv", num_kept_tokens=kept)
        print(
            f"| fastv (method) | {kept} | {100 * accuracy:.1f} | {100 * accuracy / full:.1f}% | {100 * coverage:.1f} | - |"
        )
        for teacher in args.teachers.split(","):
            start = time.perf_counter()
            indices = teacher_selection(model, processor, examples, kept, teacher, args.batch_size)
            seconds = time.perf_counter() - start
            accuracy, coverage = score(kept_visual_indices=indices)
            print(
                f"| teacher {teacher} | {kept} | {100 * accuracy:.1f} | {100 * accuracy / full:.1f}% | "
                f"{100 * coverage:.1f} | {100 * seconds / len(examples):.1f} |"
            )


if __name__ == "__main__":
    main()
