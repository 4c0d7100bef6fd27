"""The per-class summary of a catalogue run, printed in pytest's terminal summary (also under ``-q``;
with ``-v`` every case's wall time and peak RSS, slowest first).

A pytest plugin object, registered at run time by the catalogue's session fixture: a
``pytest_terminal_summary`` hook in a conftest.py under test/hostile/ would be loaded only when pytest
collects that folder, not when test/test_hostile_catalogue.py is run on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostile.kit import CLASSES

PLUGIN_NAME = "hnseg-hostile-summary"


@dataclass
class Row:
    id: str
    cls: str
    wall_s: float
    peak_mb: float
    passed: bool = False


class HostileSummary:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.total_s = 0.0

    def record(self, case_id: str, cls: str, wall_s: float, peak_mb: float) -> None:
        self.rows[case_id] = Row(case_id, cls, wall_s, peak_mb)

    def passed(self, case_id: str) -> None:
        self.rows[case_id].passed = True

    def lines(self) -> list[str]:
        if not self.rows:
            return []
        out = [f"{'class':<40} {'cases':>5} {'passed':>6}  slowest refusal (wall s, peak MB)"]
        for key, title in CLASSES.items():
            rows = [r for r in self.rows.values() if r.cls == key]
            if not rows:
                continue
            slow = max(rows, key=lambda r: r.wall_s)
            out.append(f"{title:<40} {len(rows):>5} {sum(r.passed for r in rows):>6}  "
                       f"{slow.id} ({slow.wall_s:.1f} s, {slow.peak_mb:.0f} MB)")
        rows = list(self.rows.values())
        slow = max(rows, key=lambda r: r.wall_s)
        big = max(rows, key=lambda r: r.peak_mb)
        out.append(f"{'all':<40} {len(rows):>5} {sum(r.passed for r in rows):>6}  "
                   f"slowest {slow.id} {slow.wall_s:.1f} s; largest {big.id} {big.peak_mb:.0f} MB; "
                   f"children's wall time {sum(r.wall_s for r in rows):.0f} s, catalogue {self.total_s:.0f} s")
        return out

    def case_lines(self) -> list[str]:
        return [f"{r.id:<44} {r.cls:<13} {r.wall_s:6.1f} s {r.peak_mb:7.0f} MB  {'ok' if r.passed else 'FAILED'}"
                for r in sorted(self.rows.values(), key=lambda r: -r.wall_s)]

    def pytest_terminal_summary(self, terminalreporter, config) -> None:
        lines = self.lines()
        if lines:
            terminalreporter.section("hostile-input catalogue (issue 13)")
            if config.get_verbosity() > 0:  # -v: every case, slowest first
                for line in self.case_lines():
                    terminalreporter.write_line(line)
            for line in lines:
                terminalreporter.write_line(line)
