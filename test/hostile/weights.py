"""Class 3, weights: tampered copies of weights/hntsmrg-task1 (WeightsError / WeightsIntegrityError).

The attacker's copy has its sha256 manifest re-computed (``kit.remanifest``), so only a safe loader
(``torch.load(weights_only=True)`` and a schema check) can refuse it. The pickle payload opens a marker
file when unpickled; the marker must never exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from hostile.kit import (
    Setup, batch_args, batch_folder, predict_args, remanifest, sha256, task1_case, weights_copy,
)

CKPT = "model/fold_0/checkpoint_final.pth"


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the smallest proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _save(obj, path: Path) -> None:
    import torch

    torch.save(obj, path)


def _payload_weights(root: Path) -> tuple[Path, Path]:
    w = weights_copy(root)
    marker = root / "PAYLOAD_RAN"
    ckpt = _load(w / CKPT)
    ckpt["trainer_name"] = Payload(marker)
    _save(ckpt, w / CKPT)
    remanifest(w)
    return w, marker


def _predict(root: Path, w: Path, *extra: str, **kw) -> Setup:
    in_dir = task1_case(root / "in")
    out = root / "out"
    return Setup(predict_args(in_dir, out, *extra, weights=w), out=out, **kw)


# --- the pickle payload, three ways in ------------------------------------------------------------
def payload_predict(root: Path) -> Setup:
    w, marker = _payload_weights(root)
    return _predict(root, w, markers=(marker,))


def payload_batch(root: Path) -> Setup:
    w, marker = _payload_weights(root)
    batch_folder(root / "in" / "p1")
    out = root / "out"
    return Setup(batch_args(out, in_dir=root / "in", weights=w), out=out, markers=(marker,))


def payload_verify(root: Path) -> Setup:
    w, marker = _payload_weights(root)
    return Setup([str(w)], markers=(marker,))


# --- damaged or incomplete folders ---------------------------------------------------------------
def truncated_remanifested(root: Path) -> Setup:
    w = weights_copy(root)
    data = (w / CKPT).read_bytes()
    (w / CKPT).write_bytes(data[: len(data) // 2])
    remanifest(w)
    return _predict(root, w)


def truncated_remanifested_verify(root: Path) -> Setup:
    w = weights_copy(root)
    data = (w / CKPT).read_bytes()
    (w / CKPT).write_bytes(data[: len(data) // 2])
    remanifest(w)
    return Setup([str(w)])


def truncated_old_manifest(root: Path) -> Setup:
    w = weights_copy(root)
    data = (w / CKPT).read_bytes()
    (w / CKPT).write_bytes(data[: len(data) // 2])
    return _predict(root, w)


def not_a_checkpoint(root: Path) -> Setup:
    w = weights_copy(root)
    (w / CKPT).write_bytes(os.urandom(4096))
    remanifest(w)
    return _predict(root, w)


def plans_missing(root: Path) -> Setup:
    w = weights_copy(root)
    (w / "model" / "plans.json").unlink()
    remanifest(w)
    return _predict(root, w)


def plans_invalid_json(root: Path) -> Setup:
    w = weights_copy(root)
    (w / "model" / "plans.json").write_text('{"configurations": {')
    remanifest(w)
    return _predict(root, w)


def dataset_missing(root: Path) -> Setup:
    w = weights_copy(root)
    (w / "model" / "dataset.json").unlink()
    remanifest(w)
    return _predict(root, w)


def no_network_weights(root: Path) -> Setup:
    w = weights_copy(root)
    ckpt = _load(w / CKPT)
    del ckpt["network_weights"]
    _save(ckpt, w / CKPT)
    remanifest(w)
    return _predict(root, w)


def extra_checkpoint_key(root: Path) -> Setup:
    w = weights_copy(root)
    ckpt = _load(w / CKPT)
    ckpt["optimizer_state"] = {"lr": 0.01}
    _save(ckpt, w / CKPT)
    remanifest(w)
    return _predict(root, w)


def checkpoint_symlink_outside(root: Path) -> Setup:
    w = weights_copy(root)
    outside = root / "elsewhere" / "checkpoint_final.pth"
    outside.parent.mkdir()
    os.replace(w / CKPT, outside)  # same bytes, same sha256: the manifest still matches
    (w / CKPT).symlink_to(outside)
    return _predict(root, w)


def unlisted_file(root: Path) -> Setup:
    w = weights_copy(root)
    (w / "model" / "fold_0" / "extra.py").write_text("print('not listed in the manifest')\n")
    return _predict(root, w)


def metadata_not_json(root: Path) -> Setup:
    w = weights_copy(root)
    (w / "hnseg_weights.json").write_text("{'task': 'hntsmrg-task1',")
    return _predict(root, w)


# --- pinning the manifest ------------------------------------------------------------------------
WRONG_SHA = "0" * 64


def trusted_manifest_wrong(root: Path) -> Setup:
    w = weights_copy(root)
    return _predict(root, w, "--trusted-manifest", WRONG_SHA, mention=(sha256(w / "hnseg_weights.json"),))


def trusted_manifest_wrong_payload(root: Path) -> Setup:
    """The payload folder with a wrong pin: refused on the metadata's hash, before any unpickling."""
    w, marker = _payload_weights(root)
    return _predict(root, w, "--trusted-manifest", WRONG_SHA, markers=(marker,))


def trusted_manifest_env_wrong_batch(root: Path) -> Setup:
    w = weights_copy(root)
    batch_folder(root / "in" / "p1")
    out = root / "out"
    return Setup(batch_args(out, in_dir=root / "in", weights=w), out=out, env={"HNSEG_TRUSTED_MANIFEST": WRONG_SHA})


def trusted_manifest_malformed(root: Path) -> Setup:
    w = weights_copy(root)
    return _predict(root, w, "--trusted-manifest", "not-a-sha256")


def trusted_manifest_wrong_verify(root: Path) -> Setup:
    w = weights_copy(root)
    return Setup([str(w), "--trusted-manifest", WRONG_SHA])



def metadata_symlink(root: Path) -> Setup:
    """hnseg_weights.json is a symlink to a (valid) metadata file outside the folder."""
    w = weights_copy(root)
    outside = root / "elsewhere.json"
    os.replace(w / "hnseg_weights.json", outside)
    (w / "hnseg_weights.json").symlink_to(outside)
    return _predict(root, w)


def model_folder_symlink(root: Path) -> Setup:
    """model/ is a symlink to a folder outside (its files hash as listed)."""
    w = weights_copy(root)
    outside = root / "elsewhere-model"
    os.replace(w / "model", outside)
    (w / "model").symlink_to(outside, target_is_directory=True)
    return _predict(root, w)
