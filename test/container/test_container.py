"""The built image, run the way grand-challenge runs it (through test.sh where that is the point)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from container_helpers import REPO, docker, run_test_sh

OUT_REL = "images/mri-head-neck-segmentation/output.mha"
GB = 1 << 30


def one_case(tmp_path: Path, case: str, expected_error: str | None = None) -> tuple[Path, Path]:
    """A cases folder and an expected folder holding only ``case`` (copied, so they can be altered)."""
    cases, expected = tmp_path / "cases", tmp_path / "expected"
    shutil.copytree(REPO / "test/input" / case, cases / case)
    shutil.copytree(REPO / "test/expected_output" / case, expected / case)
    if expected_error:
        (expected / case / "EXPECTED_ERROR").write_text(expected_error + "\n")
    return cases, expected


def shipped_tasks() -> list[str]:
    """The task weight folders in the repository's weights/ (variants/ is not baked)."""
    return sorted(p.parent.name for p in (REPO / "weights").glob("*/hnseg_weights.json"))


def test_image_runs_as_numeric_non_root_user_and_fits_grand_challenge(image):
    cfg = json.loads(docker("image", "inspect", image, check=True).stdout)[0]
    assert cfg["Config"]["User"] == "10001:10001"
    assert cfg["Config"]["Entrypoint"] == ["python", "inference.py"]
    assert cfg["Architecture"] == "amd64" and cfg["Size"] < 10 * GB
    r = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
               "id -u; id -g; test -e /build && echo wheels-left || echo clean; ls /opt/hnseg/weights", check=True)
    assert r.stdout.split() == ["10001", "10001", "clean", "README.md", *shipped_tasks()]


def test_model_tarball_overrides_the_baked_weights_under_another_uid(image, tmp_path):
    """export.sh's model.tar.gz, extracted as grand-challenge does, is what the container uses, and
    the image works for any non-root uid (a hospital's --user $(id -u))."""
    r = subprocess.run(["bash", str(REPO / "export.sh"), "--image", image, "--no-image", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        names = tar.getnames()
        assert sorted({n.split("/")[0] for n in names}) == shipped_tasks()
        assert all(m.uid == 0 and m.mode & 0o004 for m in tar.getmembers())
        tar.extractall(tmp_path / "model", filter="data")
    # swap in a different model for task 2 (the band-prior variant), so the override is visible
    shutil.rmtree(tmp_path / "model/hntsmrg-task2")
    shutil.copytree(REPO / "weights/variants/hntsmrg-task2-band", tmp_path / "model/hntsmrg-task2")
    case = "hntsmrg-task2-5100"
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # writable by uid 4242, as grand-challenge's /output is
    r = docker("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,size=2g",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "4242:4242",
               "-v", f"{REPO / 'test/input' / case}:/input:ro", "-v", f"{out}:/output",
               "-v", f"{tmp_path / 'model'}:/opt/ml/model:ro", image)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "weights: /opt/ml/model/hntsmrg-task2" in r.stderr
    assert "weights /opt/ml/model/hntsmrg-task2 verified (4 files, task hntsmrg-task2)" in r.stderr
    got = sitk.ReadImage(str(out / OUT_REL))
    baked = sitk.ReadImage(str(REPO / "test/expected_output" / case / OUT_REL))
    assert (got.GetSize(), got.GetOrigin(), got.GetSpacing(), got.GetDirection()) == (
        baked.GetSize(), baked.GetOrigin(), baked.GetSpacing(), baked.GetDirection())
    a, b = sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(baked)
    assert 0 < np.count_nonzero(a != b) < 0.5 * np.count_nonzero(b)  # another model, same task


def test_test_sh_fails_on_a_single_changed_voxel(image, tmp_path):
    case = "hntsmrg-task1-5101"
    cases, expected = one_case(tmp_path, case)
    path = expected / case / OUT_REL
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = 2
    changed = sitk.GetImageFromArray(arr)
    changed.CopyInformation(img)
    sitk.WriteImage(changed, str(path), useCompression=True)
    r = run_test_sh("--no-build", "--image", image, "--cases", str(cases), "--expected", str(expected))
    assert r.returncode == 1, r.stdout
    assert f"FAIL {OUT_REL}: 1 voxels differ (allowed 0)" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_test_sh_fails_when_a_bad_case_fails_for_another_reason(image, tmp_path):
    cases, expected = one_case(tmp_path, "bad-input-unregistered-mask", expected_error="MaskLabelError")
    r = run_test_sh("--no-build", "--image", image, "--cases", str(cases), "--expected", str(expected))
    assert r.returncode == 1
    assert "FAIL exit 2 but no 'MaskLabelError: …' line" in r.stdout


def test_test_sh_refuses_a_root_image(image, tmp_path):
    root_tag = "hnseg-test-root:latest"
    docker("tag", image, root_tag, check=True)
    try:
        cid = docker("create", "--user", "0", image, check=True).stdout.strip()
        docker("commit", "--change", "USER root", cid, root_tag, check=True)
        docker("rm", cid, check=True)
        r = run_test_sh("--no-build", "--image", root_tag, "--cases", str(tmp_path))
        assert r.returncode == 1 and "runs as root" in r.stderr
    finally:
        docker("rmi", root_tag)


def _batch_in_container(image: str, inp: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    out.mkdir()
    out.chmod(0o777)  # the image's user (10001) writes there
    return docker("run", "--rm", "--network", "none", "-v", f"{inp}:/data/in:ro", "-v", f"{out}:/data/out",
                  "--entrypoint", "python", image, "-m", "hnseg", "batch", "-i", "/data/in", "-o", "/data/out",
                  "--device", "cpu", "--tta", "off", "--folds", "0", *args, timeout=900)


def test_batch_mode_in_the_container_dicom_out_and_registration(image, tmp_path):
    """The documented hospital entry (docs/batch.md): a coronal DICOM series in → NIfTI + DICOM SEG +
    RTSTRUCT out (read back on the host: equal to the NIfTI mask); an hntsmrg-task2 case without
    registered inputs is registered inside the image (itk-elastix)."""
    from hnseg.io.dicom_masks import read_rtstruct_masks, read_seg_masks
    from hnseg.phantoms import make_mri_case
    from hnseg.phantoms.deformed_pair import make_deformed_pair
    from hnseg.phantoms.dicom import write_dicom_series
    from hnseg.tasks.hntsmrg import MID_T2, PRE_MASK, PRE_T2, REG_MASK
    from hnseg.write.dicom_source import load_source_series

    t2 = sitk.Cast(sitk.Round(make_mri_case(5300, "d", size=(96, 96, 40), spacing=(2.0, 2.0, 3.0)).pre_t2),
                   sitk.sitkInt16)
    series = tmp_path / "in1" / "p1" / PRE_T2
    write_dicom_series(t2, series, "MR", orientation="coronal", uids={"seed": "container-batch"})
    r = _batch_in_container(image, tmp_path / "in1", tmp_path / "out1", "--task", "hntsmrg-task1")
    assert r.returncode == 0, r.stderr[-3000:]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out1/p1" / f"{OUT_REL.split('/')[1]}.nii.gz")))
    source = load_source_series(series, PRE_T2, "MR")
    seg = read_seg_masks(tmp_path / "out1/p1/seg.dcm", source)
    rt = read_rtstruct_masks(tmp_path / "out1/p1/rtstruct.dcm", source)
    assert (labels == 1).sum() > 50
    for name, value in (("GTVp", 1), ("GTVn", 2)):
        assert np.array_equal(seg[name], labels == value) and np.array_equal(rt[name], labels == value)
    assert (tmp_path / "out1/p1/qa.png").stat().st_size > 10_000

    pair = make_deformed_pair(7, size=(48, 48, 20), spacing=(4.0, 4.0, 6.0))
    case = tmp_path / "in2" / "p2"
    case.mkdir(parents=True)
    for slug, img in ((MID_T2, pair.mid_image), (PRE_T2, pair.pre_image), (PRE_MASK, pair.pre_mask)):
        sitk.WriteImage(img, str(case / f"{slug}.nii.gz"))
    r = _batch_in_container(image, tmp_path / "in2", tmp_path / "out2", "--task", "hntsmrg-task2",
                            "--registration-iterations", "20", "--no-qa")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "out2/p2/report.json").read_text())
    assert report["registration"]["method"] == "itk-elastix"
    warped = sitk.ReadImage(str(tmp_path / "out2/p2" / f"{REG_MASK}.nii.gz"))
    assert warped.GetSize() == pair.mid_image.GetSize()
    assert (sitk.GetArrayViewFromImage(warped) > 0).sum() > 100
