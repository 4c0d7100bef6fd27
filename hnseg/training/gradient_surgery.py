"""Gradient-conflict resolution for the NPC multi-task trainer (Grad-MTSeg idea, PCGrad family).

Each task (e.g. one organ-at-risk, the GTV, the CTV) has its own loss; its gradient over the
*shared* parameters is a flat 1-D tensor. Tasks are organised in groups (e.g. ``{"oar": [...],
"gtv": [...], "ctv": [...]}``) and conflicts are resolved hierarchically:

1. **within each group**, the task gradients are made to stop conflicting with PCGrad
   (:func:`project_conflicting`) and summed into one group gradient;
2. **across groups**, the group gradients are treated the same way and summed into the final
   update direction.

PCGrad variant implemented (:func:`project_conflicting`)
--------------------------------------------------------
For every gradient ``g_i`` a running copy ``g_i^PC`` starts at ``g_i`` and is projected, one after
the other, against every *other* **original** gradient ``g_j`` (``j != i``)::

    if dot(g_i^PC, g_j) < 0 and ||g_j||^2 > 0:
        g_i^PC <- g_i^PC - dot(g_i^PC, g_j) / ||g_j||^2 * g_j

* The conflict test and the projection coefficient use the *running* ``g_i^PC`` (it has already
  been projected against the earlier ``g_j``), while the vectors projected against are always the
  *original*, unprojected ``g_j`` -- never other tasks' already-projected gradients.
* The ``j`` order is the input order (deterministic). With a seeded ``torch.Generator`` a fresh
  random permutation is drawn for each ``i`` (as the reference PCGrad code shuffles per task).

Why this variant: it is Algorithm 1 of PCGrad (Yu et al., NeurIPS 2020) and its reference code, so
results are comparable with the literature; and because every ``g_i`` only ever sees the original
gradients of the others, the result for task ``i`` does not depend on the order in which the
*tasks* are processed, only on the order of its own projections, and a projection made for one task
cannot cascade into another task's correction. Projecting against already-projected gradients
would make the output depend on the outer loop order and let early (possibly large) corrections
propagate.

Properties and limits: for two gradients the projected pair never conflicts
(``dot(g_1^PC, g_2^PC) = -d (1 - cos^2) >= 0`` with ``d = dot(g_1, g_2) < 0``); for three or more a
projected gradient is orthogonal to (not in conflict with) the *last* ``g_j`` it was projected
against, but may again conflict with an earlier one -- PCGrad does not guarantee pairwise
non-negativity for n > 2. The update direction is the *sum* of the projected gradients (task loss
weights, if any, belong in the losses themselves). Projection is equivariant under a common
positive scale of all gradients, so it commutes with AMP loss scaling once the gradients are finite.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

__all__ = ["project_conflicting", "hierarchical_surgery", "apply_surgery"]

log = logging.getLogger(__name__)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype used for the projection arithmetic: at least float32 (half/bfloat16 are upcast)."""
    return torch.promote_types(dtype, torch.float32)


def _project_one(g_i: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    """Project the running copy of ``g_i`` against each (original) gradient of ``others`` in turn."""
    out = g_i.clone()
    for g_j in others:
        dot = torch.dot(out, g_j)
        if dot < 0:
            norm_sq = torch.dot(g_j, g_j)
            if norm_sq > 0:
                out = out - (dot / norm_sq) * g_j
    return out


def project_conflicting(
    grads: list[torch.Tensor], generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """PCGrad on flat gradients: returns new tensors, the inputs are left untouched.

    Each ``grads[i]`` is projected against the *original* ``grads[j]`` (``j != i``) whenever they
    conflict (negative dot product); see the module docstring for the exact variant. The ``j`` order
    is the input order, or a random permutation per ``i`` drawn from ``generator`` (a CPU
    ``torch.Generator``) when one is given. Zero gradients are never projected against. The
    arithmetic runs in at least float32 and each output has its input's dtype.
    """
    if not grads:
        return []
    work = [g.detach().to(_work_dtype(g.dtype)) for g in grads]
    n = len(work)
    out: list[torch.Tensor] = []
    for i in range(n):
        if generator is None:
            order = list(range(n))
        else:
            order = torch.randperm(n, generator=generator).tolist()
        others = [work[j] for j in order if j != i]
        out.append(_project_one(work[i], others).to(grads[i].dtype))
    return out


def _validate(task_grads: Mapping[str, torch.Tensor], groups: Mapping[str, Sequence[str]]) -> None:
    """Raise ``ValueError`` unless groups partition the tasks and the gradients are compatible."""
    if not task_grads:
        raise ValueError("task_grads is empty: need at least one task gradient")
    if not groups:
        raise ValueError("groups is empty: need at least one task group")
    owner: dict[str, str] = {}
    for group, tasks in groups.items():
        if len(tasks) == 0:
            raise ValueError(f"group {group!r} is empty: every group needs at least one task")
        for task in tasks:
            if task in owner:
                where = "twice in" if owner[task] == group else f"in both {owner[task]!r} and"
                raise ValueError(f"task {task!r} appears {where} group {group!r}: each task must be in exactly one group")
            owner[task] = group
    unknown = sorted(set(owner) - set(task_grads))
    if unknown:
        raise ValueError(f"tasks {unknown} are listed in groups but have no gradient in task_grads")
    ungrouped = sorted(set(task_grads) - set(owner))
    if ungrouped:
        raise ValueError(f"tasks {ungrouped} have a gradient but are in no group")
    ref_name, ref = next(iter(task_grads.items()))
    for name, g in task_grads.items():
        if not isinstance(g, torch.Tensor):
            raise ValueError(f"gradient of task {name!r} is a {type(g).__name__}, not a torch.Tensor")
        if g.ndim != 1:
            raise ValueError(f"gradient of task {name!r} must be flat (1-D), got shape {tuple(g.shape)}")
        if not g.is_floating_point():
            raise ValueError(f"gradient of task {name!r} must be floating point, got {g.dtype}")
        if g.shape != ref.shape or g.dtype != ref.dtype or g.device != ref.device:
            raise ValueError(
                f"gradient of task {name!r} ({tuple(g.shape)}, {g.dtype}, {g.device}) does not match "
                f"task {ref_name!r} ({tuple(ref.shape)}, {ref.dtype}, {ref.device})"
            )
        if not bool(torch.isfinite(g).all()):
            raise ValueError(f"gradient of task {name!r} contains NaN or Inf")


def _surgery_with_groups(
    task_grads: Mapping[str, torch.Tensor],
    groups: Mapping[str, Sequence[str]],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Validated hierarchical surgery; also returns the per-group gradients (before the across step)."""
    _validate(task_grads, groups)
    group_grads: dict[str, torch.Tensor] = {}
    for group, tasks in groups.items():
        projected = project_conflicting([task_grads[t] for t in tasks], generator)
        group_grads[group] = torch.stack(projected).sum(dim=0)
    across = project_conflicting(list(group_grads.values()), generator)
    return torch.stack(across).sum(dim=0), group_grads


def hierarchical_surgery(
    task_grads: dict[str, torch.Tensor],
    groups: dict[str, list[str]],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Combined flat update direction from per-task flat gradients.

    Within each group (task order = the group's list order) :func:`project_conflicting` is applied
    and the projected gradients are summed into a group gradient; the group gradients (order =
    ``groups`` order) then go through :func:`project_conflicting` again and are summed. The same
    ``generator``, if given, is consumed in that order, so a seeded one gives reproducible results.

    Raises ``ValueError`` if a task is in two groups (or twice in one), a grouped task has no
    gradient, a gradient belongs to no group, a group is empty, the gradients are not all flat
    floating-point tensors of the same shape, dtype and device, or any of them is not finite.
    """
    combined, _ = _surgery_with_groups(task_grads, groups, generator)
    return combined


def _count_conflicts(grads: Sequence[torch.Tensor]) -> int:
    """Number of unordered pairs with a negative dot product."""
    return sum(
        int(torch.dot(grads[i], grads[j]) < 0) for i in range(len(grads)) for j in range(i + 1, len(grads))
    )


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity as a Python float; 0.0 when either vector is zero."""
    a = a.to(_work_dtype(a.dtype))
    b = b.to(_work_dtype(b.dtype))
    denom = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    return float(torch.dot(a, b) / denom) if denom > 0 else 0.0


def _task_gradient(
    loss: torch.Tensor, params: Sequence[torch.nn.Parameter], retain_graph: bool
) -> torch.Tensor:
    """Flat gradient of ``loss`` w.r.t. ``params``; unused parameters contribute zeros."""
    if not loss.requires_grad:
        return torch.cat([torch.zeros_like(p).reshape(-1) for p in params])
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)]
    )


def apply_surgery(
    model_params: list[torch.nn.Parameter],
    task_losses: dict[str, torch.Tensor],
    groups: dict[str, list[str]],
    generator: torch.Generator | None = None,
    retain_graph: bool = True,
) -> dict[str, object]:
    """Compute per-task gradients, resolve conflicts hierarchically and write the result to ``p.grad``.

    ``model_params`` should be the *shared* parameters; each parameter's ``.grad`` is
    **overwritten** (not accumulated) with its slice of :func:`hierarchical_surgery`'s output.
    Task-specific parameters (heads) are best left to the caller, e.g.
    ``sum(task_losses.values()).backward(inputs=head_params)`` -- which needs the graph, hence the
    default ``retain_graph=True``. The graph is always retained between the per-task gradient
    computations; ``retain_graph`` only applies to the last one. A loss that does not require grad,
    and parameters a loss does not reach, give zero gradients.

    Returns diagnostics as plain Python values: ``conflicts_within`` (pairs of original task
    gradients with a negative dot product, summed over groups), ``conflicts_across`` (same for the
    group gradients after the within-group step), ``cosine_across`` (``"a/b" -> cosine`` of those
    group gradients) and ``grad_norm`` (L2 norm of the combined update).
    """
    params = list(model_params)
    if not params:
        raise ValueError("model_params is empty")
    for k, p in enumerate(params):
        if not p.requires_grad:
            raise ValueError(f"model_params[{k}] (shape {tuple(p.shape)}) does not require grad")
    for name, loss in task_losses.items():
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss of task {name!r} must be a scalar tensor")
    names = list(task_losses)
    task_grads = {
        name: _task_gradient(task_losses[name], params, retain_graph or k < len(names) - 1)
        for k, name in enumerate(names)
    }
    combined, group_grads = _surgery_with_groups(task_grads, groups, generator)

    offset = 0
    for p in params:
        n = p.numel()
        p.grad = combined[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n

    group_names = list(group_grads)
    cosines = {
        f"{group_names[i]}/{group_names[j]}": _cosine(group_grads[group_names[i]], group_grads[group_names[j]])
        for i in range(len(group_names))
        for j in range(i + 1, len(group_names))
    }
    diagnostics: dict[str, object] = {
        "conflicts_within": sum(_count_conflicts([task_grads[t] for t in tasks]) for tasks in groups.values()),
        "conflicts_across": _count_conflicts(list(group_grads.values())),
        "cosine_across": cosines,
        "grad_norm": float(torch.linalg.vector_norm(combined.to(_work_dtype(combined.dtype)))),
    }
    log.debug("gradient surgery: %s", diagnostics)
    return diagnostics
