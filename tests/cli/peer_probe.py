"""What another process of the same user may read of a process hardened by setpay.

Run as ``python -m tests.cli.peer_probe [NAME=VALUE...]``: a child process hardens itself
(``cli.hardening.harden_process``) with those variables for its environment, then waits;
this process, of the same user, tries the ``/proc`` files of the child the bench and the
tests read, and prints one line per file, ``fd open`` or ``fd shut``, then the child's
core-file limit line. Run by root with ``CAP_SYS_PTRACE`` everything is open whatever the
child did: the test runs it as an unprivileged user.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.hardening import harden_process
from tests.cli.dump_probe import core_limit_line

# The /proc files of a server's process the bench (fd) and the tests (fd, maps) read.
FILES = ("fd", "maps")


def _readable(path: Path) -> bool:
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            path.read_bytes()
    except PermissionError:
        return False
    return True


def main(argv: Sequence[str]) -> int:
    """Fork a child hardened with the environment ``NAME=VALUE...``, and try its files."""
    environ = dict(word.split("=", 1) for word in argv)
    hardened_read, hardened_write = os.pipe()
    done_read, done_write = os.pipe()
    child = os.fork()
    if child == 0:
        harden_process(environ)
        os.write(hardened_write, b"x")
        os.close(done_write)
        os.read(done_read, 1)  # end of file once the parent is done
        os._exit(0)
    os.read(hardened_read, 1)
    for name in FILES:
        state = "open" if _readable(Path(f"/proc/{child}/{name}")) else "shut"
        print(name, state)
    print(core_limit_line(child))
    os.close(done_write)
    os.waitpid(child, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
