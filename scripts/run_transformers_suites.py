"""Runs transformers' own model and generation test suites against TPRL and compares the outcomes with the base's.

transformers checks every model class with two shared suites, `ModelTesterMixin` (`tests/test_modeling_common.py`)
and `GenerationTesterMixin` (`tests/generation/test_utils.py`), driven per family by a model tester that builds a tiny
config (LLaVA's: `LlavaVisionText2TextModelTester`). This script runs the family's upstream test class three times in
one pytest process: on the base class (`LlavaForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`), and
on `TPRLForConditionalGeneration` built
from a `TPRLConfig` around the same tiny base, with pruning off (`keep_ratio=1.0`) and on (half the visual tokens).
Only tests that pass on the base count: the upstream files may be newer or older than the installed transformers (a
helper they import that it lacks becomes a stand-in that raises, so the tests using it fail on the base too). The
pipeline suite is not run.

The upstream files are not part of this project: give a transformers checkout (its `tests/` folder is enough), e.g.

    git clone --depth 1 https://github.com/huggingface/transformers /tmp/transformers
    pip install -e ".[suites]"   # what the upstream test files import
    python scripts/run_transformers_suites.py --transformers /tmp/transformers

Tests that fail with pruning on by their nature (they compare against the unpruned sequence's length or logits, or
use a call the pruner cannot serve) are listed in `PRUNING_ON_BY_DESIGN` with the reason; every other failure is
printed as unexpected, and the script exits 1 when there is one.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import defaultdict


# Upstream's Qwen-VL testers give each image one visual token (14x14 pixels, patch 14, no merge): nothing to prune.
# All three suites (the base's too) run on 28x28 images, 2x2 tokens each, where the tester puts one.
QWEN_TESTER = """
class FamilyTester(UpstreamTester):
    def __init__(self, parent, **kwargs):
        super().__init__(parent, image_size=28, **kwargs)

    def prepare_config_and_inputs_for_common(self):
        config, inputs = super().prepare_config_and_inputs_for_common()
        image = self.num_image_tokens
        inputs["input_ids"][:, image + 1 : image + 4] = config.image_token_id
        inputs["mm_token_type_ids"][:, image + 1 : image + 4] = 1
        inputs["image_grid_thw"] = inputs["image_grid_thw"].new_tensor([[1, 2, 2]] * self.batch_size)
        return config, inputs


UpstreamTester = FamilyTester
"""

# Each family: the upstream module and classes, and the base class whose passes set the bar.
FAMILIES = {
    "llava": {
        "module": "tests.models.llava.test_modeling_llava",
        "test_class": "LlavaForConditionalGenerationModelTest",
        "tester_class": "LlavaVisionText2TextModelTester",
        "base_class": "LlavaForConditionalGeneration",
        "tester_code": "",
        "tprl_config": {},
    },
    "llava_next": {
        "module": "tests.models.llava_next.test_modeling_llava_next",
        "test_class": "LlavaNextForConditionalGenerationModelTest",
        "tester_class": "LlavaNextVisionText2TextModelTester",
        "base_class": "LlavaNextForConditionalGeneration",
        "tester_code": "",
        # A deterministic selection: the tester's masks attend only to each row's first tokens, image placeholders,
        # and an untrained policy's choice of them leaves rows (or the whole batch) empty at random, run to run.
        "tprl_config": {"pruning_method": "uniform"},
    },
    "llava_onevision": {
        "module": "tests.models.llava_onevision.test_modeling_llava_onevision",
        "test_class": "LlavaOnevisionForConditionalGenerationModelTest",
        "tester_class": "LlavaOnevisionVisionText2TextModelTester",
        "base_class": "LlavaOnevisionForConditionalGeneration",
        "tester_code": "",
        "tprl_config": {"pruning_method": "uniform"},
    },
    "qwen2_5_vl": {
        "module": "tests.models.qwen2_5_vl.test_modeling_qwen2_5_vl",
        "test_class": "Qwen2_5_VLModelTest",
        "tester_class": "Qwen2_5_VLVisionText2TextModelTester",
        "base_class": "Qwen2_5_VLForConditionalGeneration",
        "tester_code": QWEN_TESTER,
        "tprl_config": {"visual_grid": [2, 2]},
    },
    "qwen2_vl": {
        "module": "tests.models.qwen2_vl.test_modeling_qwen2_vl",
        "test_class": "Qwen2VLModelTest",
        "tester_class": "Qwen2VLVisionText2TextModelTester",
        "base_class": "Qwen2VLForConditionalGeneration",
        "tester_code": QWEN_TESTER,
        "tprl_config": {"visual_grid": [2, 2]},
    },
}

# With pruning off, the tests that cannot pass by design: how they must fail (a regular expression the failure message
# matches, else the failure counts as unexpected), and why.
RESIZE = (
    "TPRL does not resize the base.s token embeddings",
    "it raises a clear error: a pruner-only checkpoint does not carry the base's embeddings, and the pruner was trained "
    "on them; resize the base itself, then build a pruner on it",
)
PRUNING_OFF_BY_DESIGN = {
    "test_resize_tokens_embeddings": RESIZE,
    "test_resize_embeddings_untied": RESIZE,
    "test_training": (
        "NoneType",
        "the test adds labels only for transformers' own model classes (its MODEL_*_MAPPING_NAMES), so TPRL's forward "
        "gets none and returns no loss to backpropagate (tests/test_conformance.py trains through labels)",
    ),
    "test_enable_input_require_grads_with_gradient_checkpointing": (
        "No model with a differentiable loss",
        "it skips for want of a loss: as test_training, it adds labels only for transformers' own model classes",
    ),
}

# With pruning on, also the tests that by their nature compare against the unpruned sequence.
SHAPES = r"(Lists|Tuples) differ|torch.Size"


def pruned_length(what: str) -> tuple[str, str]:
    return (
        SHAPES,
        f"the pruned sequence is shorter than the prompt, and the test expects {what} of the prompt's length",
    )


NEEDS_INPUT_IDS = (
    "Pruning needs the prompt's input_ids",
    "the pruner reads the question's input_ids and the pixel_values: inputs_embeds with pruning on raise a clear error",
)
# Upstream's newer VLM tester (LLaVA-NeXT's) gives row i a mask of i + 1 ones from the start (`torch.tril`), over
# the image placeholders, which come first: pruned, a row may keep no attended token, and a batch of such rows is empty.
EMPTY_ROWS = (
    r"of 0 elements|index \d+ is out of bounds",
    "the tester's mask attends only to the first tokens, image placeholders: pruned, the row keeps none (an empty "
    "sequence), or fewer tokens than assisted decoding's candidates",
)


def either(*reasons: tuple[str, str]) -> tuple[str, str]:
    return "|".join(pattern for pattern, _ in reasons), "; or ".join(reason for _, reason in reasons)


PRUNING_ON_BY_DESIGN = {
    **PRUNING_OFF_BY_DESIGN,
    "test_batching_equivalence": EMPTY_ROWS,
    "test_mismatching_num_image_tokens": EMPTY_ROWS,
    "test_generate_compile_model_forward_fullgraph": EMPTY_ROWS,
    "test_generate_with_static_cache": EMPTY_ROWS,
    "test_attention_outputs": pruned_length("attentions"),
    "test_hidden_states_output": pruned_length("hidden states"),
    "test_forward_with_logits_to_keep": pruned_length("logits"),
    "test_past_key_values_format": pruned_length("a cache"),
    "test_greedy_generate_dict_outputs": pruned_length("generate's attentions and hidden states"),
    "test_sample_generate_dict_output": pruned_length("generate's attentions and hidden states"),
    "test_beam_search_generate_dict_output": pruned_length("generate's attentions and hidden states"),
    "test_beam_search_generate_dict_outputs_use_cache": pruned_length("generate's attentions and hidden states"),
    "test_beam_sample_generate_dict_output": pruned_length("generate's attentions and hidden states"),
    "test_generate_compilation_all_outputs": pruned_length("generate's attentions and hidden states"),
    "test_assisted_decoding_matches_greedy_search": either(
        pruned_length("attentions (checked after the sequences matched)"), EMPTY_ROWS
    ),
    "test_assisted_decoding_sample": either(pruned_length("attentions"), EMPTY_ROWS),
    "test_eager_padding_matches_padding_free_with_position_ids": (
        "shape of the mask",
        "it indexes the logits with the prompt's mask, and the pruned sequence is shorter",
    ),
    "test_sdpa_padding_matches_padding_free_with_position_ids": (
        "shape of the mask",
        "it indexes the logits with the prompt's mask, and the pruned sequence is shorter",
    ),
    "test_inputs_embeds": NEEDS_INPUT_IDS,
    "test_generate_from_inputs_embeds": NEEDS_INPUT_IDS,
}

GROUPS = ("generation", "model")

MODULE_TEMPLATE = r"""
import sys

sys.path.insert(0, {checkout!r})

import importlib
import json
import re
import types

import transformers


def import_upstream(name):
    # The upstream tests may import helpers that the installed transformers renamed or does not have yet: each such
    # name becomes a stand-in that raises, so only the tests that use it fail (on the base too, so they do not count).
    for _ in range(50):
        try:
            return importlib.import_module(name)
        except ImportError as error:
            missing = re.match(r"cannot import name '(\w+)' from '([\w.]+)'", str(error))
            if missing is None:
                raise
            symbol, module = missing.groups()

            def stand_in(*args, _symbol=symbol, _module=module, **kwargs):
                raise NotImplementedError(f"{{_module}}.{{_symbol}} is not in the installed transformers")

            setattr(importlib.import_module(module), symbol, stand_in)
            print(f"upstream drift: {{module}}.{{symbol}} is missing; a stand-in raises where it is used")
    raise ImportError(f"too many missing names importing {{name}}")


# The pipeline suite is not compared here, and its module imports the checkout's own transformers source: an empty
# stand-in takes its place.
pipeline_mixin = types.ModuleType("tests.test_pipeline_mixin")
pipeline_mixin.PipelineTesterMixin = type("PipelineTesterMixin", (), {{}})
sys.modules["tests.test_pipeline_mixin"] = pipeline_mixin

upstream = import_upstream("{module}")
UpstreamTest, UpstreamTester = upstream.{test_class}, upstream.{tester_class}
{tester_code}
generation_tests = import_upstream("tests.generation.test_utils").GenerationTesterMixin
with open({groups_path!r}, "w") as file:
    json.dump({{name: "generation" if hasattr(generation_tests, name) else "model" for name in dir(UpstreamTest)}}, file)

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration


class BaseSuite(UpstreamTest):
    all_model_classes = (transformers.{base_class},)
    pipeline_model_mapping = {{}}

    def setUp(self):
        super().setUp()
        self.model_tester = UpstreamTester(self)


def tprl_tester(keep_ratio):
    class TPRLTester(UpstreamTester):
        # The tester's inputs for its base, and a small pruner around that base's config (also where a test asks the
        # tester for its config alone).
        def wrap(self, base_config):
            if isinstance(base_config, TPRLConfig):  # the tester built it through get_config
                return base_config
            return TPRLConfig(
                base_config=base_config, keep_ratio=keep_ratio, policy_hidden_size=16, policy_num_heads=2,
                policy_num_layers=1, **{tprl_config!r}
            )

        def get_config(self, *args, **kwargs):
            return self.wrap(super().get_config(*args, **kwargs))

        def prepare_config_and_inputs_for_common(self):
            config, inputs = super().prepare_config_and_inputs_for_common()
            return self.wrap(config), inputs

    return TPRLTester


class TPRLPruningOffSuite(BaseSuite):
    all_model_classes = (TPRLForConditionalGeneration,)

    def setUp(self):
        super().setUp()
        self.model_tester = tprl_tester(1.0)(self)


class TPRLPruningOnSuite(TPRLPruningOffSuite):
    def setUp(self):
        super().setUp()
        self.model_tester = tprl_tester({keep_ratio_on})(self)
"""


def read_outcomes(junit_path: str) -> dict[str, dict[str, tuple[str, str]]]:
    """`{suite class: {test: (outcome, message)}}` from pytest's JUnit XML."""
    outcomes = defaultdict(dict)
    for case in ElementTree.parse(junit_path).getroot().iter("testcase"):
        suite = case.get("classname").rsplit(".", 1)[-1]
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "failed", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "").splitlines()[0][:160] if child.get("message") else ""
                break
        outcomes[suite][case.get("name")] = (outcome, message)
    return outcomes


def compare(
    outcomes: dict, groups: dict[str, str], suite: str, by_design: dict[str, tuple[str, str]], title: str
) -> int:
    """Prints, per group, how many of the base's passes pass on `suite`; returns the number of unexpected failures."""
    base, tprl = outcomes["BaseSuite"], outcomes[suite]
    unexpected = 0
    print(f"\n## {title}")
    for group in GROUPS:
        passed_on_base = sorted(
            name for name, (outcome, _) in base.items() if outcome == "passed" and groups.get(name) == group
        )
        if not passed_on_base:
            continue
        passing = [name for name in passed_on_base if tprl.get(name, ("missing", ""))[0] == "passed"]
        print(f"- {group}: {len(passing)} of the base's {len(passed_on_base)} passes pass")
        for name in passed_on_base:
            outcome, message = tprl.get(name, ("missing", ""))
            if outcome == "passed":
                continue
            design_name = next((key for key in by_design if name == key or name.startswith(key + "_")), None)
            if design_name is not None and re.search(by_design[design_name][0], message):
                print(f"    by design  {name} ({outcome}): {by_design[design_name][1]}")
            else:
                unexpected += 1
                print(f"    UNEXPECTED {name} ({outcome}): {message}")
    return unexpected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformers", required=True, help="a transformers checkout (the folder holding tests/)")
    parser.add_argument("--family", default="llava", choices=sorted(FAMILIES))
    parser.add_argument("--keep_ratio_on", type=float, default=0.5, help="the pruning-on variant's keep ratio")
    parser.add_argument("-k", default=None, help="pytest -k expression, to run part of the suites")
    parser.add_argument("--junit", default=None, help="where to keep pytest's JUnit XML (default: a temporary file)")
    args = parser.parse_args()
    checkout = os.path.abspath(args.transformers)
    if not os.path.isfile(os.path.join(checkout, "tests", "test_modeling_common.py")):
        print(f"error: {checkout} holds no tests/test_modeling_common.py: give a transformers checkout")
        return 2

    family = FAMILIES[args.family]
    with tempfile.TemporaryDirectory() as workdir:
        module_path = os.path.join(workdir, f"test_tprl_{args.family}_suites.py")
        groups_path = os.path.join(workdir, "groups.json")
        with open(module_path, "w") as file:
            module = MODULE_TEMPLATE.format(
                checkout=checkout, keep_ratio_on=args.keep_ratio_on, groups_path=groups_path, **family
            )
            file.write(module)
        junit = args.junit or os.path.join(workdir, "junit.xml")
        command = [sys.executable, "-m", "pytest", module_path, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        command += ["-o", "junit_family=xunit1", "--rootdir", workdir, "-W", "ignore::DeprecationWarning"]
        if args.k:
            command += ["-k", args.k]
        # From the temporary folder, so that this project's own tests/ folder does not shadow transformers' `tests`.
        result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
        summary = result.stdout.strip().splitlines()
        if not os.path.isfile(groups_path) or not os.path.isfile(junit):
            print(f"error: the upstream suites did not load:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
            return 2
        with open(groups_path) as file:
            groups = json.load(file)
        outcomes = read_outcomes(junit)

    print(f"# transformers' suites ({args.family}): TPRLForConditionalGeneration against {family['base_class']}")
    print(f"pytest: {summary[-1] if summary else ''}")
    unexpected = compare(
        outcomes, groups, "TPRLPruningOffSuite", PRUNING_OFF_BY_DESIGN, "Pruning off (keep_ratio=1.0)"
    )
    title = f"Pruning on (keep_ratio={args.keep_ratio_on})"
    unexpected += compare(outcomes, groups, "TPRLPruningOnSuite", PRUNING_ON_BY_DESIGN, title)
    print(f"\n{unexpected} unexpected failure(s)")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
