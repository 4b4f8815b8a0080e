"""How good is each imitation teacher? Its final selection's accuracy on validation questions, and its cost.

    python scripts/compare_teachers.py [--base <llava-hf dir>] [--num_examples 512] [--kept 48,16]

The teachers (`train/teacher.py`) know the answer, so they run on training data only; here they prune validation
questions (handwriting unseen in training) to measure how much accuracy their selections keep. FastV as a
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
        features = model.get_image_features(batch["pixel_values"])
        picks.append(teacher_demonstrations(model, batch, features, [num_kept], teacher)[0][-1].sort(dim=1).values)
    return torch.cat(picks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=EMBEDDED_BASE_PATH)
    parser.add_argument("--num_examples", type=int, default=512)
    parser.add_argument("--kept", default="48,16")
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(args.base, policy_hidden_size=64).eval()
    processor = AutoProcessor.from_pretrained(args.base)
    examples = fixed_examples("validation", args.num_examples, seed=1)
    full = answer_accuracy(model, processor, examples, keep_ratio=1.0)["accuracy"]
    print(f"{len(examples)} validation questions; full model {100 * full:.1f}%")
    print("| selection | kept | accuracy | retention | seconds per 100 examples |")
    print("|---|---|---|---|---|")
    for kept in (int(k) for k in args.kept.split(",")):
        references = {"oracle": oracle_indices(examples, kept, processor.patch_size)}
        for name, indices in references.items():
            accuracy = answer_accuracy(model, processor, examples, kept_visual_indices=indices)["accuracy"]
            print(f"| {name} | {kept} | {100 * accuracy:.1f} | {100 * accuracy / full:.1f}% | - |")
        accuracy = answer_accuracy(model, processor, examples, pruning_method="fastv", num_kept_tokens=kept)[
            "accuracy"
        ]
        print(f"| fastv (method) | {kept} | {100 * accuracy:.1f} | {100 * accuracy / full:.1f}% | - |")
        for teacher in args.teachers.split(","):
            start = time.perf_counter()
            indices = teacher_selection(model, processor, examples, kept, teacher, args.batch_size)
            seconds = time.perf_counter() - start
            accuracy = answer_accuracy(model, processor, examples, kept_visual_indices=indices)["accuracy"]
            print(
                f"| teacher {teacher} | {kept} | {100 * accuracy:.1f} | {100 * accuracy / full:.1f}% | "
                f"{100 * seconds / len(examples):.1f} |"
            )


if __name__ == "__main__":
    main()
