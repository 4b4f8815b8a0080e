"""`tprl-push`: uploads a TPRL checkpoint with its generated model card to the Hub, in one commit, and optionally
a Space with its demo page.

    tprl-push --model outputs/tprl_digit_world/ppo/final --repo_id user/tprl-tiny-llava \
        --results outputs/tprl_digit_world/eval/results.json [--private] [--revision branch] [--space user/name]
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoConfig, HfArgumentParser
from transformers.dynamic_module_utils import custom_object_save

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.modeling_tprl import AUTO_MAP
from tprl_eval.command_line import command

from .model_card import build_model_card, check_results
from .space import write_space


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "A saved TPRL checkpoint directory."})
    repo_id: str = field(metadata={"help": "Target repository, e.g. 'user/tprl-llava-1.5-7b'."})
    results: str | None = field(default=None, metadata={"help": "A results.json of tprl-eval / tprl-train."})
    base_model_id: str | None = field(
        default=None, metadata={"help": "Hub id of the base, when the checkpoint names a local base directory."}
    )
    private: bool = field(default=False)
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})
    token: str | None = field(default=None, metadata={"help": "Hub token; defaults to the logged-in one."})
    commit_message: str = field(default="Upload TPRL pruner")
    space: str | None = field(
        default=None,
        metadata={
            "help": "Also write and upload a Space with the demo page of this model (e.g. 'user/tprl-demo'); "
            "the model card links to it."
        },
    )


def push_tprl_model(args: PushArguments) -> list[str]:
    """Pushes `args.model` with its card to `args.repo_id`, then the Space `args.space` if given; returns the
    commits' URLs."""
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a saved model (no config.json); pass a TPRL checkpoint directory.")
    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type != "tprl":
        raise ValueError(f"{model_dir} holds a {config.model_type!r} model, not a TPRL checkpoint.")
    if args.base_model_id:
        config.base_model_name_or_path = args.base_model_id
    base = config.base_model_name_or_path
    local_base = base is None or os.path.isabs(base) or base.startswith(("./", "../")) or os.path.isdir(base)
    if config.pruner_only and local_base:
        raise ValueError(
            f"The checkpoint's base is a local path ({base!r}): nobody loading it from the Hub could find it. "
            "Push the base first and pass its Hub id with --base_model_id, or save a full checkpoint."
        )
    if not (args.token or get_token()):
        raise ValueError("No Hub token: log in with `hf auth login`, set HF_TOKEN, or pass --token.")
    results = None
    if args.results:
        try:
            results = json.loads(Path(args.results).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"Cannot read the results file {args.results}: {error}") from error
        check_results(results)

    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        for item in model_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        if not (staging / "modeling_tprl.py").is_file():  # a checkpoint shipped in the package has no code files
            custom_object_save(TPRLForConditionalGeneration, staging)
        config.auto_map = dict(AUTO_MAP)  # loadable with trust_remote_code, without our package
        config.save_pretrained(staging)  # with the Hub id of the base
        plot = None
        if args.results and (Path(args.results).parent / "accuracy_vs_kept.png").is_file():
            plot = "accuracy_vs_kept.png"
            shutil.copy2(Path(args.results).parent / plot, staging / plot)
        card = build_model_card(config, args.repo_id, results=results, plot=plot, space=args.space)
        card.save(staging / "README.md")

        api = HfApi(token=args.token)
        commits = [_upload(api, staging, args.repo_id, "model", args)]
    if args.space:
        with tempfile.TemporaryDirectory() as staging:
            write_space(args.repo_id, args.space, Path(staging))
            commits.append(_upload(api, Path(staging), args.space, "space", args))
    return commits


def _upload(api: HfApi, folder: Path, repo_id: str, repo_type: str, args: PushArguments) -> str:
    """Uploads `folder` to `repo_id` in one commit (a failed upload leaves the repository as it was, never half a
    checkpoint); returns the commit's URL."""
    try:
        api.create_repo(
            repo_id,
            repo_type=repo_type,
            private=args.private,
            exist_ok=True,
            space_sdk="gradio" if repo_type == "space" else None,
        )
        if args.revision:
            api.create_branch(repo_id, repo_type=repo_type, branch=args.revision, exist_ok=True)
        commit = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            repo_type=repo_type,
            revision=args.revision,
            commit_message=args.commit_message,
        )
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code in (401, 403):
            raise PermissionError(
                f"The Hub refused to write to {repo_id} ({error.response.status_code}): check that your token "
                "has write access to this repository or namespace."
            ) from error
        raise
    except (httpx2.ConnectError, httpx2.TimeoutException) as error:
        raise ConnectionError(f"Cannot reach the Hub at {constants.ENDPOINT} ({error}); check HF_ENDPOINT.") from error
    return commit.commit_url


@command("tprl-push")
def main(argv: list[str]) -> None:
    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    print("\n".join(push_tprl_model(args)))


if __name__ == "__main__":
    main()
