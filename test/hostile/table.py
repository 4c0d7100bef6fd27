"""docs/hostile_inputs.md from the catalogue's table:

    python test/hostile/table.py > docs/hostile_inputs.md

(test/test_hostile_catalogue.py fails when the file differs from what this prints.)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the catalogue imports as ``hostile`` from test/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile.kit import CLASSES  # noqa: E402

COMMANDS = {"predict": "`inference.py`", "batch": "`hnseg batch`", "verify": "`hnseg weights verify`"}

HEADER = """# Hostile inputs and faults: what hnseg refuses

Generated from the catalogue in `test/hostile/cases.py` by `python test/hostile/table.py > docs/hostile_inputs.md`
(a test fails when this file is out of date). Every case runs in a real subprocess under a 2 GiB
`RLIMIT_DATA` and must end with the exit code and the named error below (`<ErrorName>: <message>` on
stderr, the message naming the file, socket or flag), no traceback, nothing written or changed (inputs
byte-identical, nothing under the output folder; a batch run that goes on records the bad case
`failed` and finishes the others), within 30 s and under 2 GiB peak memory
(`test/test_hostile_catalogue.py`).

Exit code 2: the run is refused; 1: `hnseg batch` recorded the case failed and went on.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    from hostile.cases import CASES

    out = [HEADER]
    for key, title in CLASSES.items():
        rows = [c for c in CASES if c.cls == key]
        if not rows:
            continue
        out.append(f"\n## {title} ({len(rows)})\n")
        out.append("| case | input | command | exit | expected error | why |")
        out.append("|---|---|---|---|---|---|")
        for c in rows:
            out.append(f"| `{c.id}` | {_cell(c.what)} | {COMMANDS[c.kind]} | {c.exit_code} | `{c.error}` | "
                       f"{_cell(c.why)} |")
    out.append(f"\n{len(CASES)} cases.\n")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
