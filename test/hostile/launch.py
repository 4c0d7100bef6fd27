"""Set the child's limits, then exec the command: ``python -S -E launch.py [--data N] [--fsize N]
[--drop-dac] -- CMD…`` (the limits survive ``exec``; ``wait4`` on this pid then measures CMD).

The catalogue's runner uses this instead of ``subprocess``'s ``preexec_fn`` because it starts children
from worker threads, where a Python callback between fork and exec can deadlock.

- ``--data N``: RLIMIT_DATA (heap and anonymous memory; RLIMIT_AS cannot be used: the CUDA build of
  torch maps > 3 GB of address space at import).
- ``--fsize N``: RLIMIT_FSIZE, a full disk (Python ignores SIGXFSZ, so a write past N fails with EFBIG).
- ``--drop-dac``: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so a child of
  root honours a folder's permission bits like any user (the uid stays 0: the interpreter and the
  repository may lie under a folder only root can enter).
"""

import ctypes
import os
import resource
import sys

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def main(argv: list[str]) -> None:
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    i = 0
    while i < len(opts):
        if opts[i] == "--data":
            n = int(opts[i + 1])
            resource.setrlimit(resource.RLIMIT_DATA, (n, n))
            i += 2
        elif opts[i] == "--fsize":
            n = int(opts[i + 1])
            resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
            i += 2
        elif opts[i] == "--drop-dac":
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    sys.stderr.write(f"launch.py: cannot drop capability {cap}: errno {ctypes.get_errno()}\n")
                    sys.exit(125)
            i += 1
        else:
            sys.stderr.write(f"launch.py: unknown option {opts[i]}\n")
            sys.exit(125)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
