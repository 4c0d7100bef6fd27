"""The task-profile registry: registered tasks, task detection, profile validation, derived views,
and a hypothetical CT profile built from the same models (not registered)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hnseg.errors import TaskSelectionError
from hnseg.tasks import (
    TASKS, ChannelSpec, InputSocket, Label, OutputSocket, TaskProfile, detect_task, get_task,
)
from hnseg.tasks.hntsmrg import HNTSMRG_TASK1, HNTSMRG_TASK2

MID_T2 = "mid-rt-t2w-head-neck"
REG_MASK = "registered-pre-rt-head-neck-segmentation"
REG_T2 = "registered-pre-rt-head-neck"
PRE_T2 = "pre-rt-t2w-head-neck"
PRE_MASK = "pre-rt-head-neck-segmentation"
ALL_TASK2 = (MID_T2, REG_MASK, REG_T2, PRE_T2, PRE_MASK)
OUTPUT_SLUG = "mri-head-neck-segmentation"


# --- registry ------------------------------------------------------------------------------------
def test_all_tasks_registered():
    assert set(TASKS) == {"hntsmrg-task1", "hntsmrg-task2", "segrap-task1", "segrap-task2", "npc-targets"}
    assert get_task("hntsmrg-task1") is HNTSMRG_TASK1
    assert get_task("hntsmrg-task2") is HNTSMRG_TASK2


def test_get_unknown_task_names_the_choices():
    with pytest.raises(TaskSelectionError) as exc:
        get_task("segrap")
    assert str(exc.value) == ("unknown task 'segrap': expected one of ['hntsmrg-task1', 'hntsmrg-task2', "
                                "'npc-targets', 'segrap-task1', 'segrap-task2']")
    assert exc.value.name == "TaskSelectionError" and exc.value.exit_code == 2


def test_task_sockets_match_the_challenge():
    assert [s.slug for s in HNTSMRG_TASK1.inputs] == [PRE_T2]
    assert HNTSMRG_TASK1.required_slugs == (PRE_T2,)
    assert {s.slug for s in HNTSMRG_TASK2.inputs} == set(ALL_TASK2)
    assert HNTSMRG_TASK2.required_slugs == (MID_T2, REG_MASK)
    assert HNTSMRG_TASK2.socket(REG_MASK).same_grid_as == MID_T2
    assert HNTSMRG_TASK2.socket(REG_T2).same_grid_as == MID_T2
    assert HNTSMRG_TASK2.socket(PRE_MASK).same_grid_as == PRE_T2
    assert HNTSMRG_TASK2.socket(REG_MASK).mask_labels == (0, 1, 2)
    assert HNTSMRG_TASK2.socket(REG_MASK).relative_path == f"images/{REG_MASK}"
    with pytest.raises(KeyError):
        HNTSMRG_TASK2.socket("nope")
    for task in (HNTSMRG_TASK1, HNTSMRG_TASK2):
        assert [(o.slug, o.kind, o.relative_path, o.filename) for o in task.outputs] == [
            (OUTPUT_SLUG, "label-map", f"images/{OUTPUT_SLUG}", "output.mha")
        ]
    assert HNTSMRG_TASK1.reference_socket == PRE_T2
    assert HNTSMRG_TASK2.reference_socket == MID_T2


# --- detection -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "present, expected",
    [
        (ALL_TASK2, "hntsmrg-task2"),  # the real task-2 case: mid-RT with every pre-RT socket
        ((MID_T2, REG_MASK), "hntsmrg-task2"),
        ((MID_T2, REG_MASK, PRE_T2), "hntsmrg-task2"),
        ((PRE_T2,), "hntsmrg-task1"),
        ((PRE_T2, PRE_MASK), "hntsmrg-task1"),  # task 2's required sockets absent
        ((PRE_T2, "some-unknown-socket"), "hntsmrg-task1"),
    ],
)
def test_detect_task(present, expected):
    assert detect_task(present).name == expected
    assert detect_task(iter(present)).name == expected  # any iterable


@pytest.mark.parametrize("present", [(), (MID_T2,), (REG_MASK, REG_T2), ("ct-head-neck",)])
def test_detect_task_no_match(present):
    with pytest.raises(TaskSelectionError) as exc:
        detect_task(present)
    msg = str(exc.value)
    assert msg.startswith(f"no task matches the input sockets {sorted(present)}")
    assert f"hntsmrg-task1: ['{PRE_T2}']" in msg
    assert f"hntsmrg-task2: ['{MID_T2}', '{REG_MASK}']" in msg


def test_detect_task_ambiguous_asks_for_task_flag(monkeypatch):
    twin = HNTSMRG_TASK1.model_copy(update={"name": "hntsmrg-task1-twin"})
    monkeypatch.setitem(TASKS, twin.name, twin)
    with pytest.raises(TaskSelectionError) as exc:
        detect_task([PRE_T2])
    assert "match several tasks ['hntsmrg-task1', 'hntsmrg-task1-twin']" in str(exc.value)
    assert "--task" in str(exc.value)
    # the real task-2 set still resolves uniquely
    assert detect_task(ALL_TASK2).name == "hntsmrg-task2"


# --- derived views -------------------------------------------------------------------------------
def test_used_slugs():
    assert HNTSMRG_TASK1.used_slugs == (PRE_T2,)
    assert HNTSMRG_TASK2.used_slugs == (MID_T2, REG_MASK)  # deduplicated, reference first


def test_label_map():
    assert HNTSMRG_TASK1.label_map == {"GTVp": 1, "GTVn": 2}
    assert HNTSMRG_TASK2.label_map == {"GTVp": 1, "GTVn": 2}
    assert list(HNTSMRG_TASK2.label_map) == ["GTVp", "GTVn"]


def test_prior_channel():
    assert HNTSMRG_TASK1.prior_channel is None
    prior = HNTSMRG_TASK2.prior_channel
    assert prior == ChannelSpec(name="prior", source="prior", socket=MID_T2, mask_socket=REG_MASK)
    assert [c.name for c in HNTSMRG_TASK2.channels] == ["T2", "prior"]


def test_profiles_are_frozen():
    with pytest.raises(ValidationError):
        HNTSMRG_TASK2.name = "x"  # type: ignore[misc]


# --- validation ----------------------------------------------------------------------------------
def _profile(**overrides) -> TaskProfile:
    fields = dict(
        name="t",
        title="test",
        inputs=(InputSocket(slug="img", kind="image", modality="T2w MRI"),
                InputSocket(slug="msk", kind="mask", modality="label map", same_grid_as="img")),
        reference_socket="img",
        channels=(ChannelSpec(name="T2", source="image", socket="img"),
                  ChannelSpec(name="prior", source="prior", socket="img", mask_socket="msk")),
        labels=(Label(name="a", value=1), Label(name="b", value=2)),
        outputs=(OutputSocket(slug="out", kind="label-map", structures=("a", "b")),),
    )
    fields.update(overrides)
    return TaskProfile(**fields)


def test_minimal_profile_is_valid():
    p = _profile()
    assert p.used_slugs == ("img", "msk")
    assert p.required_slugs == ("img", "msk")


@pytest.mark.parametrize(
    "overrides, unknown",
    [
        (dict(reference_socket="ghost"), "ghost"),
        (dict(inputs=(InputSocket(slug="img", kind="image", modality="MRI"),
                      InputSocket(slug="msk", kind="mask", modality="lm", same_grid_as="ghost"))), "ghost"),
        (dict(channels=(ChannelSpec(name="T2", source="image", socket="ghost"),)), "ghost"),
        (dict(channels=(ChannelSpec(name="p", source="prior", socket="img", mask_socket="ghost"),)), "ghost"),
    ],
    ids=["reference_socket", "same_grid_as", "channel.socket", "channel.mask_socket"],
)
def test_unknown_socket_reference_rejected(overrides, unknown):
    with pytest.raises(ValidationError) as exc:
        _profile(**overrides)
    assert f"t: unknown sockets referenced: ['{unknown}']" in str(exc.value)


@pytest.mark.parametrize("values", [(1, 3), (2,), (2, 1), (1, 1), (0, 1)])
def test_non_consecutive_labels_rejected(values):
    with pytest.raises(ValidationError) as exc:
        _profile(labels=tuple(Label(name=f"s{i}", value=v) for i, v in enumerate(values)))
    if 0 not in values:  # value 0 is refused by Label itself (ge=1)
        assert f"label values must be 1..N in order, got {list(values)}" in str(exc.value)


def test_duplicate_input_slugs_rejected():
    img = InputSocket(slug="img", kind="image", modality="MRI")
    with pytest.raises(ValidationError, match="duplicate input slugs"):
        _profile(inputs=(img, img), channels=(ChannelSpec(name="T2", source="image", socket="img"),))


def test_prior_channel_needs_mask_socket():
    with pytest.raises(ValidationError, match="prior channel 'p' needs mask_socket"):
        ChannelSpec(name="p", source="prior", socket="img")


def test_unknown_fields_and_kinds_rejected():
    with pytest.raises(ValidationError):
        InputSocket(slug="x", kind="image", modality="MRI", colour="red")
    with pytest.raises(ValidationError):
        InputSocket(slug="x", kind="volume", modality="MRI")
    with pytest.raises(ValidationError):
        OutputSocket(slug="o", kind="mesh")
    with pytest.raises(ValidationError):
        Label(name="x", value=256)


# --- a hypothetical CT task built from the same models -------------------------------------------
def test_hypothetical_ct_profile_needs_no_code_changes():
    structures = tuple(f"OAR{i:02d}" for i in range(1, 46))
    ct = TaskProfile(
        name="segrap-oars",
        title="45 organs at risk on non-contrast + contrast CT",
        inputs=(
            InputSocket(slug="head-neck-ct", kind="image", modality="CT"),
            InputSocket(slug="head-neck-contrast-ct", kind="image", modality="CT",
                        same_grid_as="head-neck-ct"),
        ),
        reference_socket="head-neck-ct",
        channels=(
            ChannelSpec(name="CT", source="image", socket="head-neck-ct"),
            ChannelSpec(name="CT", source="image", socket="head-neck-contrast-ct"),
        ),
        labels=tuple(Label(name=s, value=i) for i, s in enumerate(structures, start=1)),
        outputs=(OutputSocket(slug="head-neck-oars", kind="binary-stack", structures=structures),),
    )
    assert len(ct.channels) == 2 and all(c.name == "CT" for c in ct.channels)
    assert ct.prior_channel is None
    assert ct.required_slugs == ("head-neck-ct", "head-neck-contrast-ct")
    assert ct.used_slugs == ("head-neck-ct", "head-neck-contrast-ct")
    assert len(ct.label_map) == 45
    assert ct.label_map["OAR01"] == 1 and ct.label_map["OAR45"] == 45
    out = ct.outputs[0]
    assert out.kind == "binary-stack" and len(out.structures) == 45
    assert out.relative_path == "images/head-neck-oars"
    # built, not registered: the registry and detection are unchanged
    assert "segrap-oars" not in TASKS
    with pytest.raises(TaskSelectionError):
        detect_task(["head-neck-ct", "head-neck-contrast-ct"])


def test_incomplete_task2_inputs_are_refused_not_run_as_task1():
    from hnseg.errors import TaskSelectionError
    from hnseg.tasks import detect_task

    present = ["mid-rt-t2w-head-neck", "pre-rt-t2w-head-neck", "registered-pre-rt-head-neck",
               "pre-rt-head-neck-segmentation"]
    with pytest.raises(TaskSelectionError, match=r"\['mid-rt-t2w-head-neck'\] belong to hntsmrg-task2, which "
                       r"also needs \['registered-pre-rt-head-neck-segmentation'\]"):
        detect_task(present)
