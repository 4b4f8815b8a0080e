"""A Hugging Face Space for the demo page (`tprl-demo`) of a pushed TPRL model.

A Space is a repository that the Hub runs: `app.py` (the page), `requirements.txt` (gradio itself comes from the
card's `sdk_version`) and a README whose front matter names the SDK, the app and the model (`models:` lists the
Space on the model's page). The page's code is this package, shipped in the Space as a wheel built from this
source tree, so that the Space runs the very code that wrote it.
"""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData


SOURCE_ROOT = Path(__file__).resolve().parents[1]

APP = '''"""The TPRL demo page of {model}: which patches the pruner keeps for a question, and what that saves."""

from tprl_demo import PruningDemo, build_demo, launch


launch(build_demo(PruningDemo("{model}")), host="0.0.0.0", port=7860)  # the port a Space serves
'''

BODY = """
# {title}

Ask a question about an image and see, side by side, what [{model}](https://huggingface.co/{model}) keeps of it
and answers, what the full model answers, and what a training-free method keeps at the same budget: the kept
patches, the visual tokens, the prefill FLOPs and the time of each.
"""


def build_wheel(directory: Path) -> Path:
    """Builds this package's wheel (no dependencies) into `directory` and returns its path."""
    if not (SOURCE_ROOT / "setup.py").is_file():
        raise ValueError(
            f"A Space ships tprl as a wheel built from its source tree, and {SOURCE_ROOT} has no setup.py (an "
            "installed wheel): run tprl-push --space from a clone of tprl, installed with pip install -e."
        )
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(directory)]
    result = subprocess.run([*command, str(SOURCE_ROOT)], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"Building the tprl wheel for the Space failed: {result.stderr.strip()[-2000:]}")
    (wheel,) = directory.glob("tprl-*.whl")
    return wheel


def write_space(model_repo_id: str, space_id: str, directory: Path) -> list[str]:
    """Writes the Space of `model_repo_id`'s demo page into `directory`; returns the files' names."""
    try:
        gradio_version = metadata.version("gradio")  # the Space runs the gradio the page was written for
    except metadata.PackageNotFoundError as error:
        raise ValueError('A Space needs the demo page\'s gradio: pip install -e ".[demo]".') from error
    wheel = build_wheel(directory)
    (directory / "app.py").write_text(APP.format(model=model_repo_id))
    (directory / "requirements.txt").write_text(f"./{wheel.name}\n")  # the wheel's own requirements follow
    title = f"TPRL: see {model_repo_id.split('/')[-1]} prune"
    card_data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=gradio_version,
        app_file="app.py",
        models=[model_repo_id],
        tags=["tprl", "token-pruning"],
        license="apache-2.0",
    )
    card = SpaceCard(f"---\n{card_data.to_yaml()}\n---\n" + BODY.format(title=title, model=model_repo_id))
    card.save(directory / "README.md")
    return sorted(path.name for path in directory.iterdir())
