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
