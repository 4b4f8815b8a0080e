"""Every `tprl-*` command on bad arguments: one `error:` line naming the problem, exit status 2, no traceback;
`--debug` keeps the traceback."""

import os
import subprocess
import sys

import pytest

from tprl_demo.app import main as demo
from tprl_digit_world.train_base import main as train_base
from tprl_eval.cli import main as evaluate
from tprl_eval.flops import main as flops
from tprl_hub_cards.push import main as push
from tprl_train.prepare_data import main as prepare_data
from tprl_train.train_pruner import main as train


NO_SUCH_DIRECTORY = "no such directory. It is neither a local directory nor a Hub id"


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        (evaluate, ["--model", "/nonexistent"], f"--model /nonexistent: {NO_SUCH_DIRECTORY}"),
        (evaluate, ["--model", "./outputs/no/such/run"], f"--model ./outputs/no/such/run: {NO_SUCH_DIRECTORY}"),
        (evaluate, ["--methods", "foo"], "Unknown method(s) ['foo']"),
        (evaluate, ["--keep_ratios", "1.5"], "keep_ratios must lie in (0, 1]"),
        (train, ["--config", "missing.yaml"], "No such file or directory: 'missing.yaml'"),
        (train, ["--keep_ratios", "1.5"], "keep_ratio must be a number in (0, 1]"),
        (train, ["--teacher", "foo"], "Unknown teacher 'foo'"),
        (
            train,
            ["--base_model_name_or_path", "/nonexistent"],
            f"--base_model_name_or_path /nonexistent: {NO_SUCH_DIRECTORY}",
        ),
        (
            train,
            ["--imitation_stepz", "3"],
            "arguments are not used by the HfArgumentParser: ['--imitation_stepz', '3']",
        ),
        (flops, ["--model", "/nonexistent"], f"--model /nonexistent: {NO_SUCH_DIRECTORY}"),
        (flops, ["--kept", "many"], "kept must be comma-separated integers"),
        (push, ["--model", "/nonexistent", "--repo_id", "user/name"], "/nonexistent is not a saved model"),
        (prepare_data, ["--output_dir", "out"], "Give --conversations (LLaVA's layout) or --vqa_dataset"),
        (train_base, ["--stepz", "1"], "arguments are not used by the HfArgumentParser: ['--stepz', '1']"),
        (demo, ["--model", "/nonexistent"], f"--model /nonexistent: {NO_SUCH_DIRECTORY}"),
    ],
)
def test_a_bad_argument_gives_one_error_line_and_status_2(command, argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing written where the tests run
    with pytest.raises(SystemExit) as exit_info:
        command(argv)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert ": error: " in line and message in line, line


def test_debug_keeps_the_traceback(capsys):
    with pytest.raises(ValueError, match=NO_SUCH_DIRECTORY):
        evaluate(["--model", "/nonexistent", "--debug"])


def test_an_argparse_error_is_argparse_s_own(capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare_data(["--limit", "many", "--output_dir", "out"])
    assert (
        exit_info.value.code == 2 and "error: argument --limit: invalid int value: 'many'" in capsys.readouterr().err
    )


@pytest.mark.slow
def test_the_installed_command_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "tprl-eval"), "--model", "/nonexistent"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tprl-eval: error: --model /nonexistent: {NO_SUCH_DIRECTORY} (user/name): give the directory of a saved "
        "model, or a Hub id. (--debug shows the traceback)"
    ]
