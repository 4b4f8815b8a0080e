"""The standard transformers calls, run on `LlavaForConditionalGeneration` and on TPRL: with pruning off the same
tokens, with pruning on the same shapes and lengths (or a clear error where a call cannot apply)."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import GREEDY
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    LlavaForConditionalGeneration,
    LogitsProcessor,
    LogitsProcessorList,
    pipeline,
)
from transformers.generation.streamers import BaseStreamer

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import DigitWorld, prompt_for


PRUNED = {"keep_ratio": 1 / 9}


@pytest.fixture(scope="module")
def llava(base_dir):
    return LlavaForConditionalGeneration.from_pretrained(base_dir).eval()


@pytest.fixture(scope="module")
def checkpoint(tprl_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tprl") / "checkpoint"
    tprl_model.save_pretrained(path)
    return path


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and torch.equal(a, b), f"{a.tolist()} != {b.tolist()}"


def test_text_only_prompt_answers_as_llava(tprl_model, llava, processor):
    inputs = processor(text=["what color is the 7", "is there a 3"], return_tensors="pt", padding=True)
    assert_same(tprl_model.generate(**inputs, **GREEDY), llava.generate(**inputs, **GREEDY))
    assert_same(tprl_model.generate(**inputs, **GREEDY, **PRUNED), llava.generate(**inputs, **GREEDY))


def test_several_images_in_one_prompt(tprl_model, llava, processor):
    world, rng = DigitWorld("test"), np.random.default_rng(3)
    images = [Image.fromarray(world.sample(rng)["image"]) for _ in range(2)]
    inputs = processor(images=images, text="USER: <image> <image> which digit is red ASSISTANT:", return_tensors="pt")
    assert_same(tprl_model.generate(**inputs, **GREEDY, keep_ratio=1.0), llava.generate(**inputs, **GREEDY))
    output = tprl_model(**inputs, **PRUNED)
    assert output.kept_visual_indices.shape == (2, 16)
    assert output.logits.shape[1] == inputs["input_ids"].shape[1] - 2 * (144 - 16)
    assert tprl_model.generate(**inputs, **GREEDY, **PRUNED).shape == (1, inputs["input_ids"].shape[1] + 4)


@pytest.mark.parametrize("sampling", [{"num_beams": 2}, {"do_sample": True, "top_k": 5}])
def test_num_return_sequences(tprl_model, llava, batch, sampling):
    options = {"max_new_tokens": 3, "min_new_tokens": 3, "num_return_sequences": 2, **sampling}
    torch.manual_seed(0)
    expected = llava.generate(**batch, **options)
    torch.manual_seed(0)
    assert_same(tprl_model.generate(**batch, **options, keep_ratio=1.0), expected)
    assert tprl_model.generate(**batch, **options, **PRUNED).shape == expected.shape


@pytest.mark.parametrize(
    "lengths", [{"max_new_tokens": 5, "min_new_tokens": 5}, {"max_length": 0, "min_new_tokens": 2}]
)
def test_length_options_count_the_prompt_as_llava_does(tprl_model, llava, batch, lengths):
    if "max_length" in lengths:  # three tokens past the (unpruned) prompt
        lengths = {**lengths, "max_length": batch["input_ids"].shape[1] + 3}
    expected = llava.generate(**batch, **lengths)
    assert_same(tprl_model.generate(**batch, **lengths, keep_ratio=1.0), expected)
    assert tprl_model.generate(**batch, **lengths, **PRUNED).shape == expected.shape


def test_generation_config_defaults_apply_and_load_with_the_checkpoint(tprl_model, checkpoint, batch):
    loaded = TPRLForConditionalGeneration.from_pretrained(checkpoint)
    assert loaded.generation_config.pad_token_id == tprl_model.generation_config.pad_token_id
    loaded.generation_config.max_new_tokens = 2
    loaded.generation_config.min_new_tokens = 2
    assert loaded.generate(**batch, **PRUNED).shape[1] == batch["input_ids"].shape[1] + 2


class RecordInputIds(LogitsProcessor):
    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append(input_ids.clone())
        return scores


def test_logits_processors_see_the_prompt_ids_as_with_llava(tprl_model, llava, batch):
    records = []
    for model, pruning in ((llava, {}), (tprl_model, PRUNED)):
        record = RecordInputIds()
        model.generate(**batch, **GREEDY, logits_processor=LogitsProcessorList([record]), **pruning)
        records.append(record.seen)
    assert [ids.shape for ids in records[0]] == [ids.shape for ids in records[1]]
    assert_same(records[1][0], batch["input_ids"])
    repeat = {"max_new_tokens": 4, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2}
    assert_same(tprl_model.generate(**batch, **repeat, keep_ratio=1.0), llava.generate(**batch, **repeat))


def test_return_dict_in_generate_and_transition_scores(tprl_model, llava, batch):
    options = {**GREEDY, "return_dict_in_generate": True, "output_scores": True}
    expected = llava.generate(**batch, **options)
    for pruning in ({"keep_ratio": 1.0}, PRUNED):
        output = tprl_model.generate(**batch, **options, **pruning)
        scores = tprl_model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)
        assert scores.shape == llava.compute_transition_scores(expected.sequences, expected.scores).shape
    output = tprl_model.generate(**batch, **options, keep_ratio=1.0)
    torch.testing.assert_close(torch.stack(output.scores), torch.stack(expected.scores))


def test_forward_with_return_dict_false_gives_tuples(tprl_model, llava, batch):
    expected = llava(**batch, return_dict=False)
    full = tprl_model(**batch, keep_ratio=1.0, return_dict=False)
    assert isinstance(full, tuple) and torch.equal(full[0], expected[0])
    pruned = tprl_model(**batch, **PRUNED, return_dict=False)
    assert isinstance(pruned, tuple) and pruned[0].shape[1] == batch["input_ids"].shape[1] - (144 - 16)


def test_attentions_under_eager_through_the_auto_classes_and_the_class(checkpoint, batch):
    for load in (AutoModelForImageTextToText.from_pretrained, TPRLForConditionalGeneration.from_pretrained):
        model = load(checkpoint, attn_implementation="eager")
        assert model.config._attn_implementation == model.base.config._attn_implementation == "eager"
        attentions = model(**batch, **PRUNED, output_attentions=True).attentions
        kept_length = batch["input_ids"].shape[1] - (144 - 16)
        assert len(attentions) == 2 and attentions[0].shape[-1] == kept_length
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == model.base.config._attn_implementation == "sdpa"


def test_static_cache(tprl_model, llava, batch):
    options = {**GREEDY, "cache_implementation": "static"}
    assert_same(tprl_model.generate(**batch, **options, keep_ratio=1.0), llava.generate(**batch, **options))
    pruned = tprl_model.generate(**batch, **options, **PRUNED)
    assert_same(pruned, tprl_model.generate(**batch, **GREEDY, **PRUNED))  # the same tokens as the dynamic cache


class Collect(BaseStreamer):
    def __init__(self):
        self.chunks = []

    def put(self, value):
        self.chunks.append(value.clone())

    def end(self):
        self.chunks.append(None)


def test_streaming_gives_the_prompt_then_each_new_token(tprl_model, processor, examples):
    inputs = processor(
        images=Image.fromarray(examples[0]["image"]),
        text=prompt_for(examples[0]["question"]),
        return_tensors="pt",
    )
    streamer = Collect()
    output = tprl_model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, streamer=streamer, **PRUNED)
    assert_same(streamer.chunks[0], inputs["input_ids"])
    assert torch.cat([chunk.view(1, -1) for chunk in streamer.chunks[1:-1]], dim=1).tolist() == [
        output[0, inputs["input_ids"].shape[1] :].tolist()
    ]
    assert streamer.chunks[-1] is None


def test_bfloat16(checkpoint, base_dir, batch):
    model = TPRLForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.bfloat16)
    llava = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.bfloat16)
    batch = {**batch, "pixel_values": batch["pixel_values"].to(torch.bfloat16)}
    assert model.pruner.policy.visual_in.weight.dtype == torch.bfloat16
    assert_same(model.generate(**batch, **GREEDY, keep_ratio=1.0), llava.generate(**batch, **GREEDY))
    assert model.generate(**batch, **GREEDY, **PRUNED).shape == (3, batch["input_ids"].shape[1] + 4)


def test_pipeline_with_chat_messages_in_batches(checkpoint, base_dir, examples):
    messages = [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": Image.fromarray(example["image"])},
                    {"type": "text", "text": example["question"]},
                ],
            }
        ]
        for example in examples
    ]
    options = {"max_new_tokens": 3, "return_full_text": False}
    pruned = pipeline("image-text-to-text", model=str(checkpoint), batch_size=2)
    alone = [pruned(text=message, **options)[0]["generated_text"] for message in messages]
    assert [out[0]["generated_text"] for out in pruned(text=messages, **options)] == alone
    full = pipeline("image-text-to-text", model=str(checkpoint), batch_size=2, generate_kwargs={"keep_ratio": 1.0})
    llava = pipeline("image-text-to-text", model=base_dir, batch_size=2)
    assert [out[0]["generated_text"] for out in full(text=messages, **options)] == [
        out[0]["generated_text"] for out in llava(text=messages, **options)
    ]


def test_generate_goes_through_forward(tprl_model, batch):
    calls = []
    handle = tprl_model.register_forward_hook(lambda module, args, kwargs_or_output: calls.append(1))
    try:
        tprl_model.generate(**batch, max_new_tokens=3, min_new_tokens=3, **PRUNED)
    finally:
        handle.remove()
    assert len(calls) == 3  # the pruned prefill, then one step per further token


def test_right_padding_with_pruning_warns_as_llava(tprl_model, processor, examples, caplog):
    prompts = [prompt_for(example["question"]) for example in examples]
    images = [Image.fromarray(example["image"]) for example in examples]
    inputs = processor(images=images, text=prompts, padding=True, padding_side="right", return_tensors="pt")
    with caplog.at_level("WARNING"):
        tprl_model.generate(**inputs, **GREEDY, **PRUNED)
    assert "right-padding was detected" in caplog.text


def test_config_values_are_validated_when_loaded(checkpoint, tmp_path):
    with pytest.raises(StrictDataclassError, match=r"keep_ratio must be a number in \(0, 1\]"):
        TPRLForConditionalGeneration.from_pretrained(checkpoint, keep_ratio=0)
    with pytest.raises(StrictDataclassError, match=r"keep_ratio must be a number in \(0, 1\]"):
        AutoConfig.from_pretrained(checkpoint, keep_ratio=5)
    assert TPRLForConditionalGeneration.from_pretrained(checkpoint, keep_ratio=0.5).config.keep_ratio == 0.5

    def edited(name: str, edit) -> str:
        path = tmp_path / name
        shutil.copytree(checkpoint, path)
        config = json.loads((path / "config.json").read_text())
        edit(config)
        (path / "config.json").write_text(json.dumps(config))
        return str(path)

    typo = edited("typo", lambda config: config.update(polcy_hidden_size=64))
    with pytest.raises(ValueError, match="Unknown TPRLConfig field 'polcy_hidden_size': did you mean"):
        AutoConfig.from_pretrained(typo)
    wider = edited("wider", lambda config: config.update(policy_hidden_size=128))
    with pytest.raises(ValueError, match="do not fit its config.json"):
        TPRLForConditionalGeneration.from_pretrained(wider)
    without_base = edited("without_base", lambda config: config.pop("base_config"))
    model = TPRLForConditionalGeneration.from_pretrained(without_base)  # the base's own config fills it in
    assert model.config.base_config is model.base.config and model.config.base_config.model_type == "llava"


def test_a_relative_base_path_is_stored_absolute(base_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(base_dir, tmp_path / "base")
    model = TPRLForConditionalGeneration.from_base("base", policy_hidden_size=32)
    assert not model.training  # as from_pretrained gives models
    model.save_pretrained(tmp_path / "checkpoint")
    monkeypatch.chdir(tmp_path / "checkpoint")  # elsewhere, "base" would be read as a Hub id
    assert TPRLForConditionalGeneration.from_pretrained(tmp_path / "checkpoint").config.base_model_name_or_path == str(
        tmp_path / "base"
    )


def test_saving_a_full_checkpoint_leaves_the_live_config(tprl_model, tmp_path):
    tprl_model.save_pretrained(tmp_path / "full", full_checkpoint=True)
    assert tprl_model.config.pruner_only
    assert json.loads((tmp_path / "full" / "config.json").read_text())["pruner_only"] is False


def test_gradient_checkpointing_reaches_the_base_and_resizing_is_refused(base_dir, batch):
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    model.gradient_checkpointing_enable()
    assert model.base.model.language_model.gradient_checkpointing
    model.train()
    features = model.visual_tokens(batch["pixel_values"]).detach().requires_grad_(True)
    pruned = model.prune_inputs(
        batch["input_ids"], None, batch["attention_mask"], image_features=features, num_kept=16
    )
    model.base(inputs_embeds=pruned.inputs_embeds, attention_mask=pruned.attention_mask).logits.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    with pytest.raises(NotImplementedError, match="TPRL does not resize the base.s token embeddings"):
        model.resize_token_embeddings(100)


def test_saving_with_a_base_not_on_this_machine_does_not_wait_on_the_network(base_dir, tmp_path, caplog):
    import time

    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    model.config.base_model_name_or_path = "someone/a-llava-never-downloaded"
    start = time.perf_counter()
    with caplog.at_level("WARNING"):
        model.save_pretrained(tmp_path)
    assert time.perf_counter() - start < 10
    assert "Saved without a processor: neither this checkpoint's nor the base's is on this machine" in caplog.text
    assert (tmp_path / "model.safetensors").exists()


def test_pipeline_takes_pruning_arguments_per_call(checkpoint, examples):
    from modeling_tprl import TPRLImageTextToTextPipeline

    pipe = pipeline("image-text-to-text", model=str(checkpoint), pipeline_class=TPRLImageTextToTextPipeline)
    kept = []
    handle = pipe.model.register_forward_hook(lambda module, args, output: kept.append(output.num_visual_tokens_kept))
    message = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.fromarray(examples[0]["image"])},
                {"type": "text", "text": examples[0]["question"]},
            ],
        }
    ]
    try:
        for keep_ratio, expected in ((1 / 9, 16), (1.0, 144), (None, 48)):  # None: the config's 1/3
            kept.clear()
            pipe(text=message, max_new_tokens=2, keep_ratio=keep_ratio)
            assert kept[0] == expected
        kept.clear()
        pipe(text=message, max_new_tokens=2, num_kept_tokens=20, pruning_method="cls_attention")
        assert kept[0] == 20
    finally:
        handle.remove()
