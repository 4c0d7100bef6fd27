"""Inference engine: load every fold once, predict many cases (a thin layer on nnUNetPredictor).

Per case it runs nnU-Net's own preprocessing, sliding window with Gaussian weighting, fold ensemble,
mirror TTA and export (resampling back to the input grid), in process: no worker pools, so no
/dev/shm trouble under Docker and no per-call start-up cost.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import WeightsError
from hnseg.predict.device import resolve_device
from hnseg.predict.mirroring import mirror_axes
from hnseg.predict.weights import MODEL_DIR, WeightsMetadata, load_verified
from hnseg.settings import PredictSettings

log = logging.getLogger(__name__)


def _quiet_nnunet_env() -> None:
    # nnU-Net warns at import when its path variables are unset; inference never uses them.
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ.setdefault(var, "/tmp/nnunet-unused")
    # checkpoints of hnseg's own trainers name them; nnU-Net looks them up by class name
    from hnseg.training.trainers import make_trainers_findable

    make_trainers_findable()


class Engine:
    """Loaded ensemble for one weights folder."""

    def __init__(self, folder: Path, settings: PredictSettings = PredictSettings()):
        self.folder = Path(folder)
        self.settings = settings
        self.meta: WeightsMetadata = load_verified(self.folder)
        _quiet_nnunet_env()
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        device = resolve_device(settings.device)
        folds = list(settings.folds) if settings.folds else self.meta.nnunet.folds
        unknown = sorted(set(folds) - set(self.meta.nnunet.folds))
        if unknown:
            raise WeightsError(
                f"{self.folder}: folds {unknown} requested, the weights hold {self.meta.nnunet.folds}"
            )
        self.predictor = nnUNetPredictor(
            tile_step_size=settings.tile_step,
            use_gaussian=True,
            use_mirroring=settings.tta != "off",
            perform_everything_on_device=device.type == "cuda",
            device=device,
            verbose=False,
            allow_tqdm=True,
        )
        self.predictor.initialize_from_trained_model_folder(
            str(self.folder / MODEL_DIR), use_folds=tuple(folds), checkpoint_name=self.meta.nnunet.checkpoint
        )
        self._checkpoint_axes = self.predictor.allowed_mirroring_axes
        n_in = len(self.predictor.dataset_json["channel_names"])
        if n_in != len(self.meta.channels):
            raise WeightsError(
                f"{self.folder}: metadata lists {len(self.meta.channels)} channels, the model expects {n_in}"
            )
        log.info("loaded %s: %d fold(s) %s, configuration %s, device %s", self.meta.task, len(folds),
                 folds, self.meta.nnunet.configuration, device)

    def _prepare(self, channels: np.ndarray, reference: sitk.Image) -> dict:
        expected = (len(self.meta.channels),) + tuple(reversed(reference.GetSize()))
        if channels.shape != expected:
            raise ValueError(f"channels shape {channels.shape}, expected {expected}")
        transpose = self.predictor.plans_manager.transpose_forward
        self.predictor.allowed_mirroring_axes = mirror_axes(
            self.settings.tta, self._checkpoint_axes, transpose, reference
        )
        self.predictor.use_mirroring = self.predictor.allowed_mirroring_axes is not None
        return {"spacing": list(reversed(reference.GetSpacing()))}

    @property
    def has_regions(self) -> bool:
        return self.predictor.label_manager.has_regions

    def predict(self, channels: np.ndarray, reference: sitk.Image) -> np.ndarray:
        """Label map (z, y, x) uint8 on the reference grid from stacked channels (c, z, y, x)."""
        props = self._prepare(channels, reference)
        seg = self.predictor.predict_single_npy_array(channels.astype(np.float32, copy=False), props)
        seg = np.asarray(seg)
        if seg.shape != channels.shape[1:]:
            raise RuntimeError(f"nnU-Net returned shape {seg.shape}, expected {channels.shape[1:]}")
        if seg.max(initial=0) > 255 or seg.min(initial=0) < 0:
            raise RuntimeError("label values outside uint8")
        return seg.astype(np.uint8, copy=False)

    def predict_regions(self, channels: np.ndarray, reference: sitk.Image) -> np.ndarray:
        """Region-based weights: (R, z, y, x) uint8 masks, sigmoid probability > 0.5 per region
        (nnU-Net's own region threshold), in the dataset.json region order."""
        if not self.has_regions:
            raise WeightsError(f"{self.folder}: the model is not region-based")
        props = self._prepare(channels, reference)
        _, probs = self.predictor.predict_single_npy_array(
            channels.astype(np.float32, copy=False), props, None, None, True
        )
        masks = np.asarray(probs) > 0.5
        if masks.shape[1:] != channels.shape[1:]:
            raise RuntimeError(f"nnU-Net returned shape {masks.shape}, expected (R, {channels.shape[1:]})")
        return masks.astype(np.uint8)

    def predict_t_stage(self, channels: np.ndarray, reference: sitk.Image, tumor: np.ndarray) -> np.ndarray:
        """Class probabilities of the weights' T-stage head, pooled over the predicted tumor."""
        from hnseg.training.trainers.stage_head import predict_t_stage

        spacing_zyx = tuple(reversed(reference.GetSpacing()))
        return predict_t_stage(self.predictor, channels.astype(np.float32, copy=False), spacing_zyx,
                               tumor.astype(bool))
