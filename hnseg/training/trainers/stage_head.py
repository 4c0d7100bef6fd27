"""T-stage head on an nnU-Net segmentation network, and its inference helper.

:class:`StagedNetwork` wraps the network nnU-Net builds from the plans (``seg``) and adds a linear
classifier (``stage_head``). A forward hook on the last decoder stage (the full-resolution feature
map the final 1×1 segmentation conv reads) stashes those features in ``last_features``; the
classifier reads ``[masked mean of the features over the tumour, log1p(tumour voxels)/10]``.
``forward`` returns exactly what ``seg`` returns, so nnU-Net's losses, validation and predictor work
unchanged; state-dict keys are ``seg.*`` and ``stage_head.*``.

Number of classes: nnU-Net calls ``build_network_architecture`` with architecture arguments and
channel counts only (no dataset.json), so the head has :data:`N_STAGE_CLASSES` (= 4: T1..T4)
outputs; the multi-task trainer checks at ``initialize`` that the dataset's ``t_stage`` classes
have that length.

:func:`predict_t_stage` runs the head of an initialised ``nnUNetPredictor`` on one case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["N_STAGE_CLASSES", "StagedNetwork", "predict_t_stage", "map_to_preprocessed",
           "window_start", "tumor_output_channels", "piece_structures"]

N_STAGE_CLASSES = 4

_EPS = 1e-6


class StagedNetwork(nn.Module):
    """``seg`` (an nnU-Net ``PlainConvUNet``/``ResidualEncoderUNet``-style network with a
    ``UNetDecoder``) plus ``stage_head = nn.Linear(F + 1, n_classes)``, F = channels of the last
    decoder stage."""

    def __init__(self, seg: nn.Module, n_classes: int = N_STAGE_CLASSES):
        super().__init__()
        decoder = getattr(seg, "decoder", None)
        stages = getattr(decoder, "stages", None)
        seg_layers = getattr(decoder, "seg_layers", None)
        if stages is None or seg_layers is None or len(stages) == 0:
            raise TypeError(f"{type(seg).__name__} has no UNetDecoder (decoder.stages / decoder.seg_layers): "
                            "the T-stage head needs the full-resolution decoder features")
        self.seg = seg
        self.n_classes = int(n_classes)
        self.n_features = int(seg_layers[-1].in_channels)
        self.stage_head = nn.Linear(self.n_features + 1, self.n_classes)
        self.last_features: torch.Tensor | None = None
        stages[-1].register_forward_hook(self._capture)

    # nnU-Net's set_deep_supervision_enabled touches network.decoder; properties (not registered
    # submodules) keep the state dict free of duplicate encoder.*/decoder.* keys.
    @property
    def decoder(self) -> nn.Module:
        return self.seg.decoder

    @property
    def encoder(self) -> nn.Module:
        return self.seg.encoder

    def _capture(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self.last_features = output

    def forward(self, x: torch.Tensor):
        return self.seg(x)

    def stage_logits(self, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B, n_classes) logits from features (B, F, *spatial) and voxel weights (B, 1, *spatial) >= 0.

        Pools in float32: ``sum(w·f)/max(sum(w), 1e-6)`` per channel, plus ``log1p(sum(w))/10``
        (the tumour size in patch voxels). All-zero weights give pooled features 0 and size 0.
        """
        if features.shape[0] != weights.shape[0] or weights.shape[1] != 1 or features.shape[2:] != weights.shape[2:]:
            raise ValueError(f"weights {tuple(weights.shape)} do not match features {tuple(features.shape)}: "
                             "need (B, 1, *spatial)")
        f = features.float()
        w = weights.float()
        axes = tuple(range(2, f.ndim))
        mass = w.sum(axes)  # (B, 1)
        pooled = (f * w).sum(axes) / mass.clamp_min(_EPS)
        size = torch.log1p(mass) / 10.0
        return self.stage_head(torch.cat([pooled, size], dim=1))


def _unwrap(network: nn.Module) -> nn.Module:
    """The module holding the weights: strips torch.compile's ``_orig_mod`` and DDP's ``module``."""
    seen = 0
    while seen < 4:
        if hasattr(network, "_orig_mod"):
            network = network._orig_mod
        elif isinstance(network, nn.parallel.DistributedDataParallel):
            network = network.module
        else:
            break
        seen += 1
    return network


def tumor_output_channels(dataset_json: dict, label_manager, tumor: str) -> list[int]:
    """Output channels whose probabilities sum to the tumour's: its region index (labels order,
    background and ignore skipped) for region-based datasets; for label maps every label whose name,
    split at ``+`` (hnseg's piece names, ``GTVp+CTV70+CTV63``), lists the tumour."""
    labels = dataset_json["labels"]
    if label_manager.has_regions:
        names = region_names(labels)
        if tumor not in names:
            raise KeyError(f"tumour structure {tumor!r} is not a region in dataset.json labels {names}")
        return [names.index(tumor)]
    values = piece_structures(labels).get(tumor)
    if not values:
        raise KeyError(f"tumour structure {tumor!r} is in no label of dataset.json {list(labels)}")
    return sorted(values)


def piece_structures(labels: dict) -> dict[str, list[int]]:
    """Label-map dataset: structure → its label values, every label named by its members joined
    with ``+`` (hnseg's piece names, ``hnseg.tasks.encoding.Piece.name``), in labels order."""
    out: dict[str, list[int]] = {}
    for name, value in labels.items():
        vals = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        if name in ("background", "ignore") or vals == [0]:
            continue
        for member in name.split("+"):
            out.setdefault(member, []).extend(vals)
    return out


def region_names(labels: dict) -> list[str]:
    """Names of nnU-Net's region output channels, in channel order (``LabelManager._get_regions``)."""
    names = []
    for k, r in labels.items():
        if k == "ignore":
            continue
        vals = r if isinstance(r, (list, tuple)) else [r]
        if len(set(int(v) for v in vals)) == 1 and int(vals[0]) == 0:
            continue
        names.append(k)
    return names


def map_to_preprocessed(point_zyx: Sequence[float], transpose_forward: Sequence[int],
                        bbox: Sequence[Sequence[int]], shape_before_resampling: Sequence[int],
                        shape_after_resampling: Sequence[int]) -> np.ndarray:
    """Map a (continuous) voxel index on the input grid into nnU-Net's preprocessed voxel space.

    1. transpose like the preprocessor (axis ``i`` of the result is input axis ``transpose_forward[i]``);
    2. subtract the lower corner of ``bbox`` (``bbox_used_for_cropping``, in transposed order);
    3. resample: nnU-Net resizes the cropped volume to the new shape with voxel *centres* aligned
       to the extent, so ``new = (old + 0.5) · n_new / n_old − 0.5`` per axis.
    """
    p = np.asarray([float(point_zyx[a]) for a in transpose_forward])
    lo = np.asarray([float(b[0]) for b in bbox])
    old = np.asarray(shape_before_resampling, dtype=float)
    new = np.asarray(shape_after_resampling, dtype=float)
    return (p - lo + 0.5) * new / old - 0.5


def window_start(center: float, size: int, patch: int) -> int:
    """Start index of a ``patch``-long window centred (as well as it fits) on ``center`` in an axis
    of length ``size >= patch``."""
    if size < patch:
        raise ValueError(f"axis of length {size} is shorter than the patch {patch}: pad first")
    start = int(math.floor(center - (patch - 1) / 2.0 + 0.5))
    return min(max(start, 0), size - patch)


@torch.no_grad()
def predict_t_stage(predictor, channels: np.ndarray, spacing_zyx: tuple, tumor_mask: np.ndarray) -> np.ndarray:
    """T-stage class probabilities (n_classes,), summing to 1, for one case.

    ``predictor``: an initialised ``nnUNetPredictor`` whose network is a :class:`StagedNetwork`
    (possibly compiled). ``channels`` (c, z, y, x) float32 and ``tumor_mask`` (z, y, x) bool on the
    same (reference) grid, ``spacing_zyx`` in mm.

    1. ``channels`` are preprocessed with the configuration's preprocessor (``run_case_npy``), as
       ``predict_single_npy_array`` does: transpose, crop to non-zero, normalise, resample.
    2. The centroid of ``tumor_mask`` is mapped into preprocessed voxels (:func:`map_to_preprocessed`);
       an EMPTY mask centres the window on the centre of the preprocessed volume instead.
    3. A window of the configuration's patch size is cut around it (clamped inside the volume); a
       volume smaller than the patch is first zero-padded like nnU-Net's sliding window
       (``pad_nd_image``, constant 0, split evenly).
    4. For every fold's parameters (``predictor.list_of_parameters``; the current weights when that is
       None): load them, forward the window once (fp32, no mirroring), pool the captured features
       with the network's OWN sigmoid (regions) / summed softmax (label maps, pieces) tumour probability in the
       window as weights, softmax; the fold probabilities are averaged.

    Deterministic for a given predictor and input; leaves the last fold's weights loaded (like
    nnU-Net's own fold loop).
    """
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    channels = np.asarray(channels)
    tumor_mask = np.asarray(tumor_mask).astype(bool)
    if channels.ndim != 4:
        raise ValueError(f"channels must be (c, z, y, x), got shape {channels.shape}")
    if tumor_mask.shape != channels.shape[1:]:
        raise ValueError(f"tumor_mask {tumor_mask.shape} is not on the channels' grid {channels.shape[1:]}")
    if len(spacing_zyx) != 3:
        raise ValueError(f"spacing_zyx must have 3 entries, got {spacing_zyx}")

    plans_manager = predictor.plans_manager
    cm = predictor.configuration_manager
    dataset_json = predictor.dataset_json
    spec = (dataset_json.get("hnseg") or {}).get("t_stage")
    if not spec:
        raise ValueError("dataset.json has no hnseg.t_stage entry: this model has no T-stage task")
    tumor_ch = tumor_output_channels(dataset_json, predictor.label_manager, spec["tumor"])
    regions = predictor.label_manager.has_regions

    network = _unwrap(predictor.network)
    if not hasattr(network, "stage_logits"):
        raise TypeError(f"predictor.network is a {type(network).__name__}, not a StagedNetwork: "
                        "the model was not trained with the multi-task trainer")
    n_classes = network.n_classes
    if len(spec["classes"]) != n_classes:
        raise ValueError(f"dataset.json lists {len(spec['classes'])} T-stage classes, the head has {n_classes}")

    preprocessor = cm.preprocessor_class(verbose=False)
    data, _, props = preprocessor.run_case_npy(channels.astype(np.float32, copy=False), None,
                                               {"spacing": [float(s) for s in spacing_zyx]},
                                               plans_manager, cm, dataset_json)
    shape = data.shape[1:]
    if tumor_mask.any():
        centroid = np.argwhere(tumor_mask).mean(axis=0)
        center = map_to_preprocessed(centroid, plans_manager.transpose_forward, props["bbox_used_for_cropping"],
                                     props["shape_after_cropping_and_before_resampling"], shape)
    else:
        center = (np.asarray(shape, dtype=float) - 1) / 2.0

    patch = [int(p) for p in cm.patch_size]
    if len(patch) != 3:
        raise NotImplementedError(f"predict_t_stage supports 3D configurations, patch size is {patch}")
    tensor = torch.from_numpy(np.ascontiguousarray(data))
    padded, revert = pad_nd_image(tensor, patch, "constant", {"value": 0}, True, None)
    offsets = [s.start for s in revert[1:]]  # padding added before each axis
    starts = [window_start(center[a] + offsets[a], padded.shape[1 + a], patch[a]) for a in range(3)]
    window = padded[(slice(None), *[slice(s, s + p) for s, p in zip(starts, patch)])][None].float()

    device = getattr(predictor, "device", torch.device("cpu"))
    network = network.to(device)
    network.eval()
    window = window.to(device)
    params = predictor.list_of_parameters or [None]
    probs = []
    for p in params:
        if p is not None:
            network.load_state_dict(p)
        out = network(window)
        if isinstance(out, (list, tuple)):  # deep supervision left on: full resolution first
            out = out[0]
        out = out.float()
        weights = torch.sigmoid(out[:, tumor_ch]) if regions \
            else torch.softmax(out, 1)[:, tumor_ch].sum(1, keepdim=True)
        logits = network.stage_logits(network.last_features, weights)
        probs.append(torch.softmax(logits.float(), dim=1)[0].double().cpu())
    mean = torch.stack(probs).mean(0).numpy()
    return mean / mean.sum()
