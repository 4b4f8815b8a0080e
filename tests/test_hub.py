"""Model cards and the Hub round trip, against a local server speaking the Hub API (no network)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import GREEDY
from huggingface_hub import ModelCard
from local_hub import LocalHub

from modeling_tprl import TPRLForConditionalGeneration
from tprl_hub_cards.model_card import build_model_card, check_results


RESULTS = {
    "split": "test",
    "answer_prior": {"accuracy": 0.3},
    "rows": [
        {"method": "full", "keep_ratio": 1.0, "kept_tokens": 144, "accuracy": 0.95, "retention": 1.0},
        {"method": "tprl", "keep_ratio": 1 / 3, "kept_tokens": 48, "accuracy": 0.94, "retention": 0.9895},
        {"method": "tprl", "keep_ratio": 1 / 9, "kept_tokens": 16, "accuracy": 0.91, "retention": 0.9579},
        {"method": "random", "keep_ratio": 1 / 9, "kept_tokens": 16, "accuracy": 0.5, "retention": 0.5263},
    ],
}


def test_card_parses_back_with_the_evaluation_in_model_index(tprl_model, tmp_path):
    config = copy.deepcopy(tprl_model.config)  # the fixture is shared
    config.base_model_name_or_path = "tester/tiny-llava"
    card = build_model_card(config, "tester/tprl-tiny", results=RESULTS)
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.base_model == "tester/tiny-llava"
    assert loaded.data.pipeline_tag == "image-text-to-text" and loaded.data.library_name == "transformers"
    assert [(r.metric_value, r.metric_config) for r in loaded.data.eval_results] == [
        (0.94, "keep_ratio=0.3333"),
        (0.91, "keep_ratio=0.1111"),
    ]
    assert 'from_pretrained("tester/tprl-tiny", trust_remote_code=True)' in loaded.text
    assert "| random | 16 | 0.111 | 50.0 | 52.6% |" in loaded.text
    dense = {"canvas": "6 digits per canvas", "rows": [{**RESULTS["rows"][1], "accuracy": 0.87, "retention": 0.9}]}
    card = build_model_card(config, "tester/tprl-tiny", results={**RESULTS, "digit_world_dense": dense})
    assert "Dense canvases (6 digits per canvas)" in card.text and "| tprl | 48 | 0.333 | 87.0 | 90.0% |" in card.text


@pytest.mark.parametrize(
    ("results", "message"),
    [({"rows": []}, "non-empty 'rows'"), ({"rows": [{"method": "tprl"}]}, "lacks"), ([1], "non-empty 'rows'")],
)
def test_results_that_do_not_fit_the_card(results, message):
    with pytest.raises(ValueError, match=message):
        check_results(results)


LOAD_FROM_HUB = """
import json, sys
sys.modules["modeling_tprl"] = None  # our package must not be importable here
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, pipeline
repo, revision, batch_path = sys.argv[1:4]
batch = torch.load(batch_path)
model = AutoModelForImageTextToText.from_pretrained(repo, trust_remote_code=True, revision=revision)
assert model.__class__.__module__.startswith("transformers_modules"), model.__class__.__module__
out = model.generate(**batch, max_new_tokens=4, do_sample=False)
pipe = pipeline("image-text-to-text", model=repo, trust_remote_code=True, revision=revision)
image = Image.new("RGB", (96, 96))
messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "is there a 3"}]}]
answer = pipe(text=messages, max_new_tokens=2, return_full_text=False)[0]["generated_text"]
print(json.dumps({"tokens": out.tolist(), "answer": answer}))
"""


PUSH_BASE = """
import sys
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("tester/tiny-llava")
api.upload_folder(folder_path=sys.argv[1], repo_id="tester/tiny-llava")
"""


def _run(args, env, cwd, timeout=300):
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_push_then_load_by_repo_id(base_dir, processor, batch, tmp_path):
    with LocalHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf_home")}
        env["HF_TOKEN"] = "test-token"
        env["HF_HUB_DISABLE_XET"] = "1"
        _run([sys.executable, "-c", PUSH_BASE, base_dir], env, tmp_path)

        torch.manual_seed(0)
        model = TPRLForConditionalGeneration.from_base(base_dir, keep_ratio=1 / 9, policy_hidden_size=32).eval()
        model.config.base_model_name_or_path = "tester/tiny-llava"
        model.save_pretrained(tmp_path / "tprl", processor=processor)
        (tmp_path / "results.json").write_text(json.dumps(RESULTS))
        push = [sys.executable, "-m", "tprl_hub_cards.push", "--model", str(tmp_path / "tprl")]
        push += ["--repo_id", "tester/tprl-tiny", "--results", str(tmp_path / "results.json"), "--revision", "dev"]
        assert "/commit/" in _run(push, env, tmp_path)
        assert {"README.md", "model.safetensors", "modeling_tprl.py"} <= set(
            hub.repos["tester/tprl-tiny"].branches["dev"][0]
        )
        assert hub.repos["tester/tprl-tiny"].branches["main"][0] == {}  # the push went to the branch only

        plain = "import sys; from modeling_tprl import TPRLForConditionalGeneration as T; "
        plain += "T.from_pretrained(sys.argv[1]).push_to_hub('tester/tprl-plain')"
        _run([sys.executable, "-c", plain, str(tmp_path / "tprl")], env, tmp_path)
        pushed = set(hub.repos["tester/tprl-plain"].branches["main"][0])
        assert {"config.json", "model.safetensors", "modeling_tprl.py", "processor_config.json"} <= pushed

        torch.save(dict(batch), tmp_path / "batch.pt")
        loaded = _run(
            [sys.executable, "-c", LOAD_FROM_HUB, "tester/tprl-tiny", "dev", str(tmp_path / "batch.pt")], env, tmp_path
        )
    result = json.loads(loaded.strip().splitlines()[-1])
    assert torch.equal(torch.tensor(result["tokens"]), model.generate(**batch, **GREEDY))
    assert isinstance(result["answer"], str)


def test_push_refuses_a_local_base_path(tprl_model, processor, tmp_path):
    from tprl_hub_cards.push import PushArguments, push_tprl_model

    tprl_model.save_pretrained(tmp_path / "tprl", processor=processor)  # its base is a local directory
    with pytest.raises(ValueError, match="--base_model_id"):
        push_tprl_model(PushArguments(model=str(tmp_path / "tprl"), repo_id="tester/x", token="t"))


def test_push_without_a_token_is_a_clear_error(base_dir, processor, tmp_path):
    with LocalHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf_home")}
        env.pop("HF_TOKEN", None)
        model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
        model.save_pretrained(tmp_path / "tprl", processor=processor)
        push = [sys.executable, "-m", "tprl_hub_cards.push", "--model", str(tmp_path / "tprl")]
        push += ["--repo_id", "tester/y", "--base_model_id", "tester/tiny-llava"]
        result = subprocess.run(push, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert "No Hub token" in result.stderr
    assert "tester/y" not in hub.repos


def test_push_to_an_unreachable_endpoint_is_a_clear_error(processor, base_dir, tmp_path):
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    model.save_pretrained(tmp_path / "tprl", processor=processor)
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "t", "HF_HOME": str(tmp_path / "hf_home")}
    push = [sys.executable, "-m", "tprl_hub_cards.push", "--model", str(tmp_path / "tprl")]
    push += ["--repo_id", "tester/z", "--base_model_id", "tester/tiny-llava"]
    result = subprocess.run(push, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode != 0 and "Cannot reach the Hub at http://127.0.0.1:9" in result.stderr


def test_push_to_a_repo_without_write_access_is_a_clear_error(processor, base_dir, tmp_path):
    with LocalHub(read_only=("someone/else",)) as hub:
        model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
        model.save_pretrained(tmp_path / "tprl", processor=processor)
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "t", "HF_HOME": str(tmp_path / "hf_home")}
        push = [sys.executable, "-m", "tprl_hub_cards.push", "--model", str(tmp_path / "tprl")]
        push += ["--repo_id", "someone/else", "--base_model_id", "tester/tiny-llava"]
        result = subprocess.run(push, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert result.returncode != 0 and "refused to write to someone/else (403)" in result.stderr
        assert hub.repos["someone/else"].branches["main"][0] == {}  # nothing uploaded


@pytest.mark.slow
def test_push_the_shipped_pruner_with_a_space(batch, tmp_path):
    """The shipped pruner (no code files of its own) goes up with its code, and a Space with its demo page; both
    load from the Hub: the model without our package, the Space's page from the wheel it ships."""
    import zipfile

    import gradio
    from huggingface_hub import SpaceCard

    from tprl_digit_world import EMBEDDED_BASE_PATH, EMBEDDED_TPRL_PATH

    with LocalHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf_home"), "HF_TOKEN": "t"}
        env["HF_HUB_DISABLE_XET"] = "1"
        _run([sys.executable, "-c", PUSH_BASE, EMBEDDED_BASE_PATH], env, tmp_path)
        push = [sys.executable, "-m", "tprl_hub_cards.push", "--model", EMBEDDED_TPRL_PATH, "--repo_id", "tester/tprl"]
        push += ["--base_model_id", "tester/tiny-llava", "--space", "tester/tprl-demo"]
        push += ["--results", str(Path(EMBEDDED_TPRL_PATH) / "results.json")]
        urls = _run(push, env, tmp_path).split()
        assert len(urls) == 2 and all("/commit/" in url for url in urls)

        space = hub.repos["tester/tprl-demo"]
        files = space.branches["main"][0]
        wheel = next(name for name in files if name.endswith(".whl"))
        assert space.repo_type == "space" and space.sdk == "gradio"
        assert set(files) == {"README.md", "app.py", "requirements.txt", wheel}
        (tmp_path / "README.md").write_bytes(files["README.md"])
        card = SpaceCard.load(tmp_path / "README.md")
        assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == ("gradio", gradio.__version__, "app.py")
        assert card.data.models == ["tester/tprl"]
        assert 'PruningDemo("tester/tprl")' in files["app.py"].decode()
        assert files["requirements.txt"].decode().split() == [f"./{wheel}"]
        (tmp_path / wheel).write_bytes(files[wheel])
        names = zipfile.ZipFile(tmp_path / wheel).namelist()
        assert {"tprl_demo/app.py", "modeling_tprl/modeling_tprl.py"} <= set(names)

        model_files = hub.repos["tester/tprl"].branches["main"][0]
        assert {"modeling_tprl.py", "configuration_tprl.py", "model.safetensors"} <= set(model_files)
        assert "https://huggingface.co/spaces/tester/tprl-demo" in model_files["README.md"].decode()
        assert json.loads(model_files["config.json"])["base_model_name_or_path"] == "tester/tiny-llava"

        torch.save(dict(batch), tmp_path / "batch.pt")
        loaded = _run(
            [sys.executable, "-c", LOAD_FROM_HUB, "tester/tprl", "main", str(tmp_path / "batch.pt")], env, tmp_path
        )
    tokens = torch.tensor(json.loads(loaded.strip().splitlines()[-1])["tokens"])
    shipped = TPRLForConditionalGeneration.from_pretrained(EMBEDDED_TPRL_PATH)
    assert torch.equal(tokens, shipped.generate(**batch, **GREEDY))
