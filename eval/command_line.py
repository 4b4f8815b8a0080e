"""How every `tprl-*` command ends on bad input: one `error:` line and exit status 2, as argparse does.

Bad input raises `ValueError` (a bad value, an unknown key, an unsupported model) or `OSError` (a file, directory,
model or dataset that is missing or cannot be read) with a message that names the problem and what to do: the
command prints that message alone. Any other exception is a real failure and keeps its traceback; `--debug` keeps
the traceback of every error.
"""

import functools
import os
import sys
from collections.abc import Callable


BAD_INPUT = (ValueError, OSError)


def command(name: str) -> Callable:
    """Makes `main(argv)` a `tprl-*` command called `name`: `argv` defaults to the command line, less `--debug`."""

    def decorate(main: Callable[[list[str]], object]) -> Callable[[list[str] | None], None]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> None:
            argv = list(sys.argv[1:] if argv is None else argv)
            debug = "--debug" in argv
            argv = [argument for argument in argv if argument != "--debug"]
            try:
                main(argv)
            except BAD_INPUT as error:
                if debug:
                    raise
                message = " ".join(str(error).split()) or type(error).__name__
                print(f"{name}: error: {message} (--debug shows the traceback)", file=sys.stderr)
                raise SystemExit(2) from None

        return run

    return decorate


def check_model_argument(name_or_path: str | None, flag: str) -> None:
    """A model argument that is written as a path (absolute, `./`, `~`, or with two or more `/`) must be a directory
    that exists: transformers would read it as a Hub id and complain about its characters."""
    if name_or_path is None or os.path.isdir(os.path.expanduser(name_or_path)):
        return
    if os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1:
        raise ValueError(
            f"{flag} {name_or_path}: no such directory. It is neither a local directory nor a Hub id "
            "(user/name): give the directory of a saved model, or a Hub id."
        )
