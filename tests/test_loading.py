"""Loading the way users do: pipeline, and trust_remote_code in a process where our package is not importable."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import GREEDY
from PIL import Image
from transformers import pipeline


@pytest.fixture(scope="module")
def checkpoint(tprl_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint")
    tprl_model.save_pretrained(path)
    return path


def _messages(example):
    content = [
        {"type": "image", "image": Image.fromarray(example["image"])},
        {"type": "text", "text": example["question"]},
    ]
    return [{"role": "user", "content": content}]


def test_pipeline_answers_with_pruning(tprl_model, processor, checkpoint, examples, batch):
    pipe = pipeline("image-text-to-text", model=str(checkpoint))
    assert pipe.model.config.keep_ratio == pytest.approx(1 / 3)
    answers = [
        pipe(text=_messages(ex), max_new_tokens=2, return_full_text=False)[0]["generated_text"] for ex in examples
    ]
    output = tprl_model.generate(**batch, max_new_tokens=2, do_sample=False)
    expected = processor.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert [a.strip() for a in answers] == [e.strip() for e in expected]


REMOTE_CODE = """
import json, sys
sys.modules["modeling_tprl"] = None  # our package must not be importable here
import torch
from transformers import AutoModelForImageTextToText, AutoModel, AutoProcessor
processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)  # the config is remote code too
assert type(processor).__name__ == "LlavaProcessor"
batch = torch.load(sys.argv[2])
for auto in (AutoModelForImageTextToText, AutoModel):
    model = auto.from_pretrained(sys.argv[1], trust_remote_code=True)
    assert model.__class__.__module__.startswith("transformers_modules"), model.__class__.__module__
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
print(json.dumps(out.tolist()))
"""


def test_trust_remote_code_without_package(tprl_model, checkpoint, batch, tmp_path):
    torch.save(dict(batch), tmp_path / "batch.pt")
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE, str(checkpoint), str(tmp_path / "batch.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr
    assert "to instantiate a model of type" not in result.stderr
    tokens = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    assert torch.equal(tokens, tprl_model.generate(**batch, **GREEDY))
