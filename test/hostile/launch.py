"""Run one command under limits: ``python -S -E launch.py --report FD [--data N] [--fsize N]
[--drop-dac] -- CMD…``. Sets the limits, forks, execs CMD in the child, waits for it with ``wait4`` and
writes its peak RSS (``ru_maxrss``, KiB) to the inherited file descriptor FD; exits with CMD's exit
code (128 + N when a signal N ended it).

Why a launcher: the catalogue's runner starts children from worker threads, where a ``preexec_fn``
(a Python callback between fork and exec) can deadlock; and Linux carries a process's RSS high-water
mark across ``exec``, so a child forked straight from pytest (hundreds of MB) would report pytest's
size as its own peak. Forked from this small interpreter, CMD's peak is its own (+ ~10 MB).

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
    report = None
    i = 0
    while i < len(opts):
        if opts[i] == "--report":
            report = int(opts[i + 1])
            i += 2
        elif opts[i] == "--data":
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
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    if report is not None:
        os.write(report, f"{usage.ru_maxrss}\n".encode())
        os.close(report)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main(sys.argv[1:])
