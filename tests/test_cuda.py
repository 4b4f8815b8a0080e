"""On a CUDA device (skipped without one; `scripts/gpu_check.sh` runs them): TPRL with pruning off gives exactly
`LlavaForConditionalGeneration`'s tokens, and pruned batched generation gives one-at-a-time's, in fp32 and bf16."""

import copy

import pytest
import torch
from conftest import GREEDY, assert_same_tokens, unpad_row
from transformers import LlavaForConditionalGeneration

from modeling_tprl import TPRLForConditionalGeneration


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pruning_off_gives_llavas_tokens_on_cuda(base_dir, batch, dtype):
    llava = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=dtype).to("cuda").eval()
    tprl = TPRLForConditionalGeneration.from_base(base_dir, {"dtype": dtype}, policy_hidden_size=64).to("cuda").eval()
    inputs = {name: tensor.to("cuda") for name, tensor in batch.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    assert_same_tokens(tprl.generate(**inputs, **GREEDY, keep_ratio=1.0), llava.generate(**inputs, **GREEDY))


@pytest.mark.parametrize("method", ["tprl", "cls_attention", "fastv"])
def test_pruned_batch_answers_as_one_at_a_time_on_cuda(tprl_model, batch, method):
    model = copy.deepcopy(tprl_model).to("cuda")
    inputs = {name: tensor.to("cuda") for name, tensor in batch.items()}
    pruned = {"keep_ratio": 1 / 9, "pruning_method": method}
    together = model.generate(**inputs, **GREEDY, **pruned)
    width = inputs["input_ids"].shape[1]
    for row in range(len(together)):
        alone = model.generate(**unpad_row(inputs, row), **GREEDY, **pruned)
        assert_same_tokens(together[row : row + 1, width:], alone[:, -GREEDY["max_new_tokens"] :])
