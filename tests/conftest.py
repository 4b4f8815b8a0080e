import numpy as np
import pytest
import torch
from transformers import set_seed

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import DigitWorld, build_processor, build_tiny_llava
from tprl_digit_world.batching import DigitWorldCollator


GREEDY = {"max_new_tokens": 4, "do_sample": False}
BUDGETS = [4, 8, 16, 32]  # the adaptive budgets of `adaptive_model`


@pytest.fixture(scope="session")
def processor():
    return build_processor()


@pytest.fixture(scope="session")
def random_base(processor):
    """A tiny LLaVA with random weights (the real transformers classes, built from a config)."""
    set_seed(0)
    return build_tiny_llava(processor).eval()


@pytest.fixture(scope="session")
def base_dir(random_base, processor, tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    random_base.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tprl_model(base_dir):
    set_seed(1)
    return TPRLForConditionalGeneration.from_base(base_dir, keep_ratio=1 / 3, policy_hidden_size=64).eval()


@pytest.fixture(scope="session")
def examples():
    world = DigitWorld("test")
    return [world.sample(np.random.default_rng(i), question_type=t) for i, t in enumerate(["color", "digit", "count"])]


@pytest.fixture(scope="module")
def adaptive_model(base_dir, processor, examples):
    """A pruner with adaptive budgets (`BUDGETS`) and operating points, whose images choose different budgets."""
    torch.manual_seed(3)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32, adaptive_budgets=BUDGETS).eval()
    model.config.adaptive_operating_points = [[0.01, 0.2], [1.0, 0.1], [100.0, 0.03]]  # target 0.1: weight 1.0
    # A random policy's budget head hardly tells images apart: centred on these images' mean state and sharpened,
    # it makes them choose different budgets.
    head, states = model.pruner.policy.budget_head.mlp[-1], []
    handle = head.register_forward_hook(lambda module, args, output: states.append(args[0]))
    inputs = DigitWorldCollator(processor)(examples)
    with torch.no_grad():
        model(**inputs, keep_ratio="adaptive", target_keep_ratio=0.1)
        handle.remove()
        head.weight.mul_(500)
        head.bias.copy_(-head.weight @ states[0].mean(0))
    return model


@pytest.fixture()
def batch(processor, examples):
    """A left-padded batch whose prompts have different lengths."""
    inputs = DigitWorldCollator(processor)(examples)
    assert len(set(inputs["attention_mask"].sum(1).tolist())) > 1
    return inputs


def unpad_row(inputs: dict, row: int) -> dict:
    start = int(inputs["attention_mask"][row].nonzero().min())
    return {
        "input_ids": inputs["input_ids"][row : row + 1, start:],
        "attention_mask": inputs["attention_mask"][row : row + 1, start:],
        "pixel_values": inputs["pixel_values"][row : row + 1],
    }


def assert_same_tokens(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and torch.equal(a, b), f"{a.tolist()} != {b.tolist()}"


@pytest.fixture(scope="session")
def vqa_dataset():
    """24 digit-world training questions as an image / question / answer dataset."""
    import datasets
    from PIL import Image

    world, rng = DigitWorld("train"), np.random.default_rng(0)
    rows = [world.sample(rng) for _ in range(24)]
    return datasets.Dataset.from_list(
        [{"image": Image.fromarray(r["image"]), "question": r["question"], "answer": r["answer"]} for r in rows]
    )


@pytest.fixture()
def vqa_batch(processor, vqa_dataset):
    from tprl_train.data import VQACollator

    return VQACollator(processor)([vqa_dataset[i] for i in range(8)])


def command_error(main, argv: list[str], capsys) -> str:
    """Runs a `tprl-*` command's `main` on bad input: it exits with status 2 and its last line on stderr, returned,
    is its `error:` line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": error: " in last, last
    return last


def launch_two_cpu_processes(*arguments: str, timeout: int = 600):
    """Runs `accelerate launch` of two processes on this CPU-only machine and checks that both of them ran.

    `accelerate launch --cpu --num_processes 2` starts ONE process here (accelerate spreads CPU processes only through
    mpirun). `--multi_gpu` starts two with torchrun, and `ACCELERATE_USE_CPU` makes them a gloo group on the CPU. A
    `sitecustomize` put first on the path notes the rank of every Python process that starts.
    """
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as ranks:
        with open(os.path.join(ranks, "sitecustomize.py"), "w") as file:
            file.write(
                f"import os\nif 'RANK' in os.environ:\n    open(os.path.join({ranks!r}, os.environ['RANK']), 'w')\n"
            )
        command = [
            *[sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"],
            *["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *arguments],
        ]
        python_path = os.pathsep.join(filter(None, [ranks, os.environ.get("PYTHONPATH")]))
        environment = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
        assert result.returncode == 0, result.stderr[-3000:]
        assert {"0", "1"} <= set(os.listdir(ranks)), "accelerate did not start two processes"
    return result


@pytest.fixture(scope="module")
def qwen_processor():
    from qwen_fixtures import build_qwen_processor

    return build_qwen_processor()


@pytest.fixture(scope="module")
def digit_world_qwen_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL (random weights) with an image-only processor for the digit world's words, on disk: 96x96
    images give 12x12 visual tokens."""
    from qwen_fixtures import build_qwen_processor, tiny_qwen_config
    from transformers import Qwen2_5_VLForConditionalGeneration

    from tprl_digit_world.canvas import vocabulary

    processor = build_qwen_processor(vocabulary(), min_pixels=96 * 96, max_pixels=96 * 96)
    config = tiny_qwen_config()
    config.text_config.vocab_size = len(processor.tokenizer)
    set_seed(0)
    path = tmp_path_factory.mktemp("qwen_base")
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)
