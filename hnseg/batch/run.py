"""The batch loop: the task's models load once, then every case is read, segmented and written.

Each case is written into ``OUT/.<case_id>.tmp-XXXX`` (outputs, ``qa.png``, ``report.json`` last) and
renamed to ``OUT/<case_id>`` when complete. A failing case is logged and recorded; the others go on.

Concurrency (``hnseg.batch.locks``): the run holds the output folder's run lock from planning to the
summary (exclusive, or shared among the shards of one plan), and each case's lock while it runs it. A
case whose lock another worker holds is skipped; after taking it the case is checked again (finished
meanwhile by another worker → skipped), and leftovers of a dead process (``.<case_id>.tmp-*``,
``.<case_id>.old-*``) are cleaned up only under it.

A write that fails (full disk, file-size limit, unwritable folder: ``OutputWriteError``) fails its case
and stops the run, since every later case would fail the same way: the summary is written if it can
be, and the error is raised (``hnseg batch`` exits 2).

SIGTERM / SIGINT during ``BatchRunner.run`` (``hnseg.batch.signals``) stop the run: the case in
progress loses its temp folder and is recorded as ``interrupted`` in the summary, cases not started
are left out of it, finished case folders are not touched, and ``BatchInterrupted`` is re-raised
(``hnseg batch`` exits 128 + signal number: 143 for SIGTERM, 130 for SIGINT).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import hnseg
from hnseg.batch.discover import CaseSource
from hnseg.batch.layout import old_folders, old_prefix, summary_name, temp_folders, temp_prefix
from hnseg.batch.locks import CaseLock, RunLock, RunPlan
from hnseg.batch.qa import QA_FILE, qa_sheet
from hnseg.batch.report import (
    REPORT_FILE, BatchSummary, CaseReport, CaseResult, Timings, WeightsInfo, mask_stats, structure_masks,
    summary_csv, summary_table, voxel_volume_cc,
)
from hnseg.batch.signals import BatchInterrupted, StopSignals
from hnseg.errors import HnsegError, OutputWriteError, SettingsError
from hnseg.io.write import temp_folder, write_image_atomic, write_json_atomic, write_text_atomic
from hnseg.load.case import Case
from hnseg.io.read import read_image
from hnseg.pipeline import Segmenter
from hnseg.preprocess.registration import RegistrationSettings, register_pre_to_mid
from hnseg.predict.weights import METADATA_FILE, locate, sha256_file
from hnseg.settings import RunSettings
from hnseg.tasks import TaskProfile
from hnseg.write.dicom_seg import write_dicom_seg
from hnseg.write.dicom_source import load_source_series
from hnseg.write.rtstruct import write_rtstruct

log = logging.getLogger(__name__)

IMAGE_FORMATS = (".nii.gz", ".mha")
DICOM_SEG_FILE, RTSTRUCT_FILE = "seg.dcm", "rtstruct.dcm"


__all__ = ["BatchRunner", "summary_name", "is_finished"]


def is_finished(output_dir: Path, case_id: str) -> bool:
    return (output_dir / case_id / REPORT_FILE).is_file()


def _report_stamp(output_dir: Path, case_id: str) -> tuple[int, int] | None:
    """Identity of a finished case's report (inode, mtime): a change means another worker finished it."""
    try:
        st = (output_dir / case_id / REPORT_FILE).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return " ".join(str(exc).split())[-300:]  # SimpleITK: the ITK message ends with the reason


@contextlib.contextmanager
def output_errors(what: str, path: Path,
                  kinds: tuple[type[Exception], ...] = (OSError, RuntimeError)) -> Iterator[None]:
    """A writer's OSError (ENOSPC, EFBIG, EACCES …) or SimpleITK's RuntimeError → ``OutputWriteError``.
    (hnseg.io.write's writers raise it themselves once they check every write; this covers the rest.)"""
    try:
        yield
    except HnsegError:
        raise
    except kinds as exc:
        raise OutputWriteError(f"{what} {path}: cannot be written: {_reason(exc)}") from None


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the hnseg log's warnings and python warnings raised inside the block."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(f"{record.name}: {record.getMessage()}")

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("hnseg")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield messages
        for w in caught:
            text = f"{w.category.__name__}: {w.message}"
            if text not in messages:
                messages.append(text)
    finally:
        logger.removeHandler(handler)


class BatchRunner:
    """Plans (resume / overwrite / stale temp folders), loads the models once, runs the cases."""

    def __init__(self, task: TaskProfile, output_dir: Path, settings: RunSettings, *, resume: bool = False,
                 overwrite: bool = False, shard: tuple[int, int] | None = None, qa: bool = True,
                 registration: RegistrationSettings | None = None, plan: RunPlan | None = None):
        if resume and overwrite:
            raise SettingsError("--resume and --overwrite exclude each other: resume keeps finished cases, "
                                "overwrite redoes them")
        self.task, self.output_dir, self.settings = task, Path(output_dir), settings
        self.resume, self.overwrite, self.shard, self.qa = resume, overwrite, shard, qa
        self.registration = registration or RegistrationSettings()
        self.run_plan = plan  # the whole plan the shards agree on; default: the cases given to run()
        self._stamps: dict[str, tuple[int, int] | None] = {}  # case → its report when planned
        self.segmenter: Segmenter | None = None
        self.weights: WeightsInfo | None = None
        self.signals = StopSignals()  # entered (handlers installed) only inside run()

    # -- planning ------------------------------------------------------------------------------
    def plan(self, cases: list[CaseSource]) -> list[CaseSource]:
        """Cases to run (finished ones dropped under --resume); refuses to overwrite silently."""
        if not (self.resume or self.overwrite):
            existing = [c.case_id for c in cases if (self.output_dir / c.case_id).exists()]
            if existing:
                raise SettingsError(
                    f"output folder {self.output_dir}: expected no output for the cases to run, found "
                    f"{len(existing)} existing case folder(s): {', '.join(existing[:10])}; use --resume to "
                    "keep finished cases or --overwrite to redo them"
                )
        todo = []
        for c in cases:
            if temp_folders(self.output_dir, c.case_id) or old_folders(self.output_dir, c.case_id):
                with CaseLock(self.output_dir, c.case_id) as lock:
                    if lock.acquire():
                        self._recover(c.case_id)
                    else:
                        log.info("%s: in progress in another worker (%s)", c.case_id, lock.holder)
            self._stamps[c.case_id] = _report_stamp(self.output_dir, c.case_id)
            if self.resume and is_finished(self.output_dir, c.case_id):
                log.info("skip %s: finished (%s)", c.case_id, REPORT_FILE)
                continue
            todo.append(c)
        return todo

    def _recover(self, case_id: str) -> None:
        """Leftovers of a dead process; the caller holds the case lock, so no live process owns them.
        An ``.old-*`` folder whose case folder is missing (killed between the two renames of
        ``_publish``) is the previous result: it is moved back."""
        final = self.output_dir / case_id
        for old in old_folders(self.output_dir, case_id):
            with output_errors("output folder", old, (OSError,)):
                if not final.exists() and (old / case_id).is_dir():
                    log.warning("%s: restoring the previous output folder from %s (interrupted replacement)",
                                case_id, old)
                    os.replace(old / case_id, final)
                else:
                    log.warning("removing stale folder %s (interrupted replacement)", old)
                shutil.rmtree(old)
        for stale in temp_folders(self.output_dir, case_id):
            log.warning("removing stale temporary folder %s (interrupted run)", stale)
            with output_errors("output folder", stale, (OSError,)):
                shutil.rmtree(stale)

    def _finished_elsewhere(self, case_id: str) -> bool:
        """Finished by another worker since this run planned (the case lock is held)."""
        stamp = _report_stamp(self.output_dir, case_id)
        return stamp is not None and stamp != self._stamps.get(case_id)

    def load_models(self) -> float:
        t0 = time.perf_counter()
        folder = locate(self.task.name, self.settings.weight_candidates())
        log.info("weights: %s", folder)
        self.segmenter = Segmenter(self.task, folder, self.settings.predict)
        self.weights = WeightsInfo(folder=str(folder.resolve()),
                                   metadata_sha256=sha256_file(folder / METADATA_FILE))
        return time.perf_counter() - t0

    # -- one case ------------------------------------------------------------------------------
    def _effective_settings(self) -> dict:
        assert self.segmenter is not None
        engine = self.segmenter.engine
        settings = self.settings.predict.model_dump(mode="json")
        settings["folds_used"] = list(self.settings.predict.folds or engine.meta.nnunet.folds)
        settings["device_used"] = str(engine.predictor.device)
        settings["prior_overlap_rule_used"] = bool(self.segmenter.overlap_rule)
        settings["network_orientation"] = self.segmenter.orientation
        return settings

    def _write_case(self, folder: Path, values: dict[str, object]) -> tuple[dict[str, list[str]], list, dict | None,
                                                                           dict[str, np.ndarray]]:
        """Write the outputs; returns their file names, structure statistics, T stage and masks by name."""
        outputs: dict[str, list[str]] = {}
        stats, t_stage, masks = [], None, {}
        for socket in self.task.outputs:
            value = values[socket.slug]
            if socket.kind == "json":
                with output_errors("output", folder / f"{socket.slug}.json"):
                    write_json_atomic(value, folder / f"{socket.slug}.json")
                outputs[socket.slug] = [f"{socket.slug}.json"]
                t_stage = value if isinstance(value, dict) else None
                continue
            assert isinstance(value, sitk.Image)
            names = [f"{socket.slug}{ext}" for ext in IMAGE_FORMATS]
            for name in names:
                with output_errors("output", folder / name):
                    write_image_atomic(value, folder / name)
            outputs[socket.slug] = names
            pairs = structure_masks(self.task, socket.slug, value)
            stats += mask_stats(socket.slug, pairs, voxel_volume_cc(value))
            masks.update(pairs)
        return outputs, stats, t_stage, masks

    def _write_qa(self, folder: Path, case: Case, masks: dict[str, np.ndarray], case_id: str) -> str | None:
        """``qa.png`` over the task's first image input; a sheet that cannot be drawn is a warning."""
        if not self.qa:
            return None
        slug = next(s.slug for s in self.task.inputs if s.kind == "image")
        try:
            with output_errors("QA sheet", folder / QA_FILE, (OSError,)):
                qa_sheet(case.images[slug], masks, folder / QA_FILE, f"{case_id} · {self.task.name} · {slug}")
        except OutputWriteError:  # a full disk is no drawing problem: it stops the run
            raise
        except Exception as exc:  # the segmentation stands without its picture
            log.warning("%s: no QA sheet: %s: %s", case_id, type(exc).__name__, exc)
            log.debug("traceback of the QA sheet of %s", case_id, exc_info=True)
            return None
        return QA_FILE

    def _register(self, folder: Path, case_id: str, files: dict[str, Path]) -> tuple[dict[str, Path], dict | None]:
        """Compute the task's registered inputs when the case lacks them (``TaskProfile.registration``):
        written into the case folder and read from there like given ones."""
        reg = self.task.registration
        if reg is None or not self.task.missing_inputs(files):
            return files, None
        for slug in reg.computed:
            if slug in files:
                log.warning("%s: %s is given but %s is not: both are computed here, the given one is ignored",
                            case_id, slug, next(s for s in reg.computed if s != slug))
        images = {s: read_image(files[s], what=f"socket {s!r}", modality=self.task.socket(s).dicom_modality)
                  for s in reg.sources}
        result = register_pre_to_mid(images[reg.moving], images[reg.moving_mask], images[reg.fixed], self.registration)
        out = dict(files)
        names = {}
        for slug, image in ((reg.registered_image, result.image), (reg.registered_mask, result.mask)):
            names[slug] = f"{slug}.nii.gz"
            with output_errors("output", folder / names[slug]):
                out[slug] = write_image_atomic(image, folder / names[slug])
        log.info("%s: registered %s onto %s in %.1f s (%s)", case_id, reg.moving, reg.fixed, result.record.seconds,
                 ", ".join(result.record.stages))
        return out, {"computed": names, **result.record.model_dump(mode="json")}

    def _write_dicom(self, folder: Path, case: Case, masks: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """DICOM SEG + RTSTRUCT over the reference input's series, when that input is a DICOM folder."""
        socket = self.task.socket(self.task.reference_socket)
        series_folder = Path(case.files[socket.slug])
        if not series_folder.is_dir():
            return {}
        source = load_source_series(series_folder, socket.slug, socket.dicom_modality)
        pairs = list(masks.items())
        with output_errors("output", folder / DICOM_SEG_FILE, (OSError,)):
            write_dicom_seg(pairs, source, folder / DICOM_SEG_FILE, series_description=f"hnseg {self.task.name}")
        with output_errors("output", folder / RTSTRUCT_FILE, (OSError,)):
            write_rtstruct(pairs, source, folder / RTSTRUCT_FILE, series_description=f"hnseg {self.task.name}")
        return {"dicom-seg": [DICOM_SEG_FILE], "rtstruct": [RTSTRUCT_FILE]}

    def _input_path(self, case_id: str, tmp: Path, path: Path) -> str:
        """An input's path for the report; one computed here is named where it will be once published."""
        path = Path(path).resolve()
        if tmp.resolve() in path.parents:
            return str((self.output_dir / case_id / path.relative_to(tmp.resolve())).resolve())
        return str(path)

    def _publish(self, tmp: Path, case_id: str) -> None:
        """Rename the complete temp folder to ``OUT/<case_id>`` (an older folder is moved aside first).
        Killed between the renames, the older folder waits in ``.<case_id>.old-*`` and ``_recover``
        (next run, under the case lock) puts it back; killed after them, ``_recover`` removes it."""
        final = self.output_dir / case_id
        old = None
        with output_errors("output folder", final, (OSError,)):
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=old_prefix(case_id), dir=self.output_dir))
                os.replace(final, old / case_id)
                log.warning("%s: replacing the existing output folder %s", case_id, final)
            try:
                os.replace(tmp, final)
            except OSError:
                if old is not None:  # put the previous result back
                    os.replace(old / case_id, final)
                    old.rmdir()
                raise
            if old is not None:
                shutil.rmtree(old)

    def run_case(self, source: CaseSource) -> CaseResult:
        """Read, segment and write one case. Its temp folder exists from the start of the case to the
        end (renamed when complete, removed on any error or interruption): it marks the case in progress."""
        assert self.segmenter is not None and self.weights is not None
        t0 = time.perf_counter()
        with output_errors("output folder", self.output_dir, (OSError,)):
            tmp = temp_folder(self.output_dir, temp_prefix(source.case_id))
        try:
            with captured_warnings() as caught, self.signals.interruptible():
                files, registration = self._register(tmp, source.case_id, source.resolve(self.task))
                # a DICOM folder: the series of its socket's modality. Links and header data files may not
                # lead out of the case folder (or the temp folder, for inputs registered here); manifest
                # paths are the operator's own choice
                roots = (source.folder, tmp) if source.folder is not None else None
                case = self.segmenter.load(files, root=roots, force=self.settings.force)
                t1 = time.perf_counter()
                values = self.segmenter.segment(case)
                t2 = time.perf_counter()
                outputs, stats, t_stage, masks = self._write_case(tmp, values)
                outputs.update(self._write_dicom(tmp, case, masks))
                qa_png = self._write_qa(tmp, case, masks, source.case_id)
                del masks
                t3 = time.perf_counter()
                report = CaseReport(
                    hnseg_version=hnseg.__version__, task=self.task.name, case_id=source.case_id,
                    inputs={k: self._input_path(source.case_id, tmp, v) for k, v in sorted(case.files.items())},
                    outputs=outputs, structures=stats, t_stage=t_stage, registration=registration,
                    settings=self._effective_settings(),
                    weights=self.weights,
                    timings=Timings(load_s=round(t1 - t0, 3), segment_s=round(t2 - t1, 3), write_s=round(t3 - t2, 3)),
                    qa_png=qa_png,
                    warnings=list(caught), finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                )
                with output_errors("output", tmp / REPORT_FILE):
                    write_json_atomic(report.model_dump(mode="json"), tmp / REPORT_FILE)
            self._publish(tmp, source.case_id)  # a signal here is held until the rename is done
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("%s: done in %.1f s (%s)", source.case_id, time.perf_counter() - t0,
                 ", ".join(f"{s.name} {s.volume_cc:.1f} cc" for s in stats) or "no structures")
        return CaseResult(case=source.case_id, status="ok", seconds=round(time.perf_counter() - t0, 2),
                          volumes_cc={s.name: s.volume_cc for s in stats})

    # -- the run -------------------------------------------------------------------------------
    def skipped(self, case_id: str, note: str = "") -> CaseResult:
        """A finished case: its volumes read back from its report (no image is loaded)."""
        volumes: dict[str, float] = {}
        try:
            report = CaseReport.model_validate_json((self.output_dir / case_id / REPORT_FILE).read_text())
            volumes = {s.name: s.volume_cc for s in report.structures}
        except (OSError, ValueError) as exc:
            log.warning("%s: finished, but its %s cannot be read back: %s", case_id, REPORT_FILE, exc)
        return CaseResult(case=case_id, status="skipped", volumes_cc=volumes, error_message=note)

    def write_summary(self, summary: BatchSummary) -> Path:
        path = self.output_dir / summary_name(self.shard)
        with output_errors("summary", path, (OSError,)):
            write_text_atomic(summary_csv(self.task, summary), path)
        return path

    def run(self, cases: list[CaseSource]) -> BatchSummary:
        """Run the cases. SIGTERM / SIGINT handlers are installed for the duration of the call only;
        a stop request cleans up the case in progress and raises ``BatchInterrupted``."""
        with StopSignals() as signals:
            self.signals = signals
            try:
                return self._run(cases)
            finally:
                self.signals = StopSignals()

    def _run(self, cases: list[CaseSource]) -> BatchSummary:
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputWriteError(f"output folder {self.output_dir}: expected a folder that can be created or "
                                   f"written, found: {exc.strerror or exc}") from None
        plan = self.run_plan or RunPlan.of(self.task.name, self.shard, [c.case_id for c in cases])
        with RunLock(self.output_dir, plan, self.shard):
            return self._run_locked(cases)

    def _run_locked(self, cases: list[CaseSource]) -> BatchSummary:
        todo = self.plan(cases)
        todo_ids = {c.case_id for c in todo}
        summary = BatchSummary(task=self.task.name, shard=f"{self.shard[0]}/{self.shard[1]}" if self.shard else "")
        results = {c.case_id: self.skipped(c.case_id) for c in cases if c.case_id not in todo_ids}
        current: tuple[CaseSource, float] | None = None  # the case in progress, its start time
        try:
            if todo:
                with self.signals.interruptible():
                    summary.model_load_s = round(self.load_models(), 2)
                log.info("models loaded in %.1f s; %d case(s) to run, %d skipped", summary.model_load_s,
                         len(todo), len(results))
            with logging_redirect_tqdm():
                for source in tqdm(todo, desc="cases", unit="case", disable=None):
                    with CaseLock(self.output_dir, source.case_id) as lock:
                        if not lock.acquire():
                            log.info("skip %s: in progress in another worker (%s)", source.case_id, lock.holder)
                            results[source.case_id] = CaseResult(
                                case=source.case_id, status="skipped",
                                error_message=f"in progress in another worker ({lock.holder})")
                            self._write_results(summary, results, cases)
                            continue
                        self._recover(source.case_id)
                        if self._finished_elsewhere(source.case_id):
                            log.info("skip %s: finished meanwhile by another worker", source.case_id)
                            results[source.case_id] = self.skipped(source.case_id, "finished by another worker "
                                                                                   "during this run")
                            self._write_results(summary, results, cases)
                            continue
                        current = (source, time.perf_counter())
                        results[source.case_id] = self._guarded(source)
                        current = None
                    if results[source.case_id].error_class == OutputWriteError.__name__:
                        self._stop_on_write_error(summary, results, cases, results[source.case_id])
                    self._write_results(summary, results, cases)
                    self.signals.check()  # a signal held while the case folder was renamed
        except BatchInterrupted as exc:
            self._interrupted(exc, current, summary, results, cases)
            raise
        path = self._write_results(summary, results, cases)
        log.info("batch summary (%s):\n%s", path, summary_table(summary))
        return summary

    def _write_results(self, summary: BatchSummary, results: dict[str, CaseResult],
                       cases: list[CaseSource]) -> Path:
        """The summary CSV with the cases that have a result so far, in the order of ``cases``."""
        summary.results = [results[c.case_id] for c in cases if c.case_id in results]
        return self.write_summary(summary)

    def _stop_on_write_error(self, summary: BatchSummary, results: dict[str, CaseResult],
                             cases: list[CaseSource], failed: CaseResult) -> None:
        """A write failed: the next cases would fail the same way. Summary (if it can be written), then raise."""
        left = sum(c.case_id not in results for c in cases)
        message = (f"case {failed.case}: {failed.error_message}; the run stopped with {left} case(s) not started "
                   "(free space or fix the output folder, then rerun with --resume)")
        try:
            path = self._write_results(summary, results, cases)
        except OutputWriteError as exc:
            raise OutputWriteError(f"{message}; the summary could not be written either: {exc}") from None
        log.error("stopped: %s\nbatch summary (%s):\n%s", message, path, summary_table(summary))
        raise OutputWriteError(message)

    def _interrupted(self, exc: BatchInterrupted, current: tuple[CaseSource, float] | None,
                     summary: BatchSummary, results: dict[str, CaseResult], cases: list[CaseSource]) -> None:
        """After a stop signal: no temp folder of the case in progress is left; it is ``interrupted`` in
        the summary; cases not started are left out of it. Signals are held meanwhile."""
        if current is None:
            log.error("interrupted by %s with no case in progress", exc.signal_name)
        else:
            source, t0 = current
            try:  # run_case removed its own temp folder; a leftover only under the lock (never another's)
                with CaseLock(self.output_dir, source.case_id) as lock:
                    if lock.acquire():
                        for stale in temp_folders(self.output_dir, source.case_id):
                            shutil.rmtree(stale, ignore_errors=True)
            except OutputWriteError as err:  # the stop request stays the exit reason
                log.warning("%s: its temp folder could not be checked: %s", source.case_id, err)
            results[source.case_id] = CaseResult(
                case=source.case_id, status="interrupted", error_class=type(exc).__name__,
                error_message=f"{exc.signal_name} received during the case; its outputs were removed "
                              "(rerun with --resume)",
                seconds=round(time.perf_counter() - t0, 2))
            log.error("interrupted by %s during %s", exc.signal_name, source.case_id)
        path = self._write_results(summary, results, cases)
        log.info("batch summary (%s), %d case(s) not started:\n%s", path,
                 sum(c.case_id not in results for c in cases), summary_table(summary))

    def _guarded(self, source: CaseSource) -> CaseResult:
        t0 = time.perf_counter()
        try:
            return self.run_case(source)
        except Exception as exc:  # one bad case must not stop the batch
            name = exc.name if isinstance(exc, HnsegError) else type(exc).__name__
            message = " ".join(str(exc).split())
            log.error("%s failed: %s: %s", source.case_id, name, message)
            if not isinstance(exc, HnsegError):
                log.debug("traceback of %s", source.case_id, exc_info=True)
            return CaseResult(case=source.case_id, status="failed", error_class=name, error_message=message,
                              seconds=round(time.perf_counter() - t0, 2))
