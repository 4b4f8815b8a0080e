import numpy as np
import pytest
import torch
from transformers import set_seed

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import DigitWorld, build_processor
from tprl_digit_world.batching import DigitWorldCollator
from tprl_train.train_base import build_tiny_llava


GREEDY = {"max_new_tokens": 4, "do_sample": False}


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
