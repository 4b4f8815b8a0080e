"""The demo page (`tprl-demo`): its API through `gradio_client`, and the page itself in a real browser."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tprl_demo import PruningDemo, build_demo, launch
from tprl_demo.app import digit_world_sample, main
from tprl_digit_world import EMBEDDED_BASE_PATH
from tprl_eval.flops import prefill_flops


CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by .ci/run (Playwright's own download is not reachable here)
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def trained_demo():
    return PruningDemo()  # the shipped pruner of the embedded tiny LLaVA


@pytest.fixture(scope="module")
def page_url(trained_demo):
    page = build_demo(trained_demo)
    _, url, _ = launch(page, port=None, prevent_thread_lock=True, quiet=True)
    yield url
    page.close()


@pytest.fixture(scope="module")
def client(page_url):
    return Client(page_url, verbose=False)


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory):
    image, question, answer = digit_world_sample(3)
    path = tmp_path_factory.mktemp("demo") / "canvas.png"
    image.save(path)
    return path, question, answer


def expected(demo: PruningDemo, path: Path, question: str, method: str, budget: dict) -> dict:
    """What the model itself answers, keeps and costs, outside the page."""
    inputs = demo.inputs(Image.open(path).convert("RGB"), question)
    if method == "full":
        method, budget = "tprl", {"keep_ratio": 1.0}
    torch.manual_seed(0)
    output = demo.model.generate(**inputs, max_new_tokens=8, do_sample=False, pruning_method=method, **budget)
    torch.manual_seed(0)
    kept = demo.model.kept_visual_indices(**inputs, pruning_method=method, **budget)[0]
    kept = int((kept >= 0).sum())
    num_text = inputs["input_ids"].shape[1] - 144
    config = demo.model.config
    if budget.get("keep_ratio") == 1.0:
        method = "full"
    flops = prefill_flops(config.base_config, kept, num_text, method=method, tprl_config=config).total
    answer = demo.processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    return {"answer": answer, "kept_tokens": kept, "prefill_flops": flops}


@pytest.mark.parametrize(
    ("mode", "method", "budgets"),
    [
        ("number of tokens", "cls_attention", {"num_kept_tokens": 16}),
        ("share of tokens", "fastv", {"keep_ratio": 0.33}),
        ("adaptive (mean share)", "random", {"keep_ratio": "adaptive", "target_keep_ratio": 0.11}),
    ],
)
def test_api_answers_keeps_and_counts_as_the_model_does(trained_demo, client, sample_path, mode, method, budgets):
    path, question, _ = sample_path
    outputs = client.predict(handle_file(str(path)), question, mode, 16, 0.33, 0.11, method, api_name="/answer")
    figures = outputs[-1]
    assert list(figures) == ["tprl", "full", method]
    tprl = expected(trained_demo, path, question, "tprl", budgets)
    # adaptive: the other columns keep as many tokens as TPRL chose
    others = {"num_kept_tokens": tprl["kept_tokens"]} if "target_keep_ratio" in budgets else budgets
    for name, budget in (("tprl", budgets), ("full", {}), (method, others)):
        want = expected(trained_demo, path, question, name, budget)
        assert {key: figures[name][key] for key in want} == want, name
    assert figures["full"]["kept_tokens"] == 144 and figures["full"]["flops_ratio"] == 1.0
    assert outputs[1] == figures["tprl"]["answer"] and Path(outputs[2]).is_file()  # the TPRL column: answer, overlay
    overlay = np.asarray(Image.open(outputs[2]))
    assert overlay.shape == (384, 384, 3) and len(np.unique(overlay.reshape(-1, 3), axis=0)) > 2


@pytest.mark.parametrize(
    ("image", "question", "message"),
    [
        (None, "is there a 3", "Upload an image"),
        ("canvas", "  ", "Type a question"),
        ("not_an_image", "is there a 3", "not an image this page can read"),
        ("canvas", "is there a 3 " * 200, "takes at most 504"),
    ],
)
def test_bad_input_gets_a_message(client, sample_path, tmp_path, image, question, message):
    path = {"canvas": sample_path[0], "not_an_image": tmp_path / "notes.png", None: None}[image]
    if image == "not_an_image":
        path.write_text("not a picture")
    upload = handle_file(str(path)) if path else None
    with pytest.raises(AppError, match=message):
        client.predict(upload, question, "number of tokens", 16, 0.33, 0.11, "fastv", api_name="/answer")


def test_a_base_without_a_trained_pruner_shows_the_training_free_methods_alone(sample_path):
    demo = PruningDemo(EMBEDDED_BASE_PATH)
    assert not demo.trained and "adaptive (mean share)" not in demo.budget_modes()
    page = build_demo(demo)
    _, url, _ = launch(page, port=None, prevent_thread_lock=True, quiet=True)
    try:
        path, question, _ = sample_path
        outputs = Client(url, verbose=False).predict(
            handle_file(str(path)), question, "number of tokens", 16, 0.33, 0.11, "uniform", api_name="/answer"
        )
    finally:
        page.close()
    assert outputs[:4] == (None, None, None, None)  # the TPRL column stays empty (and hidden)
    assert list(outputs[-1]) == ["full", "uniform"] and outputs[-1]["uniform"]["kept_tokens"] == 16


def test_a_checkpoint_that_does_not_load_is_one_error_line(tmp_path, capsys):
    from conftest import command_error

    (tmp_path / "config.json").write_text("{not json")
    assert "not a valid JSON file" in command_error(main, ["--model", str(tmp_path)], capsys)


def test_the_page_in_a_browser(page_url):
    """Debian's chromium, driven by Playwright: upload, ask, and every column shows an answer and its patches."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium (.ci/run does)")
    from playwright import sync_api

    image, question, answer = digit_world_sample(2, num_digits=6)  # a dense canvas: "how many are magenta"
    ARTIFACTS.mkdir(exist_ok=True)
    image.save(ARTIFACTS / "demo_upload.png")
    flags = ["--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*flags, "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_url)
        page.locator("input[type=file]").first.set_input_files(str(ARTIFACTS / "demo_upload.png"))
        page.get_by_label("question").fill(question)
        page.get_by_role("button", name="Answer").click()
        answers = page.get_by_label("answer")
        for column in range(3):
            sync_api.expect(answers.nth(column)).not_to_have_value("", timeout=60_000)
        overlays = page.locator(".kept-patches img")
        sync_api.expect(overlays).to_have_count(3)
        page.wait_for_function(  # every overlay decoded, and gradio's fade of pending outputs over
            "() => [...document.querySelectorAll('.kept-patches img')].every(img => img.complete && img.naturalWidth)"
            " && !document.querySelector('.pending, .translucent')"
        )
        page.screenshot(path=str(ARTIFACTS / "demo_page.png"), full_page=True)
        values = [answers.nth(column).input_value() for column in range(3)]
        sizes = [overlays.nth(column).evaluate("img => img.naturalWidth") for column in range(3)]
        browser.close()
    assert all(values), values
    assert sizes == [384, 384, 384], sizes
    outside = [url for url in requests if not url.startswith(page_url.rstrip("/")) and not url.startswith("data:")]
    assert not outside, f"the page loaded assets from outside this machine: {outside}"
    assert (ARTIFACTS / "demo_page.png").stat().st_size > 10_000
