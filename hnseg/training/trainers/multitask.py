"""``nnUNetTrainerHnsegMultiTask``: Grad-MTSeg idea on nnU-Net, with structures as regions or pieces.

Two encodings of overlapping structures (``hnseg.tasks.encoding``):

* **regions**: nnU-Net region-based dataset, one sigmoid channel per structure (below).
* **pieces**: a label-map dataset whose labels are the non-overlapping pieces, each named by its
  members joined with ``+`` (``"GTVp+CTV70+CTV63": 25``); the network's softmax is over pieces and a
  structure's probability is the sum over its pieces. Measured on the NPC phantoms (CPU, 2,000
  iterations) the sigmoid regions left small and mid-sized OARs at Dice 0 while the softmax pieces
  of the same data train them like SegRap task 1 does, hence pieces for the demo weights.

dataset.json contract (region-based example plus hnseg's own key)::

    "labels": {"background": 0, "BrainStem": [5], ..., "GTVp": [3], "CTV70": [2, 3, 4], ...},
    "regions_class_order": [...],
    "hnseg": {"task_groups": {"oar": ["BrainStem", ...], "gtv": ["GTVp", "GTVn"], "ctv": ["CTV70", "CTV63"]},
              "t_stage": {"classes": ["T1", "T2", "T3", "T4"], "tumor": "GTVp"},   # optional
              "task_granularity": "group"}                                          # or "structure"

* nnU-Net trains one sigmoid channel per region, in ``labels`` order (background/ignore skipped);
  its data loader turns the integer label map into per-region binary targets
  (``batch['target']``: a list over deep-supervision scales, full resolution first, each
  (B, regions[+ignore], *patch) bool).
* Every region must belong to exactly one task group, and every grouped name must be a region.
* Tasks: ``task_granularity`` "group" → one segmentation task per group (named like the group, its
  channels' loss); "structure" → one task per structure. With ``t_stage``, an extra task
  ``t_stage`` is placed in the group that holds the tumour structure.
* T stages per case: ``<preprocessed dataset folder>/hnseg_t_stage.json`` =
  ``{"classes": [...same as dataset.json...], "cases": {"<case identifier>": "T2" | null, ...}}``
  (``null`` = stage unknown: the case trains the segmentation only); checked at ``initialize``
  (file, classes, values) and when the training split is loaded (every training case listed).

Per-task segmentation loss (pieces): :class:`PieceRegionLoss` on the task's structures -- soft Dice
(nnU-Net's ``MemoryEfficientSoftDiceLoss``, batch Dice from the configuration, ``do_bg=True``,
``smooth=1e-5``) plus the binary cross-entropies of the structures' probabilities, summed over the
task's structures; deep-supervised with nnU-Net's weights.

Per-task segmentation loss (regions): nnU-Net's region loss (``DC_and_BCE_loss``, batch Dice from the
configuration, ``do_bg=True``, ``smooth=1e-5``, ignore label as nnU-Net handles it) on the task's
channels only, deep-supervised with nnU-Net's weights. T-stage loss: cross-entropy of
``StagedNetwork.stage_logits`` pooled with the GROUND-TRUTH full-resolution tumour region of the
patch; samples without tumour voxels (or with an unknown stage) are left out; a batch without such a
sample gives a constant 0 loss (zero gradient for that task). The tumour region is the union of
its pieces in pieces mode.

``train_step``: one forward (autocast on CUDA as nnU-Net does, plain fp32 on CPU), every task's
loss, then :func:`hnseg.training.gradient_surgery.apply_surgery` over the SHARED parameters with the
hierarchical groups (PCGrad within each group, then across groups; random projection order from a
generator seeded by the fold). "Shared" = every parameter of the segmentation network except the
1×1 output convolutions ``decoder.seg_layers`` (with regions each output channel's weights only
receive gradient from the task that owns the channel, so they are per-task heads, as is
``stage_head``; with pieces a piece channel can serve several tasks, and the output layer is still
left out of the surgery, as a shared head); the heads get the plain gradient of the summed loss.
Then gradient clipping (12) and the optimizer step as nnU-Net does (with its GradScaler on CUDA: the task losses are scaled before the surgery -- projection is
scale-equivariant -- and a non-finite scaled gradient makes the scaler skip the step). Returns
``{'loss': summed task losses}``. Not supported under DDP (``autograd.grad`` bypasses DDP's
gradient all-reduce).

torch.compile is off for this trainer (nnU-Net turns it on by default on CUDA): the feature hook and
the repeated per-task ``autograd.grad`` over one graph are not validated under compile.

Validation keeps nnU-Net's ``validation_step`` with ``self.loss`` = nnU-Net's standard region loss.

Diagnostics: per epoch, the means of ``apply_surgery``'s diagnostics (conflicts within/across
groups, group cosines, combined gradient norm), the mean task losses and the number of batches that
trained the T stage are appended to ``self.surgery_log`` (a list of dicts), written to the training
log and to ``<fold output>/hnseg_surgery_log.json``.

Mirroring: left-right mirroring would swap lateralised structures (Parotid_L/R, ...). Arrays read
by nnU-Net's readers are (z, y, x) with x = the image's first index axis, which is the patient's
left-right axis for axially stored images with a near-identity direction matrix (the usual case
for head-and-neck CT/MR, and the case by construction: hnseg's conversion brings every sample to
the canonical LPS orientation, hnseg.preprocess.orientation). The preprocessed
volume axis ``i`` is input axis ``transpose_forward[i]``, so the left-right axis is
``transpose_forward.index(2)`` -- the last axis (2) for the usual identity transpose; in 2D
configurations the patch axes are volume axes 1 and 2 (no restriction needed when the left-right
axis is the slicing axis). That axis is removed from the training mirror axes and
from ``inference_allowed_mirroring_axes`` (stored in checkpoints, used by nnU-Net's TTA).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import autocast, nn

from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context

from hnseg.training.gradient_surgery import apply_surgery
from hnseg.training.trainers.dice_focal import deep_supervision_weights
from hnseg.training.trainers.label_resampling import NearestLabelResamplingMixin
from hnseg.training.trainers.lateral import NoLeftRightMirroringMixin, left_right_patch_axis  # noqa: F401
from hnseg.training.trainers.stage_head import N_STAGE_CLASSES, StagedNetwork, piece_structures, region_names

__all__ = ["TaskLayout", "task_layout", "left_right_patch_axis", "nnUNetTrainerHnsegMultiTask",
           "T_STAGE_FILE", "T_STAGE_TASK", "PieceRegionLoss"]

T_STAGE_FILE = "hnseg_t_stage.json"
T_STAGE_TASK = "t_stage"
SURGERY_LOG_FILE = "hnseg_surgery_log.json"


@dataclass(frozen=True)
class TaskLayout:
    """Segmentation tasks (name → output channels), surgery groups (group → task names, the
    T-stage task included) and the T-stage spec (None without one)."""

    tasks: dict[str, list[int]]
    groups: dict[str, list[str]]
    stage_classes: list[str] | None = None
    tumor: str | None = None
    tumor_channel: int | None = None
    regions: list[str] = field(default_factory=list)
    # pieces mode: the piece label values of each structure in ``regions`` (None: region-based)
    structure_pieces: list[list[int]] | None = None


def task_layout(dataset_json: dict) -> TaskLayout:
    """Tasks and groups from dataset.json's ``labels`` and ``hnseg`` key (see the module doc)."""
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict):
        raise ValueError("dataset.json has no 'labels' dict")
    # nnU-Net's LabelManager rule (its constructor also demands regions_class_order): regions when a
    # label lists more than one value
    region_based = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    pieces = None if region_based else piece_structures(labels)
    regions = region_names(labels) if pieces is None else list(pieces)
    meta = dataset_json.get("hnseg")
    if not isinstance(meta, dict) or not isinstance(meta.get("task_groups"), dict) or not meta["task_groups"]:
        raise ValueError("dataset.json needs an 'hnseg' key with non-empty 'task_groups' "
                         "({group: [structure, ...]}) for the multi-task trainer")
    groups_in: dict[str, list[str]] = {g: list(s) for g, s in meta["task_groups"].items()}
    granularity = meta.get("task_granularity", "group")
    if granularity not in ("group", "structure"):
        raise ValueError(f"hnseg.task_granularity must be 'group' or 'structure', got {granularity!r}")

    owner: dict[str, str] = {}
    for g, structures in groups_in.items():
        if not structures:
            raise ValueError(f"task group {g!r} is empty")
        for s in structures:
            if s not in regions:
                raise ValueError(f"task group {g!r} lists {s!r}, which is not a {'region' if pieces is None else 'piece member'} "
                                 f"in dataset.json labels {regions}")
            if s in owner:
                raise ValueError(f"structure {s!r} is in task groups {owner[s]!r} and {g!r}: one group each")
            owner[s] = g
    ungrouped = [r for r in regions if r not in owner]
    if ungrouped:
        raise ValueError(f"regions {ungrouped} are in no hnseg.task_groups group: every output needs a task")

    tasks: dict[str, list[int]] = {}
    groups: dict[str, list[str]] = {}
    for g, structures in groups_in.items():
        if granularity == "group":
            tasks[g] = [regions.index(s) for s in structures]
            groups[g] = [g]
        else:
            for s in structures:
                tasks[s] = [regions.index(s)]
            groups[g] = list(structures)

    structure_pieces = None if pieces is None else [pieces[r] for r in regions]
    spec = meta.get("t_stage")
    if not spec:
        return TaskLayout(tasks=tasks, groups=groups, regions=regions, structure_pieces=structure_pieces)
    classes, tumor = list(spec.get("classes") or []), spec.get("tumor")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"hnseg.t_stage.classes must be >= 2 distinct names, got {classes}")
    if tumor not in owner:
        raise ValueError(f"hnseg.t_stage.tumor {tumor!r} is not a grouped region ({regions})")
    if T_STAGE_TASK in tasks:
        raise ValueError(f"a segmentation task is named {T_STAGE_TASK!r}, which is reserved for the T stage")
    groups[owner[tumor]].append(T_STAGE_TASK)
    return TaskLayout(tasks=tasks, groups=groups, stage_classes=classes, tumor=tumor,
                      tumor_channel=regions.index(tumor), regions=regions, structure_pieces=structure_pieces)


class PieceRegionLoss(nn.Module):
    """Soft Dice + BCE of structure probabilities built from a softmax over pieces.

    ``forward(logits (B, C, *sp), target (B, 1, *sp) piece labels)``. Structure ``s`` has probability
    ``p_s = Σ_{v ∈ pieces_s} softmax_v`` and ``1 - p_s`` is summed from the other pieces (no
    cancellation); one matrix product with the membership table gives all structures (15 per-structure
    logsumexps cost ~2 s per 48×64×64 batch on the CPU). Loss = soft Dice (mean over structures) +
    BCE summed over structures. Logs are clamped at 1e-12. Voxels labelled ``ignore_label`` are left out.
    """

    _EPS = 1e-12

    def __init__(self, structure_pieces: list[list[int]], n_classes: int, batch_dice: bool,
                 ignore_label: int | None = None):
        super().__init__()
        if not structure_pieces or any(not p or 0 in p for p in structure_pieces):
            raise ValueError(f"every structure needs >= 1 piece value > 0, got {structure_pieces}")
        if max(max(p) for p in structure_pieces) >= n_classes:
            raise ValueError(f"piece values {structure_pieces} outside the {n_classes} output channels")
        self.ignore_label = ignore_label
        # membership table (S, C), built once; a plain attribute (nnU-Net never moves losses to the device)
        self.table = torch.zeros(len(structure_pieces), n_classes)
        for s, values in enumerate(structure_pieces):
            self.table[s, values] = 1.0
        self.dice = MemoryEfficientSoftDiceLoss(apply_nonlin=None, batch_dice=batch_dice, do_bg=True,
                                                smooth=1e-5, ddp=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long()
        if logits.shape[1] != self.table.shape[1]:
            raise ValueError(f"{logits.shape[1]} output channels, the piece table has {self.table.shape[1]}")
        table = self.table.to(logits.device)
        valid = None
        if self.ignore_label is not None:
            valid = labels != self.ignore_label
            labels = torch.where(valid, labels, torch.zeros_like(labels))
        probs = torch.softmax(logits.float(), 1)
        p_in = torch.einsum("bc...,sc->bs...", probs, table)
        p_out = torch.einsum("bc...,sc->bs...", probs, 1.0 - table)
        y = table.t()[labels].movedim(-1, 1)  # (B, S, *sp) in {0, 1}
        term = -(y * torch.log(p_in.clamp_min(self._EPS)) + (1 - y) * torch.log(p_out.clamp_min(self._EPS)))
        axes = [0, *range(2, term.ndim)]
        if valid is None:
            bce = term.mean(axes)
            mask = None
        else:
            mask = valid[:, None].float()
            bce = (term * mask).sum(axes) / mask.sum().clamp_min(1.0)
        # BCE summed over the structures (≈ a cross-entropy over them): their mean made each structure's
        # term 1/S as strong, and 15 OARs barely moved in 300 CPU iterations
        return self.dice(p_in, y, loss_mask=mask) + bce.sum()


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


class nnUNetTrainerHnsegMultiTask(NearestLabelResamplingMixin, NoLeftRightMirroringMixin, nnUNetTrainer):
    """Region-based nnU-Net + per-task losses + hierarchical gradient surgery + T-stage head.

    Overrides: ``__init__`` (state), ``initialize`` (task layout, T-stage file, losses),
    ``_do_i_compile`` (always False),
    ``build_network_architecture`` (:class:`StagedNetwork` around nnU-Net's network),
    ``configure_rotation_dummyDA_mirroring_and_inital_patch_size`` (no left-right mirroring),
    ``get_tr_and_val_datasets`` (every training case has a T stage), ``train_step``,
    ``on_train_epoch_start``/``on_train_epoch_end`` (surgery diagnostics).
    """

    surgery_shuffle: bool = True  # PCGrad's random projection order (seeded per fold)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.surgery_log: list[dict] = []
        self._epoch_diag: list[dict] = []
        self.layout: TaskLayout | None = None
        self._case_stage: dict[str, int] = {}
        self._t_stage_file: Path | None = None
        self._region_loss: nn.Module | None = None
        self._piece_losses: dict[str, nn.Module] = {}
        self._surgery_generator: torch.Generator | None = None

    # ---- network ---------------------------------------------------------------------------------

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        seg = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                       num_output_channels, enable_deep_supervision)
        return StagedNetwork(seg, n_classes=N_STAGE_CLASSES)

    def _do_i_compile(self) -> bool:
        """torch.compile stays off: the feature hook and the repeated per-task ``autograd.grad`` over
        one graph are not validated under compile."""
        if super()._do_i_compile() and not getattr(self, "_compile_note", False):
            self._compile_note = True
            self.print_to_log_file(f"INFO: torch.compile disabled for {type(self).__name__}")
        return False

    def _module(self) -> StagedNetwork:
        net = self.network.module if self.is_ddp else self.network
        return getattr(net, "_orig_mod", net)

    # ---- set-up ----------------------------------------------------------------------------------

    def initialize(self):
        if self.is_ddp:
            raise NotImplementedError("nnUNetTrainerHnsegMultiTask does not support DDP: gradient surgery uses "
                                      "torch.autograd.grad, which bypasses DDP's gradient all-reduce")
        self.layout = task_layout(self.dataset_json)
        if self.layout.stage_classes is not None:
            if len(self.layout.stage_classes) != N_STAGE_CLASSES:
                raise ValueError(f"the T-stage head has {N_STAGE_CLASSES} outputs (stage_head.N_STAGE_CLASSES) but "
                                 f"dataset.json lists {len(self.layout.stage_classes)} classes "
                                 f"{self.layout.stage_classes}")
            self._case_stage = self._load_case_stages()
        super().initialize()
        if self.layout.structure_pieces is None:
            self._region_loss = self._build_region_loss()
        else:
            self._piece_losses = {name: self._build_piece_loss([self.layout.structure_pieces[c] for c in ch])
                                  for name, ch in self.layout.tasks.items()}
        seed = 12345 + (self.fold if isinstance(self.fold, int) else 0)
        self._surgery_generator = torch.Generator().manual_seed(seed) if self.surgery_shuffle else None
        self.print_to_log_file(f"multi-task layout: tasks {self.layout.tasks}, surgery groups {self.layout.groups}, "
                               f"T stage {self.layout.stage_classes} on {self.layout.tumor}")

    def _load_case_stages(self) -> dict[str, int]:
        path = Path(self.preprocessed_dataset_folder_base or "") / T_STAGE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"T-stage labels {path} not found: write {{'classes': [...], 'cases': "
                                    f"{{case: stage}}}} there before training {type(self).__name__}")
        content = json.loads(path.read_text())
        classes = list(content.get("classes") or [])
        if classes != self.layout.stage_classes:
            raise ValueError(f"{path}: classes {classes} differ from dataset.json hnseg.t_stage.classes "
                             f"{self.layout.stage_classes}")
        cases = content.get("cases")
        if not isinstance(cases, dict):
            raise ValueError(f"{path} has no 'cases' dict")
        bad = {k: v for k, v in cases.items() if v is not None and v not in classes}
        if bad:
            raise ValueError(f"{path}: unknown T stages {bad} (classes {classes})")
        self._t_stage_file = path
        return {k: (-1 if v is None else classes.index(v)) for k, v in cases.items()}

    def _build_region_loss(self) -> nn.Module:
        loss = DC_and_BCE_loss({}, {"batch_dice": self.configuration_manager.batch_dice, "do_bg": True,
                                    "smooth": 1e-5, "ddp": self.is_ddp},
                               use_ignore_label=self.label_manager.ignore_label is not None,
                               dice_class=MemoryEfficientSoftDiceLoss)
        if self.enable_deep_supervision:
            loss = DeepSupervisionWrapper(loss, deep_supervision_weights(self))
        return loss

    def _build_piece_loss(self, structure_pieces: list[list[int]]) -> nn.Module:
        loss = PieceRegionLoss(structure_pieces, self.label_manager.num_segmentation_heads,
                               self.configuration_manager.batch_dice, self.label_manager.ignore_label)
        if self.enable_deep_supervision:
            loss = DeepSupervisionWrapper(loss, deep_supervision_weights(self))
        return loss

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        if self.layout is not None and self.layout.stage_classes is not None:
            missing = sorted(k for k in dataset_tr.identifiers if k not in self._case_stage)
            if missing:
                raise KeyError(f"{self._t_stage_file} has no T stage for training cases {missing}")
        return dataset_tr, dataset_val

    # ---- training --------------------------------------------------------------------------------

    def _task_loss(self, output, target, name: str) -> torch.Tensor:
        if self.layout.structure_pieces is not None:
            loss = self._piece_losses[name]
            if isinstance(output, (list, tuple)):
                return loss(output, target)
            return loss(output, target[0] if isinstance(target, (list, tuple)) else target)
        channels = self.layout.tasks[name]
        idx = list(channels) + ([-1] if self.label_manager.ignore_label is not None else [])
        if isinstance(output, (list, tuple)):
            return self._region_loss([o[:, channels] for o in output], [t[:, idx] for t in target])
        tgt = target[0] if isinstance(target, (list, tuple)) else target
        return self._region_loss(output[:, channels], tgt[:, idx])

    def _stage_index(self, key) -> int:
        try:
            return self._case_stage[str(key)]
        except KeyError:
            raise KeyError(f"{self._t_stage_file} has no T stage for case {str(key)!r}") from None

    def _stage_loss(self, target, keys) -> tuple[torch.Tensor, int]:
        full = target[0] if isinstance(target, (list, tuple)) else target
        ch = self.layout.tumor_channel
        if self.layout.structure_pieces is None:
            weights = full[:, ch:ch + 1].float()
        else:
            values = torch.as_tensor(self.layout.structure_pieces[ch], device=full.device)
            weights = torch.isin(full[:, :1].long(), values).float()
        stages = torch.as_tensor([self._stage_index(k) for k in keys], device=weights.device)
        has = (weights.flatten(1).sum(1) > 0) & (stages >= 0)  # tumour in the patch, stage known
        n = int(has.sum())
        if n == 0:
            return torch.zeros((), device=weights.device), 0
        net = self._module()
        logits = net.stage_logits(net.last_features[has], weights[has])
        return F.cross_entropy(logits.float(), stages[has]), n

    def _param_split(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        net = self._module()
        shared, heads = [], []
        for name, p in net.named_parameters():
            if not p.requires_grad:
                continue
            (heads if name.startswith(("seg.decoder.seg_layers.", "stage_head.")) else shared).append(p)
        return shared, heads

    def on_train_epoch_start(self):
        self._epoch_diag = []
        super().on_train_epoch_start()

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            target = [t.to(self.device, non_blocking=True) for t in target]
        else:
            target = target.to(self.device, non_blocking=True)
        keys = batch.get("keys")

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            losses = {name: self._task_loss(output, target, name) for name in self.layout.tasks}
            n_stage = 0
            if self.layout.stage_classes is not None:
                if keys is None:
                    raise KeyError("the batch has no 'keys' (case identifiers): the T-stage loss needs them")
                losses[T_STAGE_TASK], n_stage = self._stage_loss(target, keys)
        total = sum(losses.values())

        scaler = self.grad_scaler
        scaled = {k: scaler.scale(v) for k, v in losses.items()} if scaler is not None else losses
        shared, heads = self._param_split()
        skipped = False
        try:
            diag = apply_surgery(shared, scaled, self.layout.groups, generator=self._surgery_generator,
                                 retain_graph=True)
        except ValueError as e:
            if scaler is None or "NaN or Inf" not in str(e):
                raise ValueError(f"gradient surgery failed (task losses "
                                 f"{ {k: float(v) for k, v in losses.items()} }): {e}") from e
            # fp16 overflow: non-finite gradients make the GradScaler skip this step and lower its scale
            for p in shared:
                p.grad = torch.full_like(p, float("inf"))
            diag, skipped = None, True
        head_total = sum(scaled.values())
        if head_total.requires_grad:
            grads = torch.autograd.grad(head_total, heads, allow_unused=True)
            for p, g in zip(heads, grads):
                p.grad = g

        if scaler is not None:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            scaler.step(self.optimizer)
            scaler.update()
        else:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()

        self._module().last_features = None  # do not keep the activation alive until the next step
        record = {"losses": {k: float(v.detach()) for k, v in losses.items()}, "stage_samples": n_stage,
                  "skipped": skipped}
        if diag is not None:
            if scaler is not None:
                diag = dict(diag, grad_norm=diag["grad_norm"] / float(scaler.get_scale()))
            record.update(diag)
        self._epoch_diag.append(record)
        return {"loss": total.detach().cpu().numpy()}

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        recs = self._epoch_diag
        ok = [r for r in recs if not r["skipped"]]
        pairs = sorted({p for r in ok for p in r["cosine_across"]})
        entry = {
            "epoch": int(self.current_epoch),
            "iterations": len(recs),
            "skipped_steps": len(recs) - len(ok),
            "tasks": list(self.layout.tasks) + ([T_STAGE_TASK] if self.layout.stage_classes is not None else []),
            "groups": {g: list(t) for g, t in self.layout.groups.items()},
            "conflicts_within_mean": _mean([r["conflicts_within"] for r in ok]),
            "conflicts_across_mean": _mean([r["conflicts_across"] for r in ok]),
            "cosine_across_mean": {p: _mean([r["cosine_across"][p] for r in ok if p in r["cosine_across"]])
                                   for p in pairs},
            "grad_norm_mean": _mean([r["grad_norm"] for r in ok]),
            "task_loss_mean": {k: _mean([r["losses"][k] for r in recs]) for k in (recs[0]["losses"] if recs else {})},
            "stage_batches": sum(1 for r in recs if r["stage_samples"] > 0),
        }
        self.surgery_log.append(entry)
        self.print_to_log_file(
            f"gradient surgery: conflicts within {entry['conflicts_within_mean']:.2f}, across "
            f"{entry['conflicts_across_mean']:.2f} per step; cosines {entry['cosine_across_mean']}; "
            f"|g| {entry['grad_norm_mean']:.4g}; task losses "
            f"{ {k: round(v, 4) for k, v in entry['task_loss_mean'].items()} }; T-stage batches "
            f"{entry['stage_batches']}/{entry['iterations']}; skipped {entry['skipped_steps']}")
        if self.local_rank == 0 and self.output_folder is not None:
            Path(self.output_folder, SURGERY_LOG_FILE).write_text(json.dumps(self.surgery_log, indent=1))
