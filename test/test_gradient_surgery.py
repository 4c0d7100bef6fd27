"""Gradient surgery (PCGrad, hierarchical over task groups): hand-checked values and a toy training run."""

from __future__ import annotations

import math

import pytest
import torch

from hnseg.training.gradient_surgery import apply_surgery, hierarchical_surgery, project_conflicting


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-12, rtol=0)


# Hierarchical example used by several tests (2-D, float64):
#   oar: a=(1,0), b=(-1,1)   a.b=-1 -> a'=(1,0)-(-1/2)(-1,1)=(0.5,0.5); b'=(-1,1)-(-1/1)(1,0)=(0,1)
#        G_oar = (0.5,1.5)
#   gtv: c=(0,-2) alone      G_gtv = (0,-2)
#   ctv: d=(1,1), e=(2,0)    d.e=2 >= 0, unchanged;  G_ctv = (3,1)
# Across groups (order oar, gtv, ctv; always against the ORIGINAL group gradients):
#   G_oar: vs G_gtv: dot=-3, |G_gtv|^2=4 -> (0.5,1.5)+(3/4)(0,-2) = (0.5,0)
#          vs G_ctv: (0.5,0).(3,1)=1.5 >= 0 -> (0.5,0)
#   G_gtv: vs G_oar: dot=-3, |G_oar|^2=2.5 -> (0,-2)+(3/2.5)(0.5,1.5) = (0.6,-0.2)
#          vs G_ctv: (0.6,-0.2).(3,1)=1.6 >= 0 -> (0.6,-0.2)   [the original G_gtv.G_ctv=-2 would
#          have projected: this pins the "running g_i, original g_j" variant]
#   G_ctv: vs G_oar: dot=3 >= 0; vs G_gtv: dot=-2, |G_gtv|^2=4 -> (3,1)+(1/2)(0,-2) = (3,0)
#   final = (0.5,0)+(0.6,-0.2)+(3,0) = (4.1,-0.2)
GROUPS = {"oar": ["a", "b"], "gtv": ["c"], "ctv": ["d", "e"]}
VECTORS = {"a": (1.0, 0.0), "b": (-1.0, 1.0), "c": (0.0, -2.0), "d": (1.0, 1.0), "e": (2.0, 0.0)}
EXPECTED = (4.1, -0.2)


def example_grads() -> dict[str, torch.Tensor]:
    return {k: t(*v) for k, v in VECTORS.items()}


# --- project_conflicting -------------------------------------------------------------------------


def test_two_conflicting_gradients_hand_values():
    g1, g2 = t(1, 0), t(-1, 1)
    p1, p2 = project_conflicting([g1, g2])
    assert close(p1, t(0.5, 0.5))
    assert close(p2, t(0, 1))
    # each is orthogonal to the other's original, and the projected pair no longer conflicts
    assert float(p1 @ g2) == pytest.approx(0.0, abs=1e-12)
    assert float(p2 @ g1) == pytest.approx(0.0, abs=1e-12)
    assert float(p1 @ p2) >= 0
    assert float(p1 @ p2) == pytest.approx(0.5)


def test_two_gradients_never_conflict_after_projection_random():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        g1, g2 = torch.randn(7, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen, dtype=torch.float64)
        p1, p2 = project_conflicting([g1, g2])
        assert float(p1 @ p2) >= -1e-12
        if float(g1 @ g2) >= 0:
            assert close(p1, g1) and close(p2, g2)


def test_non_conflicting_unchanged():
    grads = [t(1, 0, 0), t(1, 1, 0), t(0, 0, 3)]  # all pairwise dots >= 0
    out = project_conflicting(grads)
    for g, p in zip(grads, out):
        assert close(p, g)
        assert p is not g


def test_zero_gradient_handled():
    zero, g = t(0, 0), t(-1, 2)
    p_zero, p_g = project_conflicting([zero, g])
    assert close(p_zero, zero)
    assert close(p_g, g)
    assert torch.isfinite(p_zero).all() and torch.isfinite(p_g).all()
    assert close(project_conflicting([zero, zero])[0], zero)


def test_inputs_not_mutated():
    g1, g2 = t(1, 0), t(-1, 1)
    c1, c2 = g1.clone(), g2.clone()
    project_conflicting([g1, g2])
    hierarchical_surgery({"x": g1, "y": g2}, {"one": ["x", "y"]})
    assert torch.equal(g1, c1) and torch.equal(g2, c2)


def test_empty_and_single():
    assert project_conflicting([]) == []
    (only,) = project_conflicting([t(-3, 4)])
    assert close(only, t(-3, 4))


def test_projection_sequential_against_originals():
    # g0 = G_gtv, others in input order [G_oar, G_ctv]: see the hierarchical example above
    out = project_conflicting([t(0, -2), t(0.5, 1.5), t(3, 1)])
    assert close(out[0], t(0.6, -0.2))


def test_half_precision_keeps_dtype():
    out = project_conflicting([torch.tensor([1.0, 0.0], dtype=torch.bfloat16), torch.tensor([-1.0, 1.0], dtype=torch.bfloat16)])
    assert out[0].dtype == torch.bfloat16
    assert torch.allclose(out[0].float(), torch.tensor([0.5, 0.5]))


def test_generator_order_seeded_and_shuffled():
    grads = [t(0, -2), t(0.5, 1.5), t(3, 1)]
    # G_gtv against [G_oar, G_ctv] -> (0.6,-0.2) (above). Against [G_ctv, G_oar]:
    #   vs G_ctv: dot=-2, |G_ctv|^2=10 -> (0,-2)+(0.2)(3,1) = (0.6,-1.8)
    #   vs G_oar: (0.6,-1.8).(0.5,1.5) = 0.3-2.7 = -2.4 -> +(2.4/2.5)(0.5,1.5) = (0.6,-1.8)+(0.48,1.44) = (1.08,-0.36)
    outcomes = [t(0.6, -0.2), t(1.08, -0.36)]
    seen = set()
    for seed in range(32):
        a = project_conflicting(grads, torch.Generator().manual_seed(seed))
        b = project_conflicting(grads, torch.Generator().manual_seed(seed))
        assert all(torch.equal(x, y) for x, y in zip(a, b)), "same seed must give the same result"
        matches = [k for k, o in enumerate(outcomes) if torch.allclose(a[0], o, atol=1e-12)]
        assert len(matches) == 1, a[0]
        seen.add(matches[0])
    assert seen == {0, 1}, "a shuffled order must sometimes differ from the input order"
    # with only two gradients the order cannot matter
    two = project_conflicting([t(1, 0), t(-1, 1)], torch.Generator().manual_seed(3))
    assert close(two[0], t(0.5, 0.5)) and close(two[1], t(0, 1))


# --- hierarchical_surgery ------------------------------------------------------------------------


def test_hierarchical_three_groups_hand_values():
    out = hierarchical_surgery(example_grads(), GROUPS)
    assert close(out, t(*EXPECTED))
    assert out.dtype == torch.float64 and out.shape == (2,)


def test_hierarchical_singleton_groups_equal_flat_pcgrad_sum():
    grads = example_grads()
    groups = {k: [k] for k in grads}
    expected = torch.stack(project_conflicting(list(grads.values()))).sum(0)
    assert close(hierarchical_surgery(grads, groups), expected)


def test_hierarchical_generator_reproducible():
    g = example_grads()
    a = hierarchical_surgery(g, GROUPS, torch.Generator().manual_seed(7))
    b = hierarchical_surgery(g, GROUPS, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda g, gr: gr.update(gtv=["c", "a"]), "in both"),
        (lambda g, gr: gr.update(oar=["a", "b", "a"]), "twice"),
        (lambda g, gr: g.pop("e"), "no gradient"),
        (lambda g, gr: gr.update(ctv=["d"]), "in no group"),
        (lambda g, gr: gr.update(extra=[]), "empty"),
        (lambda g, gr: g.update(c=t(0, -2, 1)), "does not match"),
        (lambda g, gr: g.update(c=g["c"].float()), "does not match"),
        (lambda g, gr: g.update(c=t(0, -2).reshape(1, 2)), "flat"),
        (lambda g, gr: g.update(d=t(float("nan"), 1)), "NaN"),
        (lambda g, gr: g.update(d=t(float("inf"), 1)), "Inf"),
    ],
    ids=["two-groups", "twice-in-group", "missing-task", "ungrouped", "empty-group", "shape", "dtype", "not-flat", "nan", "inf"],
)
def test_hierarchical_validation(mutate, message):
    grads = example_grads()
    groups = {k: list(v) for k, v in GROUPS.items()}
    mutate(grads, groups)
    with pytest.raises(ValueError, match=message):
        hierarchical_surgery(grads, groups)


def test_hierarchical_validation_empty_inputs():
    with pytest.raises(ValueError, match="task_grads is empty"):
        hierarchical_surgery({}, {"oar": ["a"]})
    with pytest.raises(ValueError, match="groups is empty"):
        hierarchical_surgery({"a": t(1, 0)}, {})


# --- apply_surgery -------------------------------------------------------------------------------


def test_apply_surgery_linear_losses_hand_values():
    # two parameters of different shapes; L_task = p1[0]*v[0] + p2[0,0]*v[1] has gradient exactly v,
    # so the combined gradient is EXPECTED = (4.1,-0.2); p3 is used by no loss -> zero gradient
    p1 = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    p2 = torch.nn.Parameter(torch.zeros(1, 1, dtype=torch.float64))
    p3 = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    p1.grad = torch.full_like(p1, 99.0)  # stale gradient must be overwritten, not accumulated
    losses = {k: p1[0] * v[0] + p2[0, 0] * v[1] for k, v in VECTORS.items()}
    diag = apply_surgery([p1, p2, p3], losses, GROUPS)
    assert p1.grad.shape == (1,) and p2.grad.shape == (1, 1) and p3.grad.shape == (2, 2)
    assert p1.grad.item() == pytest.approx(4.1, abs=1e-12)
    assert p2.grad.item() == pytest.approx(-0.2, abs=1e-12)
    assert torch.equal(p3.grad, torch.zeros(2, 2, dtype=torch.float64))
    # diagnostics: within: a.b=-1 (conflict), d.e=2 -> 1; across: oar.gtv=-3, oar.ctv=3, gtv.ctv=-2 -> 2
    # cos(oar,gtv) = -3/(sqrt(2.5)*2); cos(oar,ctv) = 3/(sqrt(2.5)*sqrt(10)) = 0.6; cos(gtv,ctv) = -2/(2*sqrt(10))
    assert diag["conflicts_within"] == 1
    assert diag["conflicts_across"] == 2
    cos = diag["cosine_across"]
    assert set(cos) == {"oar/gtv", "oar/ctv", "gtv/ctv"}
    assert cos["oar/gtv"] == pytest.approx(-3 / (math.sqrt(2.5) * 2))
    assert cos["oar/ctv"] == pytest.approx(0.6)
    assert cos["gtv/ctv"] == pytest.approx(-1 / math.sqrt(10))
    assert diag["grad_norm"] == pytest.approx(math.hypot(4.1, 0.2))
    assert all(type(diag[k]) is int for k in ("conflicts_within", "conflicts_across"))
    assert type(diag["grad_norm"]) is float and all(type(v) is float for v in cos.values())


def test_apply_surgery_unused_and_constant_losses_give_zeros():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    v = torch.nn.Parameter(torch.tensor([3.0]))
    losses = {"x": (w * t(1, -1).float()).sum(), "y": torch.tensor(5.0)}  # y reaches no parameter
    apply_surgery([w, v], losses, {"g1": ["x"], "g2": ["y"]})
    assert torch.allclose(w.grad, torch.tensor([1.0, -1.0]))
    assert torch.equal(v.grad, torch.zeros(1))


def test_apply_surgery_rejects_bad_inputs():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="scalar"):
        apply_surgery([w], {"x": w * 2}, {"g": ["x"]})
    with pytest.raises(ValueError, match="empty"):
        apply_surgery([], {"x": w.sum()}, {"g": ["x"]})
    with pytest.raises(ValueError, match="no gradient"):
        apply_surgery([w], {"x": w.sum()}, {"g": ["x", "z"]})
    with pytest.raises(ValueError, match="NaN"):
        apply_surgery([w], {"x": w.sum() * float("nan")}, {"g": ["x"]})


class ToyMultiTask(torch.nn.Module):
    """Shared linear trunk with one linear head per task."""

    def __init__(self, tasks: list[str], d_in: int = 4, d_hidden: int = 4) -> None:
        super().__init__()
        self.trunk = torch.nn.Linear(d_in, d_hidden)
        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(d_hidden, 1) for k in tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {k: head(h).squeeze(-1) for k, head in self.heads.items()}


TOY_GROUPS = {"oar": ["o1", "o2"], "gtv": ["g"], "ctv": ["c"]}


def toy_problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=gen)
    w = torch.randn(4, generator=gen)
    # o2 and c are the exact opposites of o1 / g: with identical head initialisations they conflict
    targets = {"o1": x @ w, "o2": -(x @ w), "g": x[:, 0] - x[:, 1], "c": -(x[:, 0] - x[:, 1]) + 0.5 * x[:, 2]}
    torch.manual_seed(seed)
    model = ToyMultiTask(list(targets))
    with torch.no_grad():  # identical heads so the opposite targets really pull the trunk apart
        for head in list(model.heads.values())[1:]:
            head.load_state_dict(model.heads["o1"].state_dict())
    return model, x, targets


def toy_losses(model: ToyMultiTask, x: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    pred = model(x)
    return {k: torch.nn.functional.mse_loss(pred[k], targets[k]) for k in targets}


def test_apply_surgery_grad_matches_hierarchical_on_model():
    model, x, targets = toy_problem()
    shared = list(model.trunk.parameters())
    losses = toy_losses(model, x, targets)
    flat = {}
    for k, loss in losses.items():
        gs = torch.autograd.grad(loss, shared, retain_graph=True)
        flat[k] = torch.cat([g.reshape(-1) for g in gs])
    expected = hierarchical_surgery(flat, TOY_GROUPS)
    naive = torch.stack(list(flat.values())).sum(0)
    diag = apply_surgery(shared, losses, TOY_GROUPS)
    assert diag["conflicts_within"] >= 1, "the toy problem is meant to have conflicting gradients"
    assert not torch.allclose(expected, naive), "surgery should change the update here"
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    assert torch.allclose(got, expected, atol=1e-7, rtol=0)
    assert model.trunk.weight.grad.shape == model.trunk.weight.shape
    assert all(p.grad is None for p in model.heads.parameters()), "heads are not touched"


def test_short_cpu_training_run_decreases_every_task_loss():
    torch.manual_seed(0)
    model, x, targets = toy_problem()
    shared = list(model.trunk.parameters())
    heads = list(model.heads.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        initial = {k: float(v) for k, v in toy_losses(model, x, targets).items()}
    conflicts = 0
    for _ in range(50):
        opt.zero_grad(set_to_none=True)
        losses = toy_losses(model, x, targets)
        diag = apply_surgery(shared, losses, TOY_GROUPS, generator=gen)
        sum(losses.values()).backward(inputs=heads)  # heads: plain per-task gradients
        conflicts += diag["conflicts_within"] + diag["conflicts_across"]
        opt.step()
    with torch.no_grad():
        final = {k: float(v) for k, v in toy_losses(model, x, targets).items()}
    assert conflicts > 0
    for k in targets:
        assert math.isfinite(final[k])
        assert final[k] < 0.5 * initial[k], (k, initial[k], final[k])
