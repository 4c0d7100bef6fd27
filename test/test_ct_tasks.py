"""CT and multi-target tasks: profiles, piece/region encoding of overlapping structures, nesting,
4D stacks, CT pair / MRI input validation (named errors, nothing written) and MRI resampling."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.errors import TaskSelectionError
from hnseg.load.case import load_case
from hnseg.postprocess.nesting import enforce_nesting
from hnseg.tasks import TASKS, detect_task, get_task
from hnseg.tasks.encoding import StructureEncoding, pieces_to_stack
from hnseg.tasks.npc import NPC_STRUCTURES, TStageOutput
from hnseg.training.pieces import build_encoding, count_codes, encode, membership_codes
from hnseg.write.stack import stack_image, unstack
from test_inputs import nothing_written, run_inprocess, write_case

# The SegRap 2023 task-1 volume order, copied from the challenge page (shared/reference/challenges.md).
SEGRAP_ORDER = """Brain, BrainStem, Chiasm, TemporalLobe_L, TemporalLobe_R, Hippocampus_L,
Hippocampus_R, Eye_L, Eye_R, Lens_L, Lens_R, OpticNerve_L, OpticNerve_R, MiddleEar_L, MiddleEar_R,
IAC_L, IAC_R, TympanicCavity_L, TympanicCavity_R, VestibulSemi_L, VestibulSemi_R, Cochlea_L,
Cochlea_R, ETbone_L, ETbone_R, Pituitary, OralCavity, Mandible_L, Mandible_R, Submandibular_L,
Submandibular_R, Parotid_L, Parotid_R, Mastoid_L, Mastoid_R, TMjoint_L, TMjoint_R, SpinalCord,
Esophagus, Larynx, Larynx_Glottic, Larynx_Supraglot, PharynxConst, Thyroid, Trachea"""
CT, CE = "head-neck-ct", "head-neck-contrast-enhanced-ct"
MRI = "head-neck-t1w-mri"


def test_segrap_profiles_have_the_challenge_sockets_and_order():
    order = tuple(s.strip() for s in SEGRAP_ORDER.replace("\n", " ").split(","))
    t1, t2 = get_task("segrap-task1"), get_task("segrap-task2")
    assert len(order) == 45
    (o1,), (o2,) = t1.outputs, t2.outputs
    assert (o1.slug, o1.kind, o1.structures) == ("head-neck-segmentation", "binary-stack", order)
    assert (o2.slug, o2.kind, o2.structures) == ("gross-tumor-volume-segmentation", "binary-stack",
                                                 ("GTVp", "GTVnd"))
    for t in (t1, t2):
        assert [s.slug for s in t.inputs] == [CT, CE]
        assert t.socket(CE).same_grid_as == CT
        assert [c.name for c in t.channels] == ["CT", "CT"]  # nnU-Net's CT normalization per phase


def test_npc_profile_outputs_and_groups():
    t = get_task("npc-targets")
    assert [o.slug for o in t.outputs] == ["npc-target-segmentation", "t-stage"]
    assert t.outputs[0].structures == NPC_STRUCTURES and NPC_STRUCTURES[-4:] == ("GTVp", "GTVn", "CTV70", "CTV63")
    assert t.socket(MRI).resample_to == CT
    assert set(t.task_groups) == {"oar", "gtv", "ctv"} and t.t_stage.classes == ("T1", "T2", "T3", "T4")
    assert set(t.nested) == {("GTVp", "CTV70"), ("GTVn", "CTV70"), ("CTV70", "CTV63")}


def test_task_detection_for_ct_inputs():
    with pytest.raises(TaskSelectionError, match="segrap-task1.*segrap-task2.*--task"):
        detect_task([CT, CE])
    assert detect_task([CT, MRI]).name == "npc-targets"
    with pytest.raises(TaskSelectionError):
        detect_task([CE])  # the contrast phase alone matches nothing
    assert set(TASKS) >= {"segrap-task1", "segrap-task2", "npc-targets"}


def _masks(shape=(4, 12, 12)):
    names = ("Brain", "BrainStem", "Eye", "Lens", "Parotid", "Mandible")
    m = {n: np.zeros(shape, bool) for n in names}
    m["Brain"][:, :6, :6] = 1
    m["BrainStem"][:, 1:3, 1:3] = 1          # contained
    m["Eye"][:, 7:10, 0:3] = 1
    m["Lens"][:, 8, 1] = 1                    # contained
    m["Parotid"][:, 7:12, 6:10] = 1
    m["Mandible"][:, 11, 9:12] = 1            # 4 voxels overlap the parotid (a contour overlap)
    return names, m


def test_pieces_round_trip_overlapping_structures_exactly():
    names, m = _masks()
    codes = membership_codes([m[n] for n in names])
    enc, value = build_encoding(count_codes(codes), names, "pieces", min_fraction=0.01)
    assert [p.name for p in enc.pieces] == ["Brain", "Brain+BrainStem", "Eye", "Eye+Lens", "Parotid",
                                            "Parotid+Mandible", "Mandible"]
    stack = pieces_to_stack(encode(codes, value), enc)
    for i, n in enumerate(names):
        assert np.array_equal(stack[i] > 0, m[n]), n
    assert enc.nnunet_labels()["Eye+Lens"] == 4
    regions = build_encoding(count_codes(codes), names, "regions")[0].nnunet_labels()
    assert regions["Brain"] == [1, 2] and regions["BrainStem"] == [2] and regions["Mandible"] == [6, 7]


def test_rare_overlap_is_merged_into_its_largest_kept_piece():
    names, m = _masks()
    codes = membership_codes([m[n] for n in names])
    counts = count_codes(codes)
    # the 4 parotid+mandible voxels are < 50 % of the mandible's 12 voxels → merged
    enc, value = build_encoding(counts, names, "pieces", min_fraction=0.5)
    assert "Parotid+Mandible" not in [p.name for p in enc.pieces]
    stack = pieces_to_stack(encode(codes, value), enc)
    parotid, mandible = names.index("Parotid"), names.index("Mandible")
    # tie (both single structures) → the structure later in the order (Mandible) keeps them
    assert stack[mandible].sum() == m["Mandible"].sum()
    assert stack[parotid].sum() == m["Parotid"].sum() - 4
    with pytest.raises(ValueError, match="not in the piece table"):
        encode(np.array([1 << 40], dtype=np.uint64), value)


def test_encoding_model_rejects_inconsistent_tables():
    with pytest.raises(ValueError, match="without any piece"):
        StructureEncoding(mode="pieces", structures=("A", "B"), pieces=({"value": 1, "members": ("A",)},))
    with pytest.raises(ValueError, match="1..N"):
        StructureEncoding(mode="pieces", structures=("A",), pieces=({"value": 2, "members": ("A",)},))


def test_nesting_grows_outer_structures_through_the_chain():
    s = ("GTVp", "GTVn", "CTV70", "CTV63")
    stack = np.zeros((4, 1, 6, 6), np.uint8)
    stack[0, 0, 0:2, 0:2] = 1      # GTVp outside both CTVs
    stack[1, 0, 4, 4] = 1          # GTVn inside CTV70 only
    stack[2, 0, 3:6, 3:6] = 1
    stack[3, 0, 4:6, 4:6] = 1      # CTV63 smaller than CTV70
    added = enforce_nesting(stack, s, (("GTVp", "CTV70"), ("GTVn", "CTV70"), ("CTV70", "CTV63")))
    assert added == {"CTV70": 4, "CTV63": 9}
    assert np.all(stack[2] >= stack[0]) and np.all(stack[2] >= stack[1]) and np.all(stack[3] >= stack[2])
    assert stack[0].sum() == 4 and stack[1].sum() == 1  # GTVs never shrink


def test_stack_image_keeps_the_reference_grid():
    ref = sitk.Image([5, 4, 3], sitk.sitkInt16)
    ref.SetSpacing((0.7, 0.8, 3.0))
    ref.SetOrigin((-10.0, 20.0, 5.5))
    ref.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    masks = (np.random.default_rng(0).random((45, 3, 4, 5)) > 0.5).astype(np.uint8)
    img = stack_image(masks, ref)
    assert img.GetDimension() == 4 and img.GetSize() == (5, 4, 3, 45)
    assert img.GetPixelID() == sitk.sitkUInt8
    assert img.GetSpacing() == (0.7, 0.8, 3.0, 1.0) and img.GetOrigin() == (-10.0, 20.0, 5.5, 0.0)
    back, grid = unstack(img)
    assert np.array_equal(back, masks)
    assert grid.GetDirection() == ref.GetDirection() and grid.GetSpacing() == ref.GetSpacing()
    with pytest.raises(ValueError, match="expected"):
        stack_image(masks[:, :2], ref)


def test_t_stage_output_model():
    out = TStageOutput.from_probabilities([1, 2, 3, 14])
    assert out.t_stage == "T4" and abs(sum(out.probabilities.values()) - 1) <= 1e-6
    assert out.probabilities["T1"] == 0.05
    with pytest.raises(ValueError, match="most probable"):
        TStageOutput(t_stage="T1", probabilities={"T1": 0.1, "T2": 0.2, "T3": 0.3, "T4": 0.4})
    with pytest.raises(ValueError, match="sum to 1"):
        TStageOutput(t_stage="T4", probabilities={"T1": 0.1, "T2": 0.2, "T3": 0.3, "T4": 0.5})
    with pytest.raises(ValueError, match="keys"):
        TStageOutput(t_stage="T1", probabilities={"T1": 1.0})


# --- input validation ---------------------------------------------------------------------------------
def ct(size=(20, 18, 10), spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, 0.0), value=None, dtype=np.int16):
    if value is None:  # soft tissue, and air (-1000 HU) in the first rows, as every head-and-neck CT has
        a = np.random.default_rng(1).integers(-200, 200, size[::-1]).astype(dtype)
        a[:, :2, :] = -1000
    else:
        a = value
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def mri(origin=(3.0, -2.0, 4.0), spacing=(0.5, 0.5, 4.0), size=(30, 30, 6)):
    z, y, x = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    img = sitk.GetImageFromArray((x * spacing[0] + origin[0]).astype(np.float32))  # value = world x (mm)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


@pytest.fixture
def npc():
    return get_task("npc-targets")


def test_mri_on_another_grid_is_resampled_onto_the_ct_grid(tmp_path, npc):
    files = {}
    for slug, img in ((CT, ct()), (MRI, mri())):
        files[slug] = tmp_path / f"{slug}.mha"
        sitk.WriteImage(img, str(files[slug]))
    case = load_case(npc, files)
    ref = case.reference
    out = case.images[MRI]
    assert out.GetSize() == ref.GetSize() and out.GetSpacing() == ref.GetSpacing()
    assert out.GetOrigin() == ref.GetOrigin()
    a = case.array(MRI)
    # the MRI's value is its world x: inside its extent the resampled value is the CT voxel's world x
    assert a[2, 5, 8] == pytest.approx(8.0, abs=1e-4)
    assert a[2, 5, 1] == 0.0  # x = 1 mm lies outside the MRI (starts at 3 mm - 0.25): default 0


@pytest.mark.parametrize("sockets, error, mention", [
    pytest.param({CT: ct(), CE: ct(spacing=(1.0, 1.0, 2.5))}, "GridMismatchError", [CE, "spacing"],
                 id="ct-pair-different-grids"),
    pytest.param({CT: ct(), CE: ct(origin=(0.0, 5.0, 0.0))}, "GridMismatchError", [CE, "origin"],
                 id="ct-pair-shifted"),
    pytest.param({CT: ct()}, "MissingInputError", [CE], id="missing-contrast-phase"),
    pytest.param({CE: ct()}, "TaskSelectionError", [CE], id="missing-non-contrast-phase"),
])
def test_bad_segrap_inputs(sockets, error, mention, tmp_path, capsys):
    in_dir = write_case(tmp_path / "in", sockets)
    out = tmp_path / "out"
    res = run_inprocess(in_dir, out, tmp_path / "noweights", ["--task", "segrap-task1"]
                        if error != "TaskSelectionError" else [], capsys)
    _assert_named_failure(res, error, mention, out)


@pytest.mark.parametrize("sockets, error, mention", [
    pytest.param({CT: ct(), MRI: mri(origin=(500.0, 0.0, 0.0))}, "ImageOverlapError",
                 [MRI, "found 0.0%"], id="mri-not-overlapping"),
    pytest.param({CT: ct()}, "MissingInputError", [MRI], id="missing-mri"),
])
def test_bad_npc_inputs(sockets, error, mention, tmp_path, capsys):
    in_dir = write_case(tmp_path / "in", sockets)
    out = tmp_path / "out"
    res = run_inprocess(in_dir, out, tmp_path / "noweights", ["--task", "npc-targets"], capsys)
    _assert_named_failure(res, error, mention, out)


def _assert_named_failure(res, error: str, mention: list[str], out) -> None:
    assert res.rc == 2
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{error}: ")
    for m in mention:
        assert m in line
    assert nothing_written(out)


def test_left_right_mirroring_rule_for_lateralised_labels():
    from hnseg.training.trainers.dice_focal import nnUNetTrainerDiceFocal
    from hnseg.training.trainers.lateral import lateralised
    from hnseg.training.trainers.multitask import nnUNetTrainerHnsegMultiTask

    assert lateralised(get_task("segrap-task1").structures)          # Parotid_L … → no LR mirroring
    assert lateralised(["background", "Brain", "Eye_L+Lens_L"])      # piece names count too
    assert not lateralised(["background", "GTVp", "GTVnd"])          # task 2 keeps nnU-Net's mirroring
    assert not lateralised(["LARYNX", "Lens"])
    assert nnUNetTrainerDiceFocal.exclude_left_right_mirroring is None   # decided by the labels
    assert nnUNetTrainerHnsegMultiTask.exclude_left_right_mirroring is True
