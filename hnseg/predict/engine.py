"""Inference engine: load every fold once, predict many cases (a thin layer on nnUNetPredictor).

Per case it runs nnU-Net's own preprocessing, sliding window with Gaussian weighting, fold ensemble,
mirror TTA and export (resampling back to the input grid), in process: no worker pools, so no
/dev/shm trouble under Docker and no per-call start-up cost.

The predictor is initialised with ``manual_initialization`` from checkpoints hnseg loaded itself
(``weights.load_weights``: weights_only, schema-checked), not with nnU-Net's
``initialize_from_trained_model_folder``, which unpickles them with ``weights_only=False``.
:func:`build_network` otherwise does what that function does (same network, parameters, axes).
"""

from __future__ import annotations

import inspect
import logging
import os
import pydoc
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import HnsegError, WeightsError
from hnseg.predict.device import resolve_device
from hnseg.predict.mirroring import mirror_axes
from hnseg.predict.weights import MODEL_DIR, LoadedWeights, WeightsMetadata, load_weights
from hnseg.settings import PredictSettings

log = logging.getLogger(__name__)


def _quiet_nnunet_env() -> None:
    # nnU-Net warns at import when its path variables are unset; inference never uses them.
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ.setdefault(var, "/tmp/nnunet-unused")
    # checkpoints of hnseg's own trainers name them; nnU-Net looks them up by class name
    from hnseg.training.trainers import make_trainers_findable

    make_trainers_findable()


# plans.json names classes that nnU-Net imports (pydoc.locate) and calls; only these packages' classes
ARCH_PACKAGE = "dynamic_network_architectures."
ARCH_KWARG_PACKAGE = "torch.nn."


def _located_class(name, package: str, what: str, plans_path: Path, required: bool = True):
    import torch

    if not isinstance(name, str) or not name.startswith(package):
        raise WeightsError(f"{plans_path}: expected {what} from {package.rstrip('.')}, found {name!r}")
    obj = pydoc.locate(name)
    if obj is None and not required:
        return None  # nnU-Net looks it up by class name inside dynamic_network_architectures
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__.startswith(package)):
        raise WeightsError(f"{plans_path}: expected {what} (a torch.nn.Module class from "
                           f"{package.rstrip('.')}), found {name!r} = {obj!r}")
    return obj


def _check_architecture(configuration_manager, plans_path: Path) -> None:
    kwargs = configuration_manager.network_arch_init_kwargs
    for key in configuration_manager.network_arch_init_kwargs_req_import:
        if kwargs[key] is not None:
            _located_class(kwargs[key], ARCH_KWARG_PACKAGE, f"architecture argument {key}", plans_path)
    _located_class(configuration_manager.network_arch_class_name, ARCH_PACKAGE, "the network class",
                   plans_path, required=False)


@dataclass
class BuiltNetwork:
    """What ``nnUNetPredictor.manual_initialization`` takes (the network holds the first fold's weights)."""

    network: object
    plans_manager: object
    configuration_manager: object
    parameters: list
    dataset_json: dict
    trainer_name: str
    inference_allowed_mirroring_axes: tuple[int, ...] | None


def build_network(loaded: LoadedWeights) -> BuiltNetwork:
    """The network of ``initialize_from_trained_model_folder``, from checked files; every fold's
    weights are loaded into it once (so a fold that does not fit fails here, not mid-prediction),
    the first fold's last, as nnU-Net leaves it."""
    _quiet_nnunet_env()
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_path = loaded.folder / MODEL_DIR / "plans.json"
    dataset_path = loaded.folder / MODEL_DIR / "dataset.json"
    first = loaded.first
    try:
        plans_manager = PlansManager(loaded.plans)
        configuration_manager = plans_manager.get_configuration(first.configuration)
        _check_architecture(configuration_manager, plans_path)
    except HnsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed plans file is the user's error
        raise WeightsError(f"{plans_path}: expected nnU-Net plans with configuration {first.configuration!r}, "
                           f"found: {type(exc).__name__}: {exc}") from None
    try:
        num_input_channels = determine_num_input_channels(plans_manager, configuration_manager, loaded.dataset_json)
        num_output_channels = plans_manager.get_label_manager(loaded.dataset_json).num_segmentation_heads
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{dataset_path}: expected nnU-Net's dataset.json (labels, channel_names), "
                           f"found: {type(exc).__name__}: {exc}") from None
    try:
        trainer_class = recursive_find_trainer_class_by_name(first.trainer_name)
    except (RuntimeError, AssertionError) as exc:
        raise WeightsError(f"{first.path}: expected trainer_name naming an nnU-Net or hnseg trainer, found "
                           f"{first.trainer_name!r} ({exc})") from None
    try:
        sig = inspect.signature(trainer_class.build_network_architecture)
        if "plans_manager" in sig.parameters:
            network = trainer_class.build_network_architecture(
                plans_manager, configuration_manager, num_input_channels, num_output_channels,
                enable_deep_supervision=False,
            )
        else:  # nnU-Net's deprecated signature, kept as nnU-Net keeps it
            warnings.warn(f"Trainer {first.trainer_name} uses the old build_network_architecture signature.",
                          DeprecationWarning, stacklevel=2)
            network = trainer_class.build_network_architecture(
                configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
                configuration_manager.network_arch_init_kwargs_req_import, num_input_channels,
                num_output_channels, enable_deep_supervision=False,
            )
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{plans_path}: expected an architecture {trainer_class.__name__} can build, "
                           f"found: {type(exc).__name__}: {exc}") from None
    checkpoints = list(loaded.checkpoints.values())
    for ck in checkpoints[1:] + checkpoints[:1]:
        try:
            network.load_state_dict(ck.network_weights)
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{ck.path}: expected network weights fitting the network of {plans_path.name}, "
                               f"found: {str(exc).strip().splitlines()[0][:300]}") from None
    return BuiltNetwork(network, plans_manager, configuration_manager, [ck.network_weights for ck in checkpoints],
                        loaded.dataset_json, first.trainer_name, first.inference_allowed_mirroring_axes)


class Engine:
    """Loaded ensemble for one weights folder."""

    def __init__(self, folder: Path, settings: PredictSettings = PredictSettings()):
        self.folder = Path(folder)
        self.settings = settings
        loaded = load_weights(self.folder, list(settings.folds) if settings.folds else None,
                              trusted=settings.trusted_manifest)
        self.meta: WeightsMetadata = loaded.meta
        folds = list(loaded.checkpoints)
        built = build_network(loaded)
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        device = resolve_device(settings.device)
        self.predictor = nnUNetPredictor(
            tile_step_size=settings.tile_step,
            use_gaussian=True,
            use_mirroring=settings.tta != "off",
            perform_everything_on_device=device.type == "cuda",
            device=device,
            verbose=False,
            allow_tqdm=True,
        )
        self.predictor.manual_initialization(
            built.network, built.plans_manager, built.configuration_manager, built.parameters,
            built.dataset_json, built.trainer_name, built.inference_allowed_mirroring_axes,
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
