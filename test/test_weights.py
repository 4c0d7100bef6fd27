"""Weights folders: sha256 manifest verified before loading, slim checkpoints, lookup order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hnseg.errors import WeightsError, WeightsIntegrityError
from hnseg.predict.weights import METADATA_FILE, load_verified, locate, read_metadata

REPO = Path(__file__).resolve().parents[1]
TASKS = ("hntsmrg-task1", "hntsmrg-task2")


@pytest.fixture()
def task2_copy(tmp_path) -> Path:
    dst = tmp_path / "hntsmrg-task2"
    shutil.copytree(REPO / "weights" / "hntsmrg-task2", dst)
    return dst


@pytest.mark.parametrize("task", TASKS)
def test_demo_weights_verify_and_describe_themselves(task):
    folder = REPO / "weights" / task
    meta = load_verified(folder)
    assert meta.task == task and meta.demo is True
    assert meta.nnunet.folds == [0, 1, 2, 3, 4]
    assert meta.labels == {"GTVp": 1, "GTVn": 2}
    assert "not for clinical use" in meta.note
    assert meta.training["command"].startswith("hnseg train")
    assert len(meta.files) == 2 + 5
    if task == "hntsmrg-task2":
        assert meta.prior is not None and meta.prior.kind in ("box", "band")
        assert [c.name for c in meta.channels] == ["T2", "prior"]
    else:
        assert meta.prior is None and [c.name for c in meta.channels] == ["T2"]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_weights_total_size_is_small():
    """The MRI demo weights (foundation issue: ≤ 30 MB) and the whole folder with the CT tasks
    (issue 4: ≤ 60 MB)."""
    root = REPO / "weights"
    mri = sum(_size(root / t) for t in TASKS) + _size(root / "variants")
    assert mri <= 30 * 1024 * 1024, mri
    assert _size(root) <= 60 * 1024 * 1024, _size(root)


@pytest.mark.parametrize("task", TASKS)
def test_slim_checkpoints_load_with_weights_only(task):
    for f in range(5):
        ck = torch.load(REPO / "weights" / task / "model" / f"fold_{f}" / "checkpoint_final.pth",
                        map_location="cpu", weights_only=True)
        assert set(ck) == {"network_weights", "trainer_name", "init_args", "inference_allowed_mirroring_axes"}


def test_changed_file_fails_clearly(task2_copy):
    ck = task2_copy / "model" / "fold_3" / "checkpoint_final.pth"
    data = bytearray(ck.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ck.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match=r"fold_3/checkpoint_final\.pth: sha256 mismatch"):
        load_verified(task2_copy)


def test_engine_refuses_changed_plans_before_loading(task2_copy):
    from hnseg.predict.engine import Engine

    plans = task2_copy / "model" / "plans.json"
    plans.write_text(plans.read_text().replace('"batch_size": 2', '"batch_size": 3'))
    with pytest.raises(WeightsIntegrityError, match="plans.json"):
        Engine(task2_copy)


def test_missing_and_unlisted_files(task2_copy):
    extra = task2_copy / "model" / "fold_9"
    extra.mkdir()
    (extra / "checkpoint_final.pth").write_bytes(b"x")
    with pytest.raises(WeightsIntegrityError, match="not in the"):
        load_verified(task2_copy)
    shutil.rmtree(extra)
    (task2_copy / "model" / "dataset.json").unlink()
    with pytest.raises(WeightsIntegrityError, match="dataset.json: listed .* but missing"):
        load_verified(task2_copy)


def test_bad_metadata(tmp_path):
    with pytest.raises(WeightsError, match="found none"):
        read_metadata(tmp_path)
    (tmp_path / METADATA_FILE).write_text(json.dumps({"task": 3}))
    with pytest.raises(WeightsError, match="not valid hnseg weights metadata"):
        read_metadata(tmp_path)


def test_lookup_order_model_dir_first_then_baked(tmp_path, task2_copy):
    model_dir = tmp_path / "opt_ml_model"
    model_dir.mkdir()
    baked = REPO / "weights"
    assert locate("hntsmrg-task2", [model_dir, baked]) == baked / "hntsmrg-task2"
    shutil.copytree(task2_copy, model_dir / "hntsmrg-task2")
    assert locate("hntsmrg-task2", [model_dir, baked]) == model_dir / "hntsmrg-task2"
    # a weights folder given directly (not a folder of task folders) works too
    assert locate("hntsmrg-task2", [task2_copy, baked]) == task2_copy
    with pytest.raises(WeightsError, match="hntsmrg-task1"):
        locate("hntsmrg-task1", [model_dir])


def test_unreadable_weights_folder_is_a_named_error_not_a_traceback(monkeypatch, tmp_path):
    # root ignores file modes, so the denial a non-root container user meets is simulated
    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(WeightsError, match=r"hnseg_weights.json: cannot be checked \(Permission denied\)"):
        locate("hntsmrg-task2", [tmp_path])
    monkeypatch.undo()
    (tmp_path / METADATA_FILE).write_text("{}")
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(WeightsError, match=r"cannot be read \(Permission denied\)"):
        read_metadata(tmp_path)


def test_weights_verify_cli(tmp_path, task2_copy, capsys):
    from hnseg.cli import main

    assert main(["weights", "verify", str(REPO / "weights"), str(task2_copy)]) == 0
    assert main(["weights", "verify", str(tmp_path / "empty-nothing")]) == 2
    assert "WeightsError" in capsys.readouterr().err
    (task2_copy / "model" / "extra.txt").write_text("x")
    assert main(["weights", "verify", str(tmp_path)]) == 2  # finds the task folder inside, which fails
    err = capsys.readouterr().err
    assert "WeightsIntegrityError" in err and "extra.txt" in err
