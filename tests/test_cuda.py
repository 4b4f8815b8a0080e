"""On a CUDA device (skipped without one; `scripts/gpu_check.sh` runs them): TPRL with pruning off gives exactly
`LlavaForConditionalGeneration`'s tokens, pruned batched generation gives one-at-a-time's, in fp32 and bf16, flex attention (whose inductor code does not
compile on our CPU machines) gives SDPA's tokens, and the digit-world evaluation of a GPU model gives the CPU's
figures."""

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


def test_digit_world_evaluation_of_a_gpu_model_matches_the_cpu(tprl_model, processor):
    from tprl_eval.digit_world_eval import evaluate_methods

    methods, ratios = ["full", "tprl", "cls_attention", "oracle"], [1 / 9]
    on_cpu = evaluate_methods(tprl_model, processor, methods, ratios, num_examples=64, batch_size=32)
    on_gpu = evaluate_methods(copy.deepcopy(tprl_model).to("cuda"), processor, methods, ratios, 64, batch_size=32)
    for cpu_row, gpu_row in zip(on_cpu["rows"], on_gpu["rows"]):  # a near-tie may flip between the devices
        for key in ("accuracy", "named_target_coverage"):
            assert abs(gpu_row[key] - cpu_row[key]) <= 0.05, (cpu_row["method"], key)


def test_flex_attention_gives_sdpa_s_tokens_on_cuda(tprl_model, batch):
    model = copy.deepcopy(tprl_model).to("cuda")
    inputs = {name: tensor.to("cuda") for name, tensor in batch.items()}
    runs = ({"keep_ratio": 1.0}, {"keep_ratio": 1 / 9})
    expected = [model.generate(**inputs, **GREEDY, **pruning) for pruning in runs]
    model.set_attn_implementation("flex_attention")
    assert model.base.config.text_config._attn_implementation == "flex_attention"
    for pruning, tokens in zip(runs, expected):
        assert_same_tokens(model.generate(**inputs, **GREEDY, **pruning), tokens)
