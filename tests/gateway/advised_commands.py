"""What the tests of the commands a bank advises share: a bank directory a shell would
split, and the advised command as the real ``setpay`` parser reads it.

Every command a bank's log line or refusal advises names its configuration with
``gateway.config.config_option``. A bank in a directory without spaces or quotes lets an
unquoted or hand-quoted ``--config`` pass a test; one in ``SPACED`` does not.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from cli.main import build_parser

#: A space, which a shell splits an unquoted ``--config`` at, a single quote, which ends a
#: hand-written ``'...'`` early, and double quotes, which end a hand-written ``"..."``
#: early: only a command quoted for a shell pastes whole.
SPACED = 'the bank\'s "home"'


def spaced_root(parent: Path) -> Path:
    """A new directory named ``SPACED`` in ``parent``, to make a bank in."""
    root = parent / SPACED
    root.mkdir()
    return root


def advised_argv(text: str) -> list[str]:
    """The ``setpay`` command between the first two backquotes of ``text``, split as a
    shell splits it when pasted (``setpay`` first)."""
    between = text.split("`")
    assert len(between) >= 3, f"no command between backquotes in: {text}"
    try:
        argv = shlex.split(between[1])
    except ValueError as unsplit:  # an unbalanced quote: pasted, the shell waits for more
        raise AssertionError(f"the advised command does not paste: {between[1]}") from unsplit
    assert argv[0] == "setpay", text
    return argv


def advised(text: str, config_file: Path) -> argparse.Namespace:
    """``advised_argv`` parsed by the real CLI parser (a command that exists, its options
    whole), after checking that its ``--config`` names ``config_file``, resolved as the
    bank loads it: the file the bank was loaded from."""
    argv = advised_argv(text)
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as refused:  # argparse exits; say which advice it refused
        raise AssertionError(f"setpay's parser refuses the advised {argv!r}") from refused
    # ``setpay keys delete`` takes it as text, ``setpay ca`` as a path.
    assert Path(args.config) == config_file.resolve(), (args.config, text)
    return args
