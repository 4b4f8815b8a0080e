"""What transformers' own suites (`ModelTesterMixin`, `GenerationTesterMixin`) check of a model class, as our tests:
the config's sub-configs, loading and saving, outputs, initialisation, the capability flags, continuing from a cache.
Pruning off, TPRL behaves as LLaVA; pruning on, wherever a call can apply. `scripts/run_transformers_suites.py` runs
the upstream suites themselves."""

import contextlib
import json

import pytest
import torch
from conftest import GREEDY, assert_same_tokens, unpad_row
from safetensors.torch import load_file
from transformers import (
    AttentionInterface,
    AttentionMaskInterface,
    CompileConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedModel,
    set_seed,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask
from transformers.modeling_outputs import BaseModelOutputWithPooling

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration


PRUNED = {"keep_ratio": 1 / 9}


def small_config(base: LlavaForConditionalGeneration, **kwargs) -> TPRLConfig:
    return TPRLConfig(base_config=base.config.to_dict(), policy_hidden_size=32, **kwargs)


def set_on_every_config(config, name: str, value) -> None:
    """As transformers' tests set an attribute: on the config and, recursively, on its sub-configs."""
    setattr(config, name, value)
    for key in config.sub_configs:
        if getattr(config, key) is not None:
            set_on_every_config(getattr(config, key), name, value)


def test_the_config_exposes_the_base_config_as_a_sub_config(tprl_model):
    config = tprl_model.config
    assert list(config.sub_configs) == ["base_config"]
    assert config.base_config is tprl_model.base.config  # one object: what changes on one is the other
    assert config.get_text_config() is tprl_model.base.config.text_config
    assert config.vision_config is tprl_model.base.config.vision_config
    assert config.image_token_id == tprl_model.base.config.image_token_id
    reloaded = TPRLConfig.from_dict(json.loads(config.to_json_string()))
    assert isinstance(reloaded.base_config, LlavaConfig)
    assert reloaded.base_config.to_dict() == config.base_config.to_dict()


def test_changes_to_a_config_stay_in_it_and_reach_its_base(random_base):
    one, other = small_config(random_base), small_config(random_base)
    pad_token_id = random_base.config.text_config.pad_token_id
    one.get_text_config().pad_token_id = None
    one.vision_feature_layer = [-1, -2]  # an attribute of the base's config, set as on a LlavaConfig
    assert other.get_text_config().pad_token_id == pad_token_id
    assert other.vision_feature_layer == random_base.config.vision_feature_layer
    assert "vision_feature_layer" not in one.to_dict()  # it lives in the base's config alone
    model = TPRLForConditionalGeneration(one)
    assert model.base.config.text_config.pad_token_id is None
    assert model.model.multi_modal_projector.linear_1.in_features == 2 * one.vision_config.hidden_size


def test_a_loaded_base_keeps_its_attention_implementation(base_dir, random_base, batch):
    base = LlavaForConditionalGeneration.from_pretrained(base_dir)
    implementations = [config._attn_implementation for config in (base.config, base.config.text_config)]
    model = TPRLForConditionalGeneration.from_base(base, policy_hidden_size=32)
    assert [config._attn_implementation for config in (base.config, base.config.text_config)] == implementations
    assert_same_tokens(model.generate(**batch, **GREEDY, keep_ratio=1.0), random_base.generate(**batch, **GREEDY))


@pytest.mark.parametrize("pruning", [{"keep_ratio": 1.0}, PRUNED])
def test_output_flags_set_in_the_config_reach_the_base(random_base, batch, pruning):
    config = small_config(random_base, attn_implementation="eager")
    set_on_every_config(config, "output_attentions", True)
    set_on_every_config(config, "output_hidden_states", True)
    model = TPRLForConditionalGeneration(config).eval()
    with torch.no_grad():
        outputs = model(**batch, **pruning)
    length = outputs.logits.shape[1]
    assert len(outputs.hidden_states) == config.text_config.num_hidden_layers + 1
    assert outputs.hidden_states[0].shape[1] == length
    assert outputs.attentions[0].shape[-2:] == (length, length)


def test_get_image_features_is_llava_s(tprl_model, random_base, batch):
    pixel_values = batch["pixel_values"]
    with torch.no_grad():
        outputs = tprl_model.get_image_features(pixel_values, output_hidden_states=True)
        expected = random_base.get_image_features(pixel_values=pixel_values, output_hidden_states=True)
        as_tuple = tprl_model.get_image_features(pixel_values, return_dict=False)
    assert isinstance(outputs, BaseModelOutputWithPooling) and isinstance(as_tuple, tuple)
    assert len(outputs.pooler_output) == len(pixel_values)
    assert all(torch.equal(a, b) for a, b in zip(outputs.pooler_output, expected.pooler_output))
    assert len(outputs.hidden_states) == len(expected.hidden_states) > 1


def test_embeddings_can_be_read_and_replaced(random_base):
    model = TPRLForConditionalGeneration(small_config(random_base))
    embeddings = torch.nn.Embedding(*model.get_input_embeddings().weight.shape)
    model.set_input_embeddings(embeddings)
    assert model.get_input_embeddings() is embeddings is model.base.get_input_embeddings()
    head = torch.nn.Linear(*reversed(embeddings.weight.shape), bias=False)
    model.set_output_embeddings(head)
    assert model.get_output_embeddings() is head is model.base.get_output_embeddings()


def test_the_base_model_prefix_names_the_base_and_base_model_is_its_body(tprl_model):
    assert getattr(tprl_model, tprl_model.base_model_prefix) is tprl_model.base
    assert tprl_model.base_model is tprl_model.model is tprl_model.base.model
    assert tprl_model.get_decoder() is tprl_model.base.get_decoder()


def test_a_llava_checkpoint_loads_into_tprl_with_a_fresh_pruner(base_dir, random_base, batch):
    model, info = TPRLForConditionalGeneration.from_pretrained(base_dir, output_loading_info=True)
    assert info["missing_keys"] and all(key.startswith("pruner.") for key in info["missing_keys"])
    assert not info["unexpected_keys"]
    assert all(torch.equal(a, b) for a, b in zip(model.base.state_dict().values(), random_base.state_dict().values()))
    assert_same_tokens(model.generate(**batch, **GREEDY, keep_ratio=1.0), random_base.generate(**batch, **GREEDY))


def test_tied_embeddings_are_declared_and_tied(random_base):
    config = small_config(random_base)
    config.get_text_config().tie_word_embeddings = True
    config.tie_word_embeddings = True  # the base's attribute, set through this config
    model = TPRLForConditionalGeneration(config)
    assert config.base_config.tie_word_embeddings
    assert model.base.lm_head.weight is model.get_input_embeddings().weight
    assert model.all_tied_weights_keys["base.lm_head.weight"] == "base.model.language_model.embed_tokens.weight"


@contextlib.contextmanager
def seeded_initialisation():
    """Each module initialised from the same seed, as transformers' test of `_init_weights` does."""
    initialise = PreTrainedModel._initialize_weights

    def seeded(*args, **kwargs):
        set_seed(0)
        initialise(*args, **kwargs)

    PreTrainedModel._initialize_weights = seeded
    try:
        yield
    finally:
        PreTrainedModel._initialize_weights = initialise


def test_from_pretrained_initialises_missing_weights_as_init_does(random_base):
    config = small_config(random_base)
    with seeded_initialisation():
        from_init = TPRLForConditionalGeneration(config.__class__.from_dict(config.to_dict()))
        from_nothing = TPRLForConditionalGeneration.from_pretrained(
            None, config=config.__class__.from_dict(config.to_dict()), state_dict={}
        )
    expected = from_init.state_dict()
    different = [name for name, value in from_nothing.state_dict().items() if not torch.equal(value, expected[name])]
    assert not different


def test_a_model_built_from_a_config_saves_a_full_checkpoint(random_base, batch, tmp_path):
    set_seed(0)
    model = TPRLForConditionalGeneration(small_config(random_base)).eval()
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert any(key.startswith("base.") for key in saved) and any(key.startswith("pruner.") for key in saved)
    assert json.loads((tmp_path / "config.json").read_text())["pruner_only"] is False
    loaded = TPRLForConditionalGeneration.from_pretrained(tmp_path)
    assert_same_tokens(loaded.generate(**batch, **GREEDY, **PRUNED), model.generate(**batch, **GREEDY, **PRUNED))


@pytest.mark.parametrize("pruning", [PRUNED, {"keep_ratio": "adaptive", "target_keep_ratio": 0.1}])
def test_generate_without_a_cache_keeps_the_first_step_s_selection(tprl_model, adaptive_model, batch, pruning):
    model = adaptive_model if pruning["keep_ratio"] == "adaptive" else tprl_model
    # A random LM may answer with the image placeholder, which a whole-sequence step would read as a 145th image token
    # (LLaVA's `use_cache=False` too): transformers' tests forbid it likewise.
    options = {**GREEDY, **pruning, "suppress_tokens": [model.config.image_token_id]}
    assert_same_tokens(model.generate(**batch, **options, use_cache=False), model.generate(**batch, **options))


@pytest.mark.parametrize("pruning", [{"keep_ratio": 1.0}, PRUNED])
def test_generation_continues_from_a_returned_cache_as_in_one_call(tprl_model, batch, pruning):
    options = {**pruning, "do_sample": False, "return_dict_in_generate": True, "output_scores": True}
    whole = tprl_model.generate(**batch, **options, max_new_tokens=4, min_new_tokens=4)
    first = tprl_model.generate(**batch, **options, max_new_tokens=3, min_new_tokens=3)
    mask = torch.nn.functional.pad(batch["attention_mask"], (0, 3), value=1)
    rest = tprl_model.generate(
        input_ids=first.sequences,
        attention_mask=mask,
        past_key_values=first.past_key_values,
        **options,
        max_new_tokens=1,
        min_new_tokens=1,
    )
    assert_same_tokens(rest.sequences, whole.sequences)
    torch.testing.assert_close(rest.scores[0], whole.scores[3])


def test_a_continuation_that_does_not_extend_the_pruned_cache_is_refused(tprl_model, batch):
    first = tprl_model.generate(**batch, **GREEDY, **PRUNED, return_dict_in_generate=True)
    with pytest.raises(ValueError, match="does not extend the pruned cache"):
        tprl_model.generate(
            input_ids=first.sequences,
            attention_mask=batch["attention_mask"],  # the prompt's alone: the generated tokens are missing
            past_key_values=first.past_key_values,
            max_new_tokens=1,
        )


def test_an_attention_function_registered_with_transformers_runs_the_base(base_dir, batch):
    calls = []

    def counted_sdpa(*args, **kwargs):
        calls.append(1)
        return sdpa_attention_forward(*args, **kwargs)

    AttentionInterface.register("counted_sdpa", counted_sdpa)
    AttentionMaskInterface.register("counted_sdpa", sdpa_mask)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32).eval()
    runs = ({"keep_ratio": 1.0}, PRUNED)
    expected = [model.generate(**batch, **GREEDY, **pruning) for pruning in runs]
    model.set_attn_implementation("counted_sdpa")
    assert model.base.config.text_config._attn_implementation == "counted_sdpa"
    for pruning, tokens in zip(runs, expected):
        assert_same_tokens(model.generate(**batch, **GREEDY, **pruning), tokens)
    assert calls


@pytest.mark.slow
def test_compiled_decoding_with_a_static_cache_gives_the_same_tokens(tprl_model, batch):
    compiled = CompileConfig(fullgraph=True)
    compiled._compile_all_devices = True  # compile on the CPU too
    for pruning in ({"keep_ratio": 1.0}, PRUNED):
        expected = tprl_model.generate(**batch, **GREEDY, **pruning)
        tokens = tprl_model.generate(
            **batch, **GREEDY, **pruning, cache_implementation="static", compile_config=compiled
        )
        assert_same_tokens(tokens, expected)


@pytest.mark.parametrize("pruning", [{"keep_ratio": 1.0}, PRUNED])
def test_a_language_modelling_loss_trains_the_base_through_labels(base_dir, batch, pruning):
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32).train()
    loss = model(**batch, labels=batch["input_ids"], **pruning).loss
    loss.backward()
    assert torch.isfinite(loss) and model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_a_custom_4d_mask_reaches_the_base_when_nothing_is_pruned(tprl_model, random_base, batch):
    inputs = unpad_row(batch, 0)
    length = inputs["input_ids"].shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
    with torch.no_grad():
        expected = random_base(**{**inputs, "attention_mask": causal}).logits
        logits = tprl_model(**{**inputs, "attention_mask": causal}, keep_ratio=1.0).logits
    assert torch.equal(logits, expected)


def test_what_pruning_cannot_take_is_refused_clearly(tprl_model, batch):
    embeds = tprl_model.get_input_embeddings()(batch["input_ids"])
    with pytest.raises(ValueError, match="Pruning needs the prompt's input_ids and pixel_values"):
        tprl_model(inputs_embeds=embeds, pixel_values=batch["pixel_values"], **PRUNED)
    mask = batch["attention_mask"][:, None, None, :].expand(-1, 1, batch["input_ids"].shape[1], -1)
    with pytest.raises(ValueError, match="Pruning needs the 2-D attention mask"):
        tprl_model(**{**batch, "attention_mask": mask}, **PRUNED)


def test_beams_from_inputs_embeds_with_images_give_llava_s_tokens(tprl_model, random_base, batch):
    # Without placeholders to read in input_ids, each row's image repeats as the base repeats it.
    embeds = random_base.get_input_embeddings()(batch["input_ids"])
    inputs = {
        "inputs_embeds": embeds,
        "attention_mask": batch["attention_mask"],
        "pixel_values": batch["pixel_values"],
    }
    beams = {"num_beams": 2, "max_new_tokens": 3, "do_sample": False}
    expected = random_base.generate(**inputs, **beams)
    assert_same_tokens(tprl_model.generate(**inputs, **beams, keep_ratio=1.0), expected)
