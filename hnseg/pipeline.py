"""The pipeline: interfaces → load/validate → preprocess → predict → postprocess → write.

``Segmenter`` loads a task's weights once and segments many cases (the python API; ``inference.py``
and the CLI are thin layers over it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hnseg.errors import WeightsError
from hnseg.interfaces.grand_challenge import discover_inputs
from hnseg.io.write import check_output_folder
from hnseg.load.case import Case, load_case
from hnseg.postprocess.labels import label_image
from hnseg.postprocess.nesting import enforce_nesting
from hnseg.postprocess.prior_overlap import drop_components_without_prior
from hnseg.predict.weights import locate
from hnseg.preprocess.channels import build_channels
from hnseg.preprocess.orientation import CANONICAL, Reorientation, reorient_case
from hnseg.settings import PredictSettings, RunSettings
from hnseg.tasks import TaskProfile, detect_task, get_task
from hnseg.tasks.encoding import pieces_to_stack
from hnseg.tasks.npc import TStageOutput
from hnseg.write.outputs import check_output_targets, write_outputs
from hnseg.write.stack import stack_image

log = logging.getLogger(__name__)


class Segmenter:
    """Weights for one task, loaded once; ``segment(case)`` → output values by output slug."""

    def __init__(self, task: TaskProfile, weights_folder: Path, settings: PredictSettings = PredictSettings()):
        from hnseg.predict.engine import Engine  # torch: imported once inputs are known to be valid

        self.task = task
        self.settings = settings
        self.engine = Engine(weights_folder, settings)
        meta = self.engine.meta
        if meta.task != task.name:
            raise WeightsError(f"{weights_folder}: weights are for {meta.task}, not {task.name}")
        self.prior = meta.prior
        if self.prior is not None and settings.prior_margin is not None:
            log.warning("prior margin overridden: %s (weights trained with %s)",
                        settings.prior_margin, self.prior.margin)
            self.prior = self.prior.model_copy(update={"margin": tuple(settings.prior_margin)})
        self.orientation = meta.orientation or CANONICAL
        if meta.orientation is None:
            log.warning("%s: the weights do not record the orientation they were trained in; "
                        "assuming %s (hnseg's canonical orientation)", weights_folder, CANONICAL)
        self.overlap_rule = (meta.postprocess_prior_overlap if settings.prior_overlap_rule is None
                             else settings.prior_overlap_rule)
        if task.stack_output is not None and (meta.encoding is None or meta.encoding.structures != task.structures):
            found = meta.encoding.structures if meta.encoding else "a plain label map"
            raise WeightsError(f"{weights_folder}: {task.name} needs weights encoding the structures "
                               f"{list(task.structures)}, found {found}")
        if meta.encoding and (meta.encoding.mode == "regions") != self.engine.has_regions:
            raise WeightsError(f"{weights_folder}: metadata says {meta.encoding.mode}, the nnU-Net "
                               f"model is {'region' if self.engine.has_regions else 'label'}-based")

    def load(self, files: dict[str, Path], root: Path | tuple[Path, ...] | None = None, force: bool = False) -> Case:
        return load_case(self.task, files, root=root, force=force)

    def segment(self, case: Case) -> dict[str, object]:
        """Output values by output slug: SimpleITK images (label map / 4D stack), JSON-able dicts.

        The network sees the case in the weights' orientation; every mask is mapped back onto the
        exact grid of the case's reference image."""
        t0 = time.perf_counter()
        work, back = reorient_case(case, self.orientation)
        if not back.identity:
            log.info("reoriented %s → %s for the network (axes permuted/flipped, no resampling)",
                     back.source, back.target)
        channels = build_channels(work, self.engine.meta.channels, self.prior)
        encoding = self.engine.meta.encoding
        if encoding is None:
            seg = self.engine.predict(channels, work.reference)
            values = self._label_map_outputs(case, work, back, seg)
        elif encoding.mode == "regions":
            stack = self.engine.predict_regions(channels, work.reference)
            values = self._stack_outputs(case, work, back, channels, stack)
        else:
            pieces = self.engine.predict(channels, work.reference)
            values = self._stack_outputs(case, work, back, channels, pieces_to_stack(pieces, encoding))
        log.info("segmented %s case in %.1f s", self.task.name, time.perf_counter() - t0)
        return values

    def _label_map_outputs(self, case: Case, work: Case, back: Reorientation, seg) -> dict[str, object]:
        prior_ch = self.task.prior_channel
        if self.overlap_rule and prior_ch is not None:
            seg = drop_components_without_prior(seg, work.array(prior_ch.mask_socket),
                                                labels=tuple(self.task.label_map.values()))
        out = label_image(back.to_stored(seg), case.reference, self.task.label_map)
        return {o.slug: out for o in self.task.outputs if o.kind == "label-map"}

    def _stack_outputs(self, case: Case, work: Case, back: Reorientation, channels, stack) -> dict[str, object]:
        """``stack`` (S, z, y, x), canonical, in the task's structure order → the task's stack / JSON
        outputs on the case's reference grid."""
        structures = list(self.task.structures)
        enforce_nesting(stack, structures, self.task.nested)
        values: dict[str, object] = {}
        for o in self.task.outputs:
            if o.kind == "binary-stack":
                values[o.slug] = stack_image(back.to_stored(stack[[structures.index(s) for s in o.structures]]),
                                             case.reference)
            elif o.kind == "json" and self.task.t_stage is not None:
                tumor = stack[structures.index(self.task.t_stage.tumor)]
                probs = self.engine.predict_t_stage(channels, work.reference, tumor)
                values[o.slug] = TStageOutput.from_probabilities(probs).model_dump()
        return values


def run_grand_challenge(settings: RunSettings) -> list[Path]:
    """One grand-challenge case: read /input, validate, predict, write /output. Returns written files."""
    check_output_folder(settings.output_dir, settings.input_dir)  # before any input is read
    files = discover_inputs(settings.input_dir)
    task = get_task(settings.task) if settings.task else detect_task(files)
    log.info("task: %s", task.name)
    case = load_case(task, files, root=settings.input_dir, force=settings.force)  # all checks before compute
    check_output_targets(settings.output_dir, task)
    folder = locate(task.name, settings.weight_candidates())
    log.info("weights: %s", folder)
    segmenter = Segmenter(task, folder, settings.predict)
    return write_outputs(settings.output_dir, task, segmenter.segment(case))
