"""Task registry: profiles by name, and choosing a task from the sockets present."""

from __future__ import annotations

from collections.abc import Iterable

from hnseg.errors import TaskSelectionError
from hnseg.tasks.hntsmrg import HNTSMRG_TASK1, HNTSMRG_TASK2
from hnseg.tasks.npc import NPC_TARGETS
from hnseg.tasks.profiles import ChannelSpec, InputSocket, Label, OutputSocket, TaskProfile
from hnseg.tasks.segrap import SEGRAP_TASK1, SEGRAP_TASK2

TASKS: dict[str, TaskProfile] = {
    p.name: p for p in (HNTSMRG_TASK1, HNTSMRG_TASK2, SEGRAP_TASK1, SEGRAP_TASK2, NPC_TARGETS)
}

__all__ = [
    "TASKS", "TaskProfile", "InputSocket", "ChannelSpec", "Label", "OutputSocket",
    "get_task", "detect_task",
]


def get_task(name: str) -> TaskProfile:
    try:
        return TASKS[name]
    except KeyError:
        raise TaskSelectionError(
            f"unknown task {name!r}: expected one of {sorted(TASKS)}"
        ) from None


def detect_task(present_slugs: Iterable[str]) -> TaskProfile:
    """The task whose required sockets are all present and which uses the most present sockets."""
    present = set(present_slugs)
    candidates = [p for p in TASKS.values() if set(p.required_slugs) <= present]
    if not candidates:
        raise TaskSelectionError(
            f"no task matches the input sockets {sorted(present)}; each task needs: "
            + "; ".join(f"{p.name}: {list(p.required_slugs)}" for p in TASKS.values())
        )
    score = {p.name: len(present & {s.slug for s in p.inputs}) for p in candidates}
    best = max(score.values())
    top = [p for p in candidates if score[p.name] == best]
    top_required = max(len(p.required_slugs) for p in top)
    top = [p for p in top if len(p.required_slugs) == top_required]
    if len(top) > 1:
        raise TaskSelectionError(
            f"input sockets {sorted(present)} match several tasks {[p.name for p in top]}: "
            "choose one with --task"
        )
    best = top[0]
    # A socket the chosen task ignores but another task requires means that task's inputs are
    # incomplete (e.g. a task-2 case without its registered mask): refuse rather than guess.
    known = {s.slug for s in best.inputs}
    for p in TASKS.values():
        stray = (present & set(p.required_slugs)) - known
        if p is not best and stray:
            raise TaskSelectionError(
                f"input sockets {sorted(stray)} belong to {p.name}, which also needs "
                f"{sorted(set(p.required_slugs) - present)}; found only {sorted(present)}"
            )
    return best
