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
from hnseg.load.case import Case, load_case
from hnseg.postprocess.labels import label_image
from hnseg.postprocess.prior_overlap import drop_components_without_prior
from hnseg.predict.engine import Engine
from hnseg.predict.weights import locate
from hnseg.preprocess.channels import build_channels
from hnseg.settings import PredictSettings, RunSettings
from hnseg.tasks import TaskProfile, detect_task, get_task
from hnseg.write.outputs import write_outputs

log = logging.getLogger(__name__)


class Segmenter:
    """Weights for one task, loaded once; ``segment(case)`` → output values by output slug."""

    def __init__(self, task: TaskProfile, weights_folder: Path, settings: PredictSettings = PredictSettings()):
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
        self.overlap_rule = (meta.postprocess_prior_overlap if settings.prior_overlap_rule is None
                             else settings.prior_overlap_rule)

    def load(self, files: dict[str, Path]) -> Case:
        return load_case(self.task, files)

    def segment(self, case: Case) -> dict[str, object]:
        t0 = time.perf_counter()
        channels = build_channels(case, self.engine.meta.channels, self.prior)
        seg = self.engine.predict(channels, case.reference)
        del channels
        prior_ch = self.task.prior_channel
        if self.overlap_rule and prior_ch is not None:
            seg = drop_components_without_prior(seg, case.array(prior_ch.mask_socket),
                                                labels=tuple(self.task.label_map.values()))
        out = label_image(seg, case.reference, self.task.label_map)
        log.info("segmented %s case in %.1f s", self.task.name, time.perf_counter() - t0)
        return {o.slug: out for o in self.task.outputs if o.kind == "label-map"}


def run_grand_challenge(settings: RunSettings) -> list[Path]:
    """One grand-challenge case: read /input, validate, predict, write /output. Returns written files."""
    files = discover_inputs(settings.input_dir)
    task = get_task(settings.task) if settings.task else detect_task(files)
    log.info("task: %s", task.name)
    case = load_case(task, files)  # validates everything before any compute
    folder = locate(task.name, settings.weight_candidates())
    log.info("weights: %s", folder)
    segmenter = Segmenter(task, folder, settings.predict)
    return write_outputs(settings.output_dir, task, segmenter.segment(case))
