"""Weights that cannot execute code (issue 13, point 2).

The sha256 manifest only catches accidents: whoever swaps a checkpoint can re-compute it. Each test
here tampers with a copy of shipped weights and RE-COMPUTES the manifest (so the sha256 check passes),
then checks the loader refuses the folder with a named ``WeightsError`` naming the file: checkpoints
are read with ``torch.load(weights_only=True)`` and must hold exactly the slim keys, plans/dataset
JSON must have nnU-Net's structure, no symlinks, and a pinned sha256 of ``hnseg_weights.json``
(``--trusted-manifest`` / ``HNSEG_TRUSTED_MANIFEST``) is checked before any checkpoint is opened.
The engine built by hnseg's own loader equals nnU-Net's ``initialize_from_trained_model_folder``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hnseg.cli import main
from hnseg.errors import SettingsError, WeightsError
from hnseg.predict.weights import METADATA_FILE, load_weights, manifest, read_metadata
from hnseg.settings import build_settings

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
SHIPPED = sorted(p.parent for p in WEIGHTS.rglob(METADATA_FILE))
CASE = REPO / "test" / "input" / "hntsmrg-task1-5101"
CKPT = Path("model/fold_0/checkpoint_final.pth")
FAST = ["--device", "cpu", "--tta", "off", "--folds", "0"]


# --- helpers --------------------------------------------------------------------------------------
def remanifest(folder: Path) -> str:
    """Re-compute the manifest the way an attacker (or a careless colleague) would; returns the new
    sha256 of hnseg_weights.json."""
    meta = read_metadata(folder)
    (folder / METADATA_FILE).write_text(meta.model_copy(update={"files": manifest(folder)}).model_dump_json(indent=2))
    return hashlib.sha256((folder / METADATA_FILE).read_bytes()).hexdigest()


class Payload:
    """Unpickling it creates ``marker``: what a malicious checkpoint would do (run any code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def slim(folder: Path) -> dict:
    return torch.load(folder / CKPT, map_location="cpu", weights_only=True)


@pytest.fixture()
def w(tmp_path) -> Path:
    dst = tmp_path / "w" / "hntsmrg-task1"
    shutil.copytree(WEIGHTS / "hntsmrg-task1", dst)
    return dst


@pytest.fixture()
def payload(w, tmp_path) -> tuple[Path, Path]:
    """(weights folder whose fold-0 checkpoint runs code when unpickled, the marker it would create)."""
    marker = tmp_path / "PAYLOAD_RAN"
    ck = slim(w)
    ck["network_weights"] = Payload(marker)
    torch.save(ck, w / CKPT)
    remanifest(w)
    # the payload is real: a plain (weights_only=False) load, as nnU-Net does it, runs it
    probe = tmp_path / "probe"
    torch.save({"x": Payload(probe)}, tmp_path / "probe.pth")
    torch.load(tmp_path / "probe.pth", weights_only=False)
    assert probe.exists()
    return w, marker


def nothing_under(out: Path) -> bool:
    return not out.exists() or not any(out.rglob("*"))


def verify(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["weights", "verify", *map(str, args)])
    return rc, capsys.readouterr().err


# --- a pickle payload is refused everywhere, never run ----------------------------------------------
def test_payload_refused_by_inference_py(payload, tmp_path):
    w, marker = payload
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HNSEG_")}
    r = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(CASE), "--output", str(out),
                        "--weights", str(w), *FAST], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"WeightsError: {w / CKPT}: expected a slim checkpoint loadable with "
                           "torch.load(weights_only=True)"), last
    assert "found: unpickling refused (Unsupported global: GLOBAL exec was not an allowed global" in last, last
    assert "weights_only=False" not in last and "add_safe_globals" not in last, last
    assert "Traceback" not in r.stderr
    assert not marker.exists()
    assert nothing_under(out)


def test_payload_refused_by_predict_verify_and_batch(payload, tmp_path, capsys):
    w, marker = payload
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", "--input", str(CASE), "--output", str(out), "--weights", str(w), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"WeightsError: {w / CKPT}: expected a slim checkpoint" in err, err
    assert nothing_under(out)

    rc, err = verify(capsys, w)
    assert rc == 2 and f"WeightsError: {w / CKPT}: expected a slim checkpoint" in err, err
    rc, err = verify(capsys, w.parent)  # a folder of task folders (a model tarball's layout)
    assert rc == 2 and f"WeightsError: {w / CKPT}" in err, err

    batch_in = tmp_path / "in"
    shutil.copytree(CASE, batch_in / "p1")
    capsys.readouterr()
    rc = main(["batch", "-i", str(batch_in), "-o", str(tmp_path / "bout"), "--task", "hntsmrg-task1",
               "--weights", str(w), *FAST, "--no-qa"])
    err = capsys.readouterr().err
    assert rc == 2 and f"WeightsError: {w / CKPT}: expected a slim checkpoint" in err, err
    assert not (tmp_path / "bout" / "p1").exists()
    assert not marker.exists()


def test_raw_pickle_payload_refused(w, tmp_path, capsys):
    marker = tmp_path / "PAYLOAD_RAN"
    with open(w / CKPT, "wb") as f:
        pickle.dump({"network_weights": Payload(marker)}, f)
    remanifest(w)
    with pytest.raises(WeightsError, match=r"fold_0/checkpoint_final\.pth: expected a slim checkpoint .* "
                                           r"found: unpickling refused"):
        load_weights(w)
    assert not marker.exists()


# --- damaged or non-slim checkpoints ----------------------------------------------------------------
def _truncate(w: Path) -> None:
    data = (w / CKPT).read_bytes()
    (w / CKPT).write_bytes(data[: len(data) // 2])


def _write(content: bytes):
    return lambda w: (w / CKPT).write_bytes(content)


def _edit(fn):
    def apply(w: Path) -> None:
        ck = slim(w)
        fn(ck)
        torch.save(ck, w / CKPT)
    return apply


BAD_CHECKPOINTS = {
    "truncated": (_truncate, "found: RuntimeError: PytorchStreamReader failed"),
    "empty": (_write(b""), "found: EOFError: empty or truncated file"),
    "not a checkpoint": (_write(b"hello"), "found: "),
    "extra key": (_edit(lambda ck: ck.update(optimizer_state={"lr": torch.tensor(1.0)})),
                  r"unexpected: \['optimizer_state'\], missing: \[\]"),
    "missing key": (_edit(lambda ck: ck.pop("inference_allowed_mirroring_axes")),
                    r"unexpected: \[\], missing: \['inference_allowed_mirroring_axes'\]"),
    "weights not tensors": (_edit(lambda ck: ck.update(network_weights={"a": 1})), "network_weights that is not"),
    "trainer not a name": (_edit(lambda ck: ck.update(trainer_name="os.system")), "trainer_name 'os.system'"),
    "init_args extra": (_edit(lambda ck: ck.update(init_args={"configuration": "3d_tiny", "x": 1})), "init_args"),
    "axes out of range": (_edit(lambda ck: ck.update(inference_allowed_mirroring_axes=(0, 5))),
                          r"inference_allowed_mirroring_axes \(0, 5\)"),
    "a list, not a dict": (lambda w: torch.save([1, 2], w / CKPT), "found a list"),
}


@pytest.mark.parametrize("damage", BAD_CHECKPOINTS, ids=list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_a_named_error(damage, w):
    apply, found = BAD_CHECKPOINTS[damage]
    apply(w)
    remanifest(w)
    with pytest.raises(WeightsError) as exc:
        load_weights(w)
    msg = str(exc.value)
    assert type(exc.value) is WeightsError
    assert msg.startswith(f"{w / CKPT}: expected a slim checkpoint loadable with torch.load(weights_only=True)"), msg
    assert __import__("re").search(found, msg), msg
    assert "weights_only=False" not in msg  # torch's advice to disable the protection is not passed on


def test_unknown_trainer_and_weights_not_fitting_the_network(w, capsys):
    from hnseg.predict.engine import build_network

    _edit(lambda ck: ck.update(trainer_name="nnUNetTrainerDoesNotExist"))(w)
    remanifest(w)
    with pytest.raises(WeightsError, match=r"fold_0/checkpoint_final\.pth: expected trainer_name naming an "
                                           r"nnU-Net or hnseg trainer, found 'nnUNetTrainerDoesNotExist'"):
        build_network(load_weights(w, folds=[0]))
    with pytest.raises(WeightsError, match=r"fold_1/checkpoint_final\.pth: expected trainer "
                                           r"nnUNetTrainerDoesNotExist and configuration 3d_tiny like"):
        load_weights(w)  # folds must agree (nnU-Net reads the trainer from the first only)

    shutil.copy2(WEIGHTS / "hntsmrg-task1" / CKPT, w / CKPT)
    fold3 = w / "model/fold_3/checkpoint_final.pth"
    ck = torch.load(fold3, weights_only=True)
    ck["network_weights"].popitem()
    torch.save(ck, fold3)
    remanifest(w)
    rc, err = verify(capsys, w)  # the engine would only meet fold 3 mid-prediction; verify loads them all
    assert rc == 2 and f"WeightsError: {fold3}: expected network weights fitting the network of plans.json" in err, err


# --- plans.json / dataset.json --------------------------------------------------------------------
def _plans(edit):
    def apply(w: Path) -> None:
        p = w / "model" / "plans.json"
        plans = json.loads(p.read_text())
        edit(plans["configurations"]["3d_tiny"]["architecture"])
        p.write_text(json.dumps(plans))
    return apply


BAD_JSON = {
    "plans missing": ("plans.json", lambda w: (w / "model/plans.json").unlink(),
                      "expected nnU-Net's plans.json in the weights folder, found none"),
    "dataset missing": ("dataset.json", lambda w: (w / "model/dataset.json").unlink(),
                        "expected nnU-Net's dataset.json in the weights folder, found none"),
    "plans not JSON": ("plans.json", lambda w: (w / "model/plans.json").write_text("{not json"),
                       "expected valid JSON, found: Expecting property name"),
    "plans a list": ("plans.json", lambda w: (w / "model/plans.json").write_text("[]"),
                     "expected a JSON object, found a list"),
    "dataset without labels": ("dataset.json", lambda w: (w / "model/dataset.json").write_text(
        json.dumps({"channel_names": {"0": "T2"}})), "expected the non-empty entries {'labels': 'dict'}"),
    "configuration absent": ("plans.json", lambda w: (w / "model/plans.json").write_text(
        json.dumps({"configurations": {"2d": {}}})), "expected the configuration '3d_tiny'"),
}


@pytest.mark.parametrize("damage", BAD_JSON, ids=list(BAD_JSON))
def test_bad_plans_or_dataset_json(damage, w, capsys):
    name, apply, expected = BAD_JSON[damage]
    apply(w)
    remanifest(w)
    with pytest.raises(WeightsError) as exc:
        load_weights(w)
    assert str(exc.value).startswith(f"{w / 'model' / name}: {expected}"), str(exc.value)
    rc, err = verify(capsys, w)
    assert rc == 2 and f"WeightsError: {w / 'model' / name}" in err and "Traceback" not in err, err


NOT_ALLOWED_CLASSES = {
    "network class outside dynamic_network_architectures": (
        _plans(lambda a: a.update(network_class_name="builtins.dict")),
        "expected the network class from dynamic_network_architectures, found 'builtins.dict'"),
    "network name reaching another module": (
        _plans(lambda a: a.update(network_class_name="dynamic_network_architectures.architectures.unet.torch.hub.load")),
        "expected the network class (a torch.nn.Module class from dynamic_network_architectures)"),
    "imported kwarg reaching os.system": (
        _plans(lambda a: a["arch_kwargs"].update(nonlin="torch.nn.modules.conv.os.system")),
        "expected architecture argument nonlin (a torch.nn.Module class from torch.nn)"),
}


@pytest.mark.parametrize("damage", NOT_ALLOWED_CLASSES, ids=list(NOT_ALLOWED_CLASSES))
def test_plans_name_only_network_classes(damage, w, capsys):
    """nnU-Net imports and calls the classes plans.json names (pydoc.locate): only torch.nn.Module
    classes of dynamic_network_architectures / torch.nn are accepted."""
    apply, expected = NOT_ALLOWED_CLASSES[damage]
    apply(w)
    remanifest(w)
    rc, err = verify(capsys, w)
    assert rc == 2, err
    assert f"WeightsError: {w / 'model' / 'plans.json'}: {expected}" in err, err


# --- symlinks ---------------------------------------------------------------------------------------
def test_symlinks_are_refused(w, tmp_path):
    outside = tmp_path / "elsewhere.pth"
    shutil.move(w / CKPT, outside)
    (w / CKPT).symlink_to(outside)
    remanifest(w)  # the manifest hashes the target: the sha256 check alone would pass
    with pytest.raises(WeightsError, match=rf"{CKPT}: expected a regular file or folder inside the weights "
                                           rf"folder, found a symlink to {outside}"):
        load_weights(w)
    (w / CKPT).unlink()
    shutil.move(outside, w / CKPT)
    load_weights(w)  # restored: loads

    meta = tmp_path / "meta.json"
    shutil.move(w / METADATA_FILE, meta)
    (w / METADATA_FILE).symlink_to(meta)
    with pytest.raises(WeightsError, match=rf"{METADATA_FILE}: expected a regular file inside the weights "
                                           "folder, found a symlink"):
        load_weights(w)
    (w / METADATA_FILE).unlink()
    shutil.move(meta, w / METADATA_FILE)

    model = tmp_path / "model-elsewhere"
    shutil.move(w / "model", model)
    (w / "model").symlink_to(model)
    with pytest.raises(WeightsError, match=r"model: expected a folder inside the weights folder, found a symlink"):
        load_weights(w)


# --- pinning: --trusted-manifest / HNSEG_TRUSTED_MANIFEST -------------------------------------------
def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_trusted_manifest_right_hash_verifies(w, capsys, monkeypatch):
    right = sha(w / METADATA_FILE)
    other = "0" * 64
    rc, err = verify(capsys, w, "--trusted-manifest", right)
    assert rc == 0, err
    rc, err = verify(capsys, w, "--trusted-manifest", f"{other},{right.upper()}")  # any of several, any case
    assert rc == 0, err
    monkeypatch.setenv("HNSEG_TRUSTED_MANIFEST", right)
    rc, err = verify(capsys, w)
    assert rc == 0, err


def test_trusted_manifest_wrong_hash_refused_before_any_checkpoint_is_opened(payload, capsys, monkeypatch, tmp_path):
    w, marker = payload
    wrong = "ab" * 32
    found = sha(w / METADATA_FILE)
    opened = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a) or pytest.fail("torch.load called"))
    rc, err = verify(capsys, w, "--trusted-manifest", wrong)
    assert rc == 2
    assert err.strip() == (f"WeightsIntegrityError: {w / METADATA_FILE}: sha256 not trusted, expected {wrong} "
                           f"(--trusted-manifest / HNSEG_TRUSTED_MANIFEST), found {found}; refusing the weights "
                           "folder before opening any checkpoint"), err
    out = tmp_path / "out"
    assert main(["predict", "--input", str(CASE), "--output", str(out), "--weights", str(w), *FAST,
                 "--trusted-manifest", wrong]) == 2
    assert f"WeightsIntegrityError: {w / METADATA_FILE}: sha256 not trusted" in capsys.readouterr().err
    batch_in = tmp_path / "in"
    shutil.copytree(CASE, batch_in / "p1")
    monkeypatch.setenv("HNSEG_TRUSTED_MANIFEST", wrong)  # the variable, for batch
    assert main(["batch", "-i", str(batch_in), "-o", str(tmp_path / "bout"), "--task", "hntsmrg-task1",
                 "--weights", str(w), *FAST, "--no-qa"]) == 2
    assert f"WeightsIntegrityError: {w / METADATA_FILE}: sha256 not trusted" in capsys.readouterr().err
    assert opened == [] and not marker.exists() and nothing_under(out)


@pytest.mark.parametrize("value", ["abc", "g" * 64, "a" * 63, "a" * 64 + ",", ","])
def test_trusted_manifest_format(value, capsys, tmp_path):
    with pytest.raises(SettingsError, match="expected sha256 values"):
        build_settings({"trusted_manifest": value}, environ={})
    with pytest.raises(SettingsError, match="HNSEG_TRUSTED_MANIFEST"):
        build_settings({}, environ={"HNSEG_TRUSTED_MANIFEST": value})
    rc, err = verify(capsys, tmp_path, "--trusted-manifest", value)
    assert rc == 2 and err.startswith("SettingsError: ") and "Traceback" not in err, err


def test_trusted_manifest_setting_normalises():
    s = build_settings({}, environ={"HNSEG_TRUSTED_MANIFEST": "A" * 64 + ", " + "b" * 64})
    assert s.predict.trusted_manifest == ("a" * 64, "b" * 64)
    assert build_settings({}, environ={}).predict.trusted_manifest is None


# --- the shipped weights pass; the engine equals nnU-Net's own loader --------------------------------
@pytest.mark.parametrize("folder", SHIPPED, ids=[str(p.relative_to(WEIGHTS)) for p in SHIPPED])
def test_shipped_weights_pass_the_new_verify(folder, capsys):
    rc, err = verify(capsys, folder)
    assert rc == 0, err
    loaded = load_weights(folder)
    assert list(loaded.checkpoints) == read_metadata(folder).nnunet.folds


@pytest.mark.parametrize("folder", SHIPPED, ids=[str(p.relative_to(WEIGHTS)) for p in SHIPPED])
def test_own_loader_initialises_the_predictor_like_nnunet(folder):
    """Same network class and weights, same parameters list, mirror axes and trainer as nnU-Net's
    ``initialize_from_trained_model_folder`` (which unpickles with weights_only=False: fine for the
    shipped files)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from hnseg.predict.engine import Engine
    from hnseg.settings import PredictSettings

    ours = Engine(folder, PredictSettings(device="cpu")).predictor
    ref = nnUNetPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    ref.initialize_from_trained_model_folder(str(folder / "model"), use_folds=tuple(read_metadata(folder).nnunet.folds))
    # (nnU-Net imports hnseg's trainer module afresh on each lookup: compare class names, not objects)
    assert type(ours.network).__qualname__ == type(ref.network).__qualname__
    assert repr(ours.network) == repr(ref.network)
    a, b = ours.network.state_dict(), ref.network.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(ours.list_of_parameters) == len(ref.list_of_parameters)
    for p, q in zip(ours.list_of_parameters, ref.list_of_parameters):
        assert p.keys() == q.keys() and all(torch.equal(p[k], q[k]) and p[k].dtype == q[k].dtype for k in p)
    assert ours.allowed_mirroring_axes == ref.allowed_mirroring_axes
    assert ours.trainer_name == ref.trainer_name and ours.dataset_json == ref.dataset_json
    assert ours.configuration_manager.configuration == ref.configuration_manager.configuration
    assert ours.label_manager.has_regions == ref.label_manager.has_regions


def test_engine_predicts_the_same_voxels_as_nnunets_loader():
    """A small phantom (64 x 64 x 24), folds 0 and 1, TTA off: identical label maps."""
    import SimpleITK as sitk
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from hnseg.phantoms import make_mri_case
    from hnseg.predict.engine import Engine
    from hnseg.settings import PredictSettings

    folder = WEIGHTS / "hntsmrg-task1"
    img = sitk.Cast(make_mri_case(21, size=(64, 64, 24), spacing=(2.5, 2.5, 4.0)).pre_t2, sitk.sitkFloat32)
    channels = sitk.GetArrayFromImage(img)[None]
    ours = Engine(folder, PredictSettings(device="cpu", tta="off", folds=(0, 1))).predict(channels, img)

    ref = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                          perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                          allow_tqdm=False)
    ref.initialize_from_trained_model_folder(str(folder / "model"), use_folds=(0, 1))
    theirs = np.asarray(ref.predict_single_npy_array(channels, {"spacing": list(reversed(img.GetSpacing()))}))
    assert set(np.unique(theirs)) == {0, 1, 2}  # a real segmentation (GTVp and GTVn), not an empty one
    np.testing.assert_array_equal(ours, theirs.astype(np.uint8))


# --- export writes slim, weights_only-loadable checkpoints -----------------------------------------
def test_export_writes_only_slim_weights_only_checkpoints(tmp_path):
    """A full nnU-Net training folder (optimizer state, numpy logging, numpy mirror axes: not
    weights_only-loadable) exports to slim checkpoints the loader accepts."""
    from hnseg.tasks import get_task
    from hnseg.training.export import export_weights

    src = WEIGHTS / "hntsmrg-task1" / "model"
    results = tmp_path / "results"
    (results / "fold_0").mkdir(parents=True)
    shutil.copy2(src / "plans.json", results / "plans.json")
    shutil.copy2(src / "dataset.json", results / "dataset.json")
    ck = slim(WEIGHTS / "hntsmrg-task1")
    full = {**ck, "optimizer_state": {"state": {}}, "logging": {"loss": [np.float64(0.5)]},
            "inference_allowed_mirroring_axes": tuple(np.int64(a) for a in (0, 1, 2)),
            "init_args": {"configuration": "3d_tiny", "fold": 0, "plans": {}}, "current_epoch": 7}
    torch.save(full, results / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(Exception):
        torch.load(results / "fold_0" / "checkpoint_final.pth", weights_only=True)  # the input is not slim

    out = export_weights(get_task("hntsmrg-task1"), results, [0], tmp_path / "exported", None, "nnUNetTrainer",
                         "nnUNetPlans", "3d_tiny", "Dataset801_hntsmrgtask1", {"command": "test"}, demo=True)
    got = torch.load(out / CKPT, map_location="cpu", weights_only=True)
    assert set(got) == {"network_weights", "trainer_name", "init_args", "inference_allowed_mirroring_axes"}
    assert got["init_args"] == {"configuration": "3d_tiny"} and got["trainer_name"] == "nnUNetTrainer"
    assert got["inference_allowed_mirroring_axes"] == (0, 1, 2)
    assert all(type(a) is int for a in got["inference_allowed_mirroring_axes"])
    assert all(torch.equal(got["network_weights"][k], ck["network_weights"][k]) for k in ck["network_weights"])
    assert list(load_weights(out).checkpoints) == [0]


def test_pretrained_start_never_unpickles_code(payload):
    """``hnseg train --pretrained CHECKPOINT`` reads someone else's checkpoint too: a payload is a named
    error, and the marker it would create never appears; a slim shipped checkpoint still loads."""
    from hnseg.training.pretrained import PretrainedWeightsError, _load_without_code

    w, marker = payload
    with pytest.raises(PretrainedWeightsError, match="loadable without running code"):
        _load_without_code(w / CKPT)
    assert not marker.exists()
    assert set(_load_without_code(WEIGHTS / "hntsmrg-task1" / CKPT)) >= {"network_weights", "trainer_name"}
