"""``hnseg batch`` (hospital batch mode, increment 1): discovery, sharding, one model load over many
phantom patients, per-case failures, atomic case folders, --resume after an interruption.

The acceptance of issue 5 is ``first_run`` + tests 1 and 2: one batch over 8 phantom patients in mixed
formats (release-layout .nii.gz, .mha, .nii, a DICOM series folder) with corrupt cases (truncated .mha,
truncated .nii.gz) and an ambiguous one finishes the good cases, names each bad one with its error,
exits 1; a rerun with --resume does no work for the finished cases.

The demo weights of hntsmrg-task1 (fold 0, no TTA, CPU) on small phantoms keep this file fast.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hnseg.batch import run as batch_run
from hnseg.batch.discover import discover_cases, find_case_files, read_manifest
from hnseg.batch.shard import parse_shard, select_shard
from hnseg.cli import main
from hnseg.errors import AmbiguousInputError, MissingInputError, SettingsError
from hnseg.io.read import read_image
from hnseg.phantoms import make_mri_case, write_hntsmrg_release
from hnseg.phantoms.dicom import write_dicom_series
from hnseg.tasks import get_task
from hnseg.tasks.hntsmrg import MID_T2, PRE_MASK, PRE_T2, REG_MASK, REG_T2

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "hntsmrg-task1"
TASK1, TASK2 = get_task("hntsmrg-task1"), get_task("hntsmrg-task2")
OUT_SLUG = "mri-head-neck-segmentation"
FAST = ["--task", "hntsmrg-task1", "--weights", str(WEIGHTS), "--device", "cpu", "--tta", "off", "--folds", "0"]
SIZE, SPACING = (64, 64, 24), (2.5, 2.5, 4.0)
GOOD = ["p1", "p2", "p3", "p4", "p5"]
ALL = ["amb", "bad", "badgz", *GOOD]


def _float(img: sitk.Image) -> sitk.Image:
    return sitk.Cast(img, sitk.sitkFloat32)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def batch_in(tmp_path_factory) -> Path:
    """p1, p2: HNTS-MRG release layout (.nii.gz); p3: <slug>.mha; p4: <slug>.nii; p5: <slug>/ a DICOM
    MR series; bad: a truncated .mha; badgz: a truncated .nii.gz; amb: the same socket as .nii.gz and .mha."""
    root = tmp_path_factory.mktemp("batch") / "in"
    cases = [make_mri_case(20 + i, f"p{i}", size=SIZE, spacing=SPACING) for i in range(1, 7)]
    write_hntsmrg_release(cases[:2], root)
    for case, name in ((cases[2], "p3/pre-rt-t2w-head-neck.mha"), (cases[3], "p4/pre-rt-t2w-head-neck.nii"),
                       (cases[4], "bad/pre-rt-t2w-head-neck.mha"), (cases[4], "badgz/pre-rt-t2w-head-neck.nii.gz"),
                       (cases[4], "amb/pre-rt-t2w-head-neck.mha"), (cases[4], "amb/pre-rt-t2w-head-neck.nii.gz")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(_float(case.pre_t2), str(root / name))
    write_dicom_series(sitk.Cast(sitk.Round(cases[5].pre_t2), sitk.sitkInt16), root / "p5" / PRE_T2, "MR",
                       series_description="T2", uids={"seed": "test_batch-p5"})
    _truncate(root / "bad" / "pre-rt-t2w-head-neck.mha")
    _truncate(root / "badgz" / "pre-rt-t2w-head-neck.nii.gz")
    return root


def _input_file(batch_in: Path, case: str) -> Path:
    return find_case_files(TASK1, batch_in / case)[PRE_T2]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if ".tmp-" in p.name or ".part" in p.name or ".old-" in p.name]


@pytest.fixture(scope="module")
def first_run(batch_in) -> tuple[int, Path, dict]:
    before = _snapshot(batch_in)
    out = batch_in.parent / "out"
    rc = main(["batch", "-i", str(batch_in), "-o", str(out), *FAST])
    assert _snapshot(batch_in) == before, "batch mode wrote into its input folder"
    return rc, out, before


@pytest.fixture
def manifest(batch_in) -> Path:
    """The four good cases as a manifest (paths relative to the CSV's folder)."""
    path = batch_in.parent / "good.csv"
    lines = ["case_id,pre-rt-t2w-head-neck"]
    lines += [f"{c},{_input_file(batch_in, c).relative_to(path.parent).as_posix()}" for c in GOOD]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- 1. a mixed batch with a corrupt and an ambiguous case ---------------------------------------
def test_batch_finishes_good_cases_and_names_the_bad_ones(first_run, batch_in):
    rc, out, _ = first_run
    assert rc == 1
    rows = _rows(out / "batch_summary.csv")
    assert list(rows) == ALL
    assert [rows[c]["status"] for c in GOOD] == ["ok"] * len(GOOD)
    assert rows["bad"]["status"] == "failed" and rows["bad"]["error_class"] == "UnreadableImageError"
    assert "pre-rt-t2w-head-neck.mha" in rows["bad"]["error_message"]
    assert rows["badgz"]["status"] == "failed" and rows["badgz"]["error_class"] == "UnreadableImageError"
    assert "pre-rt-t2w-head-neck.nii.gz" in rows["badgz"]["error_message"]
    assert "truncated" in rows["badgz"]["error_message"]
    assert rows["amb"]["status"] == "failed" and rows["amb"]["error_class"] == "AmbiguousInputError"
    assert "pre-rt-t2w-head-neck.mha" in rows["amb"]["error_message"]
    assert "pre-rt-t2w-head-neck.nii.gz" in rows["amb"]["error_message"]
    assert not any((out / c).exists() for c in ("amb", "bad", "badgz"))
    assert _leftovers(out) == []
    weights_sha = hashlib.sha256((WEIGHTS / "hnseg_weights.json").read_bytes()).hexdigest()
    assert _input_file(batch_in, "p5").is_dir()  # the DICOM case
    for case in GOOD:
        src = read_image(_input_file(batch_in, case))
        nii = sitk.ReadImage(str(out / case / f"{OUT_SLUG}.nii.gz"))
        mha = sitk.ReadImage(str(out / case / f"{OUT_SLUG}.mha"))
        for img in (nii, mha):  # on the input grid
            assert img.GetSize() == src.GetSize()
            assert np.allclose(img.GetSpacing(), src.GetSpacing(), atol=1e-5)
            assert np.allclose(img.GetOrigin(), src.GetOrigin(), atol=1e-4)
            assert np.allclose(img.GetDirection(), src.GetDirection(), atol=1e-6)
        labels = sitk.GetArrayFromImage(mha)
        assert np.array_equal(sitk.GetArrayFromImage(nii), labels)
        assert (out / case).stat().st_mode & 0o005 == 0o005  # others may read the case folder (umask 022)
        report = json.loads((out / case / "report.json").read_text())
        assert report["task"] == "hntsmrg-task1" and report["case_id"] == case
        assert report["inputs"] == {PRE_T2: str(_input_file(batch_in, case).resolve())}
        assert report["weights"]["metadata_sha256"] == weights_sha
        assert report["settings"]["folds_used"] == [0] and report["settings"]["tta"] == "off"
        assert set(report["timings"]) == {"load_s", "segment_s", "write_s"}
        voxel_cc = float(np.prod(src.GetSpacing())) / 1000.0
        stats = {s["name"]: s for s in report["structures"]}
        assert list(stats) == ["GTVp", "GTVn"]
        for name, value in (("GTVp", 1), ("GTVn", 2)):
            mask = labels == value
            assert stats[name]["voxels"] == int(mask.sum())
            assert stats[name]["volume_cc"] == pytest.approx(mask.sum() * voxel_cc, rel=1e-9)
            assert stats[name]["components"] == ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]
            assert float(rows[case][f"{name}_cc"]) == pytest.approx(stats[name]["volume_cc"], abs=1e-3)
        assert (labels > 0).sum() > 50  # the phantom's tumours were found
    assert rows["p1"]["GTVp_cc"] != rows["p2"]["GTVp_cc"]  # per-case values, not one copied


# -- 2. resume: finished cases are not redone --------------------------------------------------
def test_resume_does_no_work_for_finished_cases(first_run, batch_in, tmp_path, caplog):
    _, out, _ = first_run
    out2 = tmp_path / "out"
    shutil.copytree(out, out2)
    mtimes = {c: (out2 / c / "report.json").stat().st_mtime_ns for c in GOOD}
    caplog.set_level(logging.INFO)
    rc = main(["batch", "-i", str(batch_in), "-o", str(out2), "--resume", *FAST])
    assert rc == 1  # amb, bad and badgz are retried and fail again
    messages = [r.getMessage() for r in caplog.records]
    for case in GOOD:
        assert f"skip {case}: finished (report.json)" in messages
    assert not any(m.startswith("segmented") for m in messages)  # nothing was segmented
    assert {c: (out2 / c / "report.json").stat().st_mtime_ns for c in GOOD} == mtimes
    rows = _rows(out2 / "batch_summary.csv")
    assert [rows[c]["status"] for c in ALL] == ["failed"] * 3 + ["skipped"] * 5
    first = _rows(out / "batch_summary.csv")
    assert [rows[c]["GTVn_cc"] for c in GOOD] == [first[c]["GTVn_cc"] for c in GOOD]


def test_resume_with_everything_finished_loads_no_model(first_run, manifest, tmp_path, monkeypatch, caplog):
    _, out, _ = first_run
    out2 = tmp_path / "out"
    shutil.copytree(out, out2)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded although every case was finished")

    monkeypatch.setattr(batch_run, "Segmenter", no_model)
    caplog.set_level(logging.INFO)
    assert main(["batch", "--manifest", str(manifest), "-o", str(out2), "--resume", *FAST]) == 0
    rows = _rows(out2 / "batch_summary.csv")
    assert list(rows) == GOOD and {r["status"] for r in rows.values()} == {"skipped"}


def _outputs(out: Path) -> dict[str, tuple[int, int]]:
    """The snapshot less the lock files (the lock holder's record is rewritten by every run)."""
    return {k: v for k, v in _snapshot(out).items() if not k.startswith((".hnseg-batch.lock", ".locks/"))}


def test_existing_outputs_without_resume_are_refused(first_run, batch_in, capsys):
    _, out, _ = first_run
    before = _outputs(out)
    assert main(["batch", "-i", str(batch_in), "-o", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "SettingsError" in err and "p1" in err and "--resume" in err
    assert _outputs(out) == before


# -- 3. an interrupted case is cleaned up and redone -------------------------------------------
def test_resume_removes_a_stale_temp_folder_and_redoes_the_case(first_run, manifest, tmp_path, caplog):
    _, out, _ = first_run
    out3 = tmp_path / "out"
    shutil.copytree(out, out3)
    shutil.rmtree(out3 / "p2")
    stale = out3 / ".p2.tmp-abc"
    stale.mkdir()
    full = (out / "p2" / f"{OUT_SLUG}.nii.gz").read_bytes()
    (stale / f"{OUT_SLUG}.nii.gz").write_bytes(full[: len(full) // 3])
    p1_mtime = (out3 / "p1" / "report.json").stat().st_mtime_ns
    caplog.set_level(logging.INFO)
    assert main(["batch", "--manifest", str(manifest), "-o", str(out3), "--resume", *FAST]) == 0
    assert not stale.exists()
    assert _leftovers(out3) == []
    assert (out3 / "p2" / "report.json").is_file()
    assert (out3 / "p1" / "report.json").stat().st_mtime_ns == p1_mtime
    redone = sitk.GetArrayFromImage(sitk.ReadImage(str(out3 / "p2" / f"{OUT_SLUG}.nii.gz")))
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "p2" / f"{OUT_SLUG}.nii.gz")))
    assert np.array_equal(redone, original)
    rows = _rows(out3 / "batch_summary.csv")
    assert [rows[c]["status"] for c in GOOD] == ["skipped", "ok", "skipped", "skipped", "skipped"]
    assert any("removing stale temporary folder" in r.getMessage() and ".p2.tmp-abc" in r.getMessage()
               for r in caplog.records)


# -- 4. sharding ---------------------------------------------------------------------------------
def test_select_shard_is_disjoint_covering_and_order_independent():
    ids = [f"case{i:02d}" for i in range(11)]
    shuffled = list(np.random.default_rng(0).permutation(ids))
    for n in (1, 2, 3, 5, 11, 13):
        shards = [select_shard(shuffled, i, n) for i in range(1, n + 1)]
        assert sorted(c for s in shards for c in s) == ids
        assert sum(len(s) for s in shards) == len(ids)
        assert shards == [select_shard(ids, i, n) for i in range(1, n + 1)]
    assert select_shard(shuffled, 1, 2) == ids[0::2] and select_shard(shuffled, 2, 2) == ids[1::2]
    assert select_shard(ids, 2, 3) == ["case01", "case04", "case07", "case10"]


@pytest.mark.parametrize("text,expected", [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3 / 3 ", (3, 3))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "2", "a/b", "1/2/3", "-1/2", ""])
def test_parse_shard_refuses(text):
    with pytest.raises(SettingsError, match="i/N|1 <= i <= N"):
        parse_shard(text)


def test_shards_over_the_cli_cover_every_case_once(first_run, batch_in, tmp_path):
    _, out, _ = first_run
    out4 = tmp_path / "out"
    rcs = [main(["batch", "-i", str(batch_in), "-o", str(out4), "--shard", f"{i}/2", *FAST]) for i in (1, 2)]
    assert rcs == [1, 1]  # amb and badgz are in shard 1, bad in shard 2
    shard1 = _rows(out4 / "batch_summary_shard-1-of-2.csv")
    shard2 = _rows(out4 / "batch_summary_shard-2-of-2.csv")
    assert list(shard1) == ["amb", "badgz", "p2", "p4"] and list(shard2) == ["bad", "p1", "p3", "p5"]
    assert not (out4 / "batch_summary.csv").exists()
    assert sorted(p.name for p in out4.iterdir() if p.is_dir() and not p.name.startswith(".")) == GOOD
    for case in GOOD:  # sharding does not change what a case gets
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(out4 / case / f"{OUT_SLUG}.mha")))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(out / case / f"{OUT_SLUG}.mha")))
        assert np.array_equal(a, b)


@pytest.mark.parametrize("extra", [["--shard", "0/3"], ["--shard", "two/3"]])
def test_bad_shard_flag_is_a_settings_error(batch_in, tmp_path, capsys, extra):
    assert main(["batch", "-i", str(batch_in), "-o", str(tmp_path / "o"), *extra, *FAST]) == 2
    assert "SettingsError: --shard" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- 5. discovery ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release_case(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release")
    write_hntsmrg_release([make_mri_case(3, "17", size=(24, 24, 12), spacing=SPACING)], root)
    return root / "17"


def test_release_naming_is_found_per_task(release_case):
    r = release_case
    assert find_case_files(TASK1, r) == {PRE_T2: r / "preRT/17_preRT_T2.nii.gz"}
    assert find_case_files(TASK2, r) == {
        MID_T2: r / "midRT/17_midRT_T2.nii.gz",
        REG_MASK: r / "midRT/17_preRT_mask_registered.nii.gz",
        REG_T2: r / "midRT/17_preRT_T2_registered.nii.gz",
        PRE_T2: r / "preRT/17_preRT_T2.nii.gz",
        PRE_MASK: r / "preRT/17_preRT_mask.nii.gz",
    }  # the mid-RT mask (ground truth) is no input


def test_generic_and_ct_release_naming(tmp_path):
    generic = tmp_path / "g"
    generic.mkdir()
    (generic / "head-neck-ct.mha").touch()
    (generic / "head-neck-contrast-enhanced-ct.nii").touch()
    (generic / "notes.txt").touch()
    assert find_case_files(get_task("segrap-task2"), generic) == {
        "head-neck-ct": generic / "head-neck-ct.mha",
        "head-neck-contrast-enhanced-ct": generic / "head-neck-contrast-enhanced-ct.nii"}
    segrap = tmp_path / "segrap_0001"
    segrap.mkdir()
    for name in ("image.nii.gz", "image_contrast.nii.gz", "GTVp.nii.gz"):
        (segrap / name).touch()
    assert find_case_files(get_task("segrap-task1"), segrap) == {
        "head-neck-ct": segrap / "image.nii.gz", "head-neck-contrast-enhanced-ct": segrap / "image_contrast.nii.gz"}
    npc_case = tmp_path / "npc_0001"
    npc_case.mkdir()
    (npc_case / "ct.nii.gz").touch()
    (npc_case / "mri.mha").touch()
    assert find_case_files(get_task("npc-targets"), npc_case) == {
        "head-neck-ct": npc_case / "ct.nii.gz", "head-neck-t1w-mri": npc_case / "mri.mha"}


def test_grand_challenge_case_folder_is_read_as_predict_reads_it():
    case = REPO / "test" / "input" / "hntsmrg-task1-5101"
    files = find_case_files(TASK1, case)
    assert list(files) == [PRE_T2] and files[PRE_T2].parent == case / "images" / PRE_T2


def test_ambiguous_inputs_are_named(tmp_path, release_case):
    both = tmp_path / "both"
    both.mkdir()
    (both / f"{PRE_T2}.nii.gz").touch()
    (both / f"{PRE_T2}.mha").touch()
    with pytest.raises(AmbiguousInputError, match=rf"{PRE_T2}\.nii\.gz, {PRE_T2}\.mha"):
        find_case_files(TASK1, both)
    mixed = tmp_path / "17"
    shutil.copytree(release_case, mixed)
    (mixed / f"{PRE_T2}.mha").touch()  # release name and generic name for one socket
    with pytest.raises(AmbiguousInputError, match=r"found 2: preRT/17_preRT_T2\.nii\.gz"):
        find_case_files(TASK1, mixed)


def test_missing_inputs_are_named(tmp_path, release_case):
    empty = tmp_path / "p9"
    empty.mkdir()
    (empty / "scan.nii.gz").touch()
    with pytest.raises(MissingInputError, match=r"preRT/p9_preRT_T2\{.*scan\.nii\.gz"):
        find_case_files(TASK1, empty)
    no_mask = tmp_path / "17"
    shutil.copytree(release_case, no_mask)
    (no_mask / "midRT/17_preRT_mask_registered.nii.gz").unlink()
    # the pre-RT image and mask are there: hnseg registers them itself (test_batch_registration.py)
    assert REG_MASK not in find_case_files(TASK2, no_mask) and PRE_MASK in find_case_files(TASK2, no_mask)
    (no_mask / "preRT/17_preRT_mask.nii.gz").unlink()
    with pytest.raises(MissingInputError, match=rf"\['{REG_MASK}'\].* or, to register them here, "
                                                 rf"{MID_T2} \+ {PRE_T2} \+ {PRE_MASK}"):
        find_case_files(TASK2, no_mask)


def test_discover_cases_lists_case_folders(tmp_path):
    for name in ("b", "a", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "readme.txt").touch()
    assert [c.case_id for c in discover_cases(tmp_path)] == ["a", "b"]
    with pytest.raises(SettingsError, match="found nothing"):
        discover_cases(tmp_path / "missing")
    with pytest.raises(SettingsError, match="one sub-folder per case"):
        discover_cases(tmp_path / "a")


def test_manifest(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.mha").touch()
    good = tmp_path / "m.csv"
    good.write_text("case_id,pre-rt-t2w-head-neck\nz1,img/x.mha\na1,img/missing.nii.gz\nb1,\n")
    cases = read_manifest(good, TASK1)
    assert [c.case_id for c in cases] == ["a1", "b1", "z1"]
    assert cases[2].resolve(TASK1) == {PRE_T2: tmp_path / "img" / "x.mha"}
    with pytest.raises(MissingInputError, match="missing.nii.gz"):
        cases[0].resolve(TASK1)
    with pytest.raises(MissingInputError, match=PRE_T2):
        cases[1].resolve(TASK1)
    for text, match in (("case_id,head-neck-ct\nz,a.mha\n", "not input sockets"),
                        ("id,pre-rt-t2w-head-neck\nz,a.mha\n", "case_id"),
                        ("case_id,pre-rt-t2w-head-neck\nz,a.mha\nz,b.mha\n", "twice"),
                        ("case_id,pre-rt-t2w-head-neck\n../up,a.mha\n", "folder name")):
        good.write_text(text)
        with pytest.raises(SettingsError, match=match):
            read_manifest(good, TASK1)


def test_whole_run_user_errors_exit_2(batch_in, tmp_path, capsys):
    assert main(["batch", "-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o"), *FAST]) == 2
    assert "SettingsError: input folder" in capsys.readouterr().err
    assert main(["batch", "-i", str(batch_in), "-o", str(batch_in / "out"), *FAST]) == 2
    assert "OutputLocationError" in (err := capsys.readouterr().err) and "outside the input folder" in err
    assert not (batch_in / "out").exists()
    assert main(["batch", "-i", str(batch_in), "-o", str(tmp_path / "o"), "--task", "no-such-task"]) == 2
    assert "TaskSelectionError" in capsys.readouterr().err


# -- a binary-stack task: 4D outputs, one statistic per stack volume -------------------------------
def test_binary_stack_task_writes_4d_outputs_on_the_ct_grid(tmp_path):
    from hnseg.phantoms import make_ct_case, write_segrap_release

    write_segrap_release([make_ct_case(9600, "0", size=(96, 96, 40))], tmp_path / "in")
    out = tmp_path / "out"
    rc = main(["batch", "-i", str(tmp_path / "in"), "-o", str(out), "--task", "segrap-task2", "--device", "cpu",
               "--tta", "off", "--folds", "0"])
    assert rc == 0
    ct = sitk.ReadImage(str(tmp_path / "in" / "segrap_0000" / "image.nii.gz"))
    slug = "gross-tumor-volume-segmentation"
    nii = sitk.ReadImage(str(out / "segrap_0000" / f"{slug}.nii.gz"))
    mha = sitk.ReadImage(str(out / "segrap_0000" / f"{slug}.mha"))
    for img in (nii, mha):
        assert img.GetSize() == ct.GetSize() + (2,)
        assert np.allclose(img.GetSpacing()[:3], ct.GetSpacing(), atol=1e-5)
        assert np.allclose(img.GetOrigin()[:3], ct.GetOrigin(), atol=1e-4)
        assert np.allclose(np.reshape(img.GetDirection(), (4, 4))[:3, :3], np.reshape(ct.GetDirection(), (3, 3)))
    stack = sitk.GetArrayFromImage(mha)
    assert np.array_equal(sitk.GetArrayFromImage(nii), stack)
    report = json.loads((out / "segrap_0000" / "report.json").read_text())
    voxel_cc = float(np.prod(ct.GetSpacing())) / 1000.0
    assert [s["name"] for s in report["structures"]] == ["GTVp", "GTVnd"]
    for i, s in enumerate(report["structures"]):
        assert s["voxels"] == int(stack[i].sum()) and s["volume_cc"] == pytest.approx(stack[i].sum() * voxel_cc)
        assert s["components"] == ndimage.label(stack[i], structure=np.ones((3, 3, 3)))[1]
    assert stack[0].sum() > 100
    assert list(_rows(out / "batch_summary.csv")["segrap_0000"])[-2:] == ["GTVp_cc", "GTVnd_cc"]
