"""Register the pre-RT T2w MRI onto the mid-RT T2w MRI and warp the pre-RT mask (HNTS-MRG 2024 task 2).

Task 2 gives the network the pre-RT mask registered onto the mid-RT grid. When a hospital provides
only the raw pre-RT image and mask, hnseg computes that input itself, the way the organizers made
theirs, with itk-elastix (elastix inside ITK's Python wrapping; no executables, no files to read):

1. fixed = mid-RT image, moving = pre-RT image. elastix finds the transform ``T`` that maps a
   mid-RT world point to the pre-RT world point showing the same anatomy;
2. stage "rigid" (``RegistrationSettings.rigid``): elastix's default rigid parameter map (Euler
   transform, Mattes mutual information, 4 resolutions, adaptive stochastic gradient descent),
   starting from the scanners' world coordinates (no automatic initialisation);
3. stage "bspline": the organizers' ``Elastix_parameterset_23.txt`` (bundled in
   ``hnseg/preprocess/data``; B-spline with a 15 mm final grid, Mattes MI + 50 × bending energy,
   3 resolutions of 5000 iterations), composed on top of the rigid result;
4. the image: elastix's own result, the pre-RT image resampled through ``T`` onto the mid-RT grid
   (cubic B-spline interpolation, 0 outside the pre-RT field of view), float32;
5. the mask: transformix applies the same ``T`` to the pre-RT mask with NEAREST-NEIGHBOUR
   interpolation (``FinalNearestNeighborInterpolator``, unsigned char, 0 outside). Any other
   interpolator mixes label values (halfway between GTVp = 1 and GTVn = 2 is not a label, and a
   smoothed 0/1 edge needs an arbitrary threshold); nearest neighbour copies a label that exists in
   the input at every voxel, so the output labels are a subset of the input labels.

hnseg changes only output / book-keeping keys of the organizers' map (no per-resolution transform
files, float result image) and adds ``RandomSeed``; ``max_iterations`` (tests, quick runs) is the
only optional change of the optimisation itself.

Determinism: elastix samples random coordinates every iteration; ``RandomSeed`` is set in every
parameter map, so the same inputs and settings give the same transform, a bit-identical image and
mask (``test/test_registration.py``; on the development machine 1 thread and 2 threads also gave
bit-identical results).

Threads: ``RegistrationSettings.threads`` sets ITK's global default thread count for the duration
of the call (``None``: leave it, i.e. all cores). elastix's own ``SetNumberOfThreads`` is NOT used:
with 2 or more threads it crashes itk-elastix 0.25.4 (elastix 5.3.1) with a segmentation fault in
the organizers' MI + bending-energy stage (see ``_itk_threads``).

Cost: the B-spline stage dominates. On one CPU core its bending-energy penalty costs about
0.15–0.25 s per iteration (10000 samples) and the optimizer's automatic step-size estimation
10–30 s per registration, independent of the iteration count; the organizers' 3 × 5000 iterations
therefore take the better part of an hour on one core. The rigid stage takes about a second.

Child process: elastix runs in C++ for minutes, during which Python cannot run a signal handler, so a
SIGTERM from Slurm / Kubernetes would wait for it (and be followed by SIGKILL, leaving temp folders
behind). ``register_pre_to_mid`` therefore checks its inputs here and runs elastix + transformix in a
fresh ``python -m hnseg.preprocess.registration_worker`` process (not a fork: torch's and ITK's threads
do not survive one), passing arrays (``.npy``, no pickle) and grids (JSON) through a private temporary
folder that is always removed. The parent waits in 0.2 s slices; on any ``BaseException`` (``Interrupted``
/ ``BatchInterrupted`` from ``hnseg.signals``, ``KeyboardInterrupt``, ``SystemExit``) it sends the child
SIGTERM, then SIGKILL after 2 s, reaps it, removes the folder and re-raises. The child dies with its
parent even when the parent is killed by SIGKILL (``PR_SET_PDEATHSIG``, see the worker module). A
failure in the child is still a ``RegistrationError`` with elastix's message; a child that dies without
a result (segfault, OOM kill) is a ``RegistrationError`` naming the signal or exit code. The results
are the same code's, bit for bit (``test/test_registration.py``).

Memory and start-up: loading ITK's modules (``import itk`` is lazy; the first use of a class loads
them) takes 10–25 s and ~1.5 GB resident. It now happens in the child, on EVERY call (outside the
timed ``seconds``), and that memory is returned when the child ends; the calling process never
imports ITK. The registration itself adds ~0.2 GB for a 300k-voxel pair (peak 1.7 GB measured, in
the child).

elastix writes nothing to the console (``LogToConsole`` off). Its log goes to the temporary folder,
from which the final metric value is read; a one-line summary goes to the
``hnseg.preprocess.registration`` logger (of the calling process).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field

from hnseg.errors import (
    GridMismatchError, ImageDimensionError, MaskLabelError, NonFiniteImageError, RegistrationError,
)
from hnseg.load.grid import describe_grid, grid_differences
from hnseg.signals import held_signals, signal_name

log = logging.getLogger(__name__)

#: The organizers' B-spline parameter file, shipped with hnseg.
PARAMETER_FILE = Path(__file__).resolve().parent / "data" / "Elastix_parameterset_23.txt"

#: The module run as the registration child (``python -m``), its output file, elastix's log file.
CHILD_MODULE = "hnseg.preprocess.registration_worker"
CHILD_LOG = "child.log"
ELASTIX_LOG = "elastix.log"
CHILD_POLL_S = 0.2  # the parent waits for the child in slices this long (its signal handler runs between)
CHILD_GRACE_S = 2.0  # after SIGTERM, the child gets this long before SIGKILL
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding hnseg/: the child's import path


class RegistrationSettings(BaseModel):
    """How pre-RT is registered onto mid-RT (defaults: the organizers' set-up, rigid first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    parameter_file: Path = PARAMETER_FILE
    rigid: bool = True
    # None: each parameter map's own value (rigid 256, B-spline 5000 per resolution); an int
    # overrides MaximumNumberOfIterations in every stage (tests, quick runs).
    max_iterations: int | None = Field(default=None, ge=1)
    random_seed: int = Field(default=0, ge=0)
    # None: ITK's default (all cores); n: ITK's global default thread count during the call
    threads: int | None = Field(default=None, ge=1)


class RegistrationRecord(BaseModel):
    """What the registration did, for the JSON report."""

    model_config = ConfigDict(frozen=True)

    method: str = "itk-elastix"
    elastix_version: str
    parameter_file: str
    parameter_file_sha256: str
    stages: list[str]
    max_iterations: int | None
    random_seed: int
    threads: int | None
    seconds: float
    # elastix's "Final metric value" of the last stage: the optimised cost (-MI + 50 × bending
    # energy for the organizers' map) on the last iteration's random samples; None if not logged.
    final_metric: float | None = None


@dataclass(frozen=True)
class RegistrationResult:
    image: sitk.Image  # pre-RT image on the mid-RT grid, float32
    mask: sitk.Image  # pre-RT mask on the mid-RT grid, uint8, nearest neighbour
    record: RegistrationRecord


def _registration_error(message: str) -> Exception:
    """The exception raised when elastix / transformix fails (one place to change its type)."""
    return RegistrationError(message)


# ----------------------------------------------------------------------------------------------
# validation


def _check_volume(image: sitk.Image, what: str) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageDimensionError(
            f"{what}: expected a 3D single-component image, found {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel")


def _check_finite(array: np.ndarray, what: str) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise NonFiniteImageError(f"{what}: expected finite voxel values, found {bad} NaN/Inf voxels")


def _mask_array(mask: sitk.Image) -> np.ndarray:
    """The mask as uint8, after checking it holds integers in 0 … 255."""
    a = sitk.GetArrayFromImage(mask)
    if a.dtype.kind == "f":
        _check_finite(a, "pre-RT mask")
        if not np.array_equal(a, np.round(a)):
            raise MaskLabelError(
                f"pre-RT mask: expected integer label values, found non-integer values such as "
                f"{float(a[a != np.round(a)].flat[0])!r} (pixel type {mask.GetPixelIDTypeAsString()})")
    elif a.dtype.kind not in "iub":
        raise MaskLabelError(f"pre-RT mask: expected an integer label map, found pixel type "
                             f"{mask.GetPixelIDTypeAsString()}")
    lo, hi = (a.min(), a.max()) if a.size else (0, 0)
    if lo < 0 or hi > 255:
        raise MaskLabelError(f"pre-RT mask: expected labels in 0 … 255, found values from {lo} to {hi}")
    return a.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# SimpleITK <-> ITK (numpy arrays + geometry; direction as a 3 x 3 matrix)


def _itk():
    """The ``itk`` module with its elastix classes loaded (``import itk`` is lazy: the first access
    to a class loads ITK's modules, 10–20 s; done here so that ``seconds`` does not count it)."""
    import itk  # noqa: PLC0415 - only needed here

    itk.ElastixRegistrationMethod, itk.TransformixFilter  # noqa: B018 - force the lazy load
    return itk


def _to_itk(array: np.ndarray, geometry: sitk.Image):
    """An ITK image holding ``array`` (numpy z, y, x) with ``geometry``'s spacing, origin and
    direction."""
    itk = _itk()
    image = itk.image_from_array(np.ascontiguousarray(array))
    image.SetSpacing([float(v) for v in geometry.GetSpacing()])
    image.SetOrigin([float(v) for v in geometry.GetOrigin()])
    image.SetDirection(itk.matrix_from_array(np.asarray(geometry.GetDirection(), float).reshape(3, 3)))
    return image


def _to_sitk(image, reference: sitk.Image, what: str) -> sitk.Image:
    """An ITK output that elastix put on ``reference``'s grid, as a SimpleITK image with exactly
    ``reference``'s geometry (checked first: a mismatch means elastix did something unexpected)."""
    itk = _itk()
    out = sitk.GetImageFromArray(itk.array_from_image(image))
    out.SetSpacing(tuple(float(v) for v in image.GetSpacing()))
    out.SetOrigin(tuple(float(v) for v in image.GetOrigin()))
    out.SetDirection(tuple(float(v) for v in itk.array_from_matrix(image.GetDirection()).ravel()))
    diffs = grid_differences(reference, out)
    if diffs:
        raise _registration_error(
            f"{what}: elastix returned an image off the mid-RT grid ({', '.join(diffs)} differ): "
            f"expected {describe_grid(reference)}, found {describe_grid(out)}")
    out.CopyInformation(reference)
    return out


# ----------------------------------------------------------------------------------------------
# parameter maps


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _elastix_version(log_text: str) -> str:
    parts = []
    for dist in ("itk-elastix", "itk"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} unknown")
    m = re.search(r"ELASTIX version:\s*(\S+)", log_text)
    if m:
        parts.append(f"elastix {m.group(1)}")
    return ", ".join(parts)


def _parameter_object(settings: RegistrationSettings):
    itk = _itk()
    seed = str(settings.random_seed)
    maps = []
    if settings.rigid:
        rigid = itk.ParameterObject.New().GetDefaultParameterMap("rigid")
        rigid["WriteResultImage"] = ["false"]  # the image after the rigid stage is not needed
        maps.append(rigid)
    reader = itk.ParameterObject.New()
    try:
        reader.ReadParameterFile(str(settings.parameter_file))
    except Exception as exc:  # ITK raises RuntimeError with its own text
        raise _registration_error(f"cannot read elastix parameter file {settings.parameter_file}: "
                                  f"{str(exc).strip().splitlines()[-1]}") from exc
    for i in range(reader.GetNumberOfParameterMaps()):
        maps.append(reader.GetParameterMap(i))
    out = itk.ParameterObject.New()
    for k, pmap in enumerate(maps):
        pmap["RandomSeed"] = [seed]
        if settings.max_iterations is not None:
            pmap["MaximumNumberOfIterations"] = [str(settings.max_iterations)]
        if k == len(maps) - 1:
            pmap["WriteResultImage"] = ["true"]
            pmap["ResultImagePixelType"] = ["float"]
            pmap["ResultImageFormat"] = ["mha"]  # elastix also writes it to the temporary folder
        pmap["WriteTransformParametersEachResolution"] = ["false"]
        out.AddParameterMap(pmap)
    return out


def _nearest_neighbour_maps(transform_parameters) -> None:
    """Turn the found transform's maps into a label-preserving resampler (in place)."""
    for i in range(transform_parameters.GetNumberOfParameterMaps()):
        transform_parameters.SetParameter(i, "ResampleInterpolator", "FinalNearestNeighborInterpolator")
        transform_parameters.SetParameter(i, "FinalBSplineInterpolationOrder", "0")
        transform_parameters.SetParameter(i, "ResultImagePixelType", "unsigned char")
        transform_parameters.SetParameter(i, "DefaultPixelValue", "0")


@contextmanager
def _itk_threads(threads: int | None):
    """Run elastix with ``threads`` threads (None: ITK's default, all cores).

    Not through ``ElastixRegistrationMethod.SetNumberOfThreads``: with 2 or more threads that
    crashes itk-elastix 0.25.4 (elastix 5.3.1) with a segmentation fault (or corrupts the
    optimisation) as soon as the organizers' map combines Mattes MI with the bending-energy
    penalty (MI alone is fine). ITK's global default thread count, which elastix uses when no
    thread count is given, works; it is restored afterwards (process-wide while the call runs).
    """
    if threads is None:
        yield
        return
    threader = _itk().MultiThreaderBase
    before = threader.GetGlobalDefaultNumberOfThreads()
    threader.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        yield
    finally:
        threader.SetGlobalDefaultNumberOfThreads(before)


def _warp_mask(mask: np.ndarray, geometry: sitk.Image, transform_parameters,
               reference: sitk.Image) -> sitk.Image:
    """transformix: ``mask`` (uint8 array on ``geometry``'s grid) through the elastix transform
    ``transform_parameters`` (its maps are switched to nearest neighbour in place) onto
    ``reference``'s grid; uint8, labels checked to be a subset of the input's."""
    itk = _itk()
    _nearest_neighbour_maps(transform_parameters)
    transformix = itk.TransformixFilter[itk.Image[itk.UC, 3]].New()
    transformix.SetMovingImage(_to_itk(mask, geometry))
    transformix.SetTransformParameterObject(transform_parameters)
    transformix.SetLogToConsole(False)
    try:
        transformix.Update()
    except Exception as exc:
        raise _registration_error(
            f"transformix could not warp the pre-RT mask onto the mid-RT grid: "
            f"{_failure_text(exc)}") from exc
    warped = sitk.Cast(_to_sitk(transformix.GetOutput(), reference, "registered pre-RT mask"),
                       sitk.sitkUInt8)
    labels_in = set(np.unique(mask).tolist())
    labels_out = set(np.unique(sitk.GetArrayViewFromImage(warped)).tolist())
    if not labels_out <= labels_in:  # nearest neighbour cannot invent labels; guard anyway
        raise _registration_error(
            f"transformix produced mask labels {sorted(labels_out - labels_in)} that the pre-RT "
            f"mask does not hold (expected a subset of {sorted(labels_in)})")
    return warped


def _final_metric(log_text: str) -> float | None:
    found = re.findall(r"Final metric value\s*=\s*([-+0-9.eEinfa]+)", log_text)
    try:
        return float(found[-1]) if found else None
    except ValueError:
        return None


def _failure_text(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Description" in ln or "ERROR" in ln.upper()]
    return "; ".join((useful or lines or [type(exc).__name__])[-3:])[:600]


# ----------------------------------------------------------------------------------------------
# the registration


def _geometry(image: sitk.Image) -> dict:
    """An image's grid as JSON (floats round-trip exactly through ``json``)."""
    return {"size": list(image.GetSize()), "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()), "direction": list(image.GetDirection())}


def _grid_image(geometry: dict) -> sitk.Image:
    """A placeholder image with ``geometry``'s grid (for ``_to_itk`` / ``_to_sitk``, which use the grid only)."""
    image = sitk.Image([int(v) for v in geometry["size"]], sitk.sitkUInt8)
    image.SetSpacing([float(v) for v in geometry["spacing"]])
    image.SetOrigin([float(v) for v in geometry["origin"]])
    image.SetDirection([float(v) for v in geometry["direction"]])
    return image


def _register_arrays(fixed_a: np.ndarray, fixed_grid: sitk.Image, moving_a: np.ndarray,
                     moving_grid: sitk.Image, mask: np.ndarray, mask_grid: sitk.Image,
                     settings: RegistrationSettings, output_dir: Path) -> tuple[sitk.Image, sitk.Image, float]:
    """elastix + transformix in this process (the registration child runs this): the registered image
    (float32) and mask (uint8) on ``fixed_grid`` and the seconds taken; elastix's log is written to
    ``output_dir/elastix.log``."""
    itk = _itk()
    t0 = time.perf_counter()
    fixed = _to_itk(fixed_a, fixed_grid)
    moving = _to_itk(moving_a, moving_grid)
    del fixed_a, moving_a
    parameters = _parameter_object(settings)
    method = itk.ElastixRegistrationMethod[type(fixed), type(moving)].New()
    method.SetFixedImage(fixed)
    method.SetMovingImage(moving)
    method.SetParameterObject(parameters)
    method.SetLogToConsole(False)
    method.SetOutputDirectory(str(output_dir))
    method.SetLogToFile(True)
    method.SetLogFileName(ELASTIX_LOG)
    try:
        with _itk_threads(settings.threads):
            method.Update()
    except Exception as exc:
        raise _registration_error(
            f"elastix could not register the pre-RT image onto the mid-RT image: "
            f"{_failure_text(exc)}") from exc
    image = _to_sitk(method.GetOutput(), fixed_grid, "registered pre-RT image")
    image = sitk.Cast(image, sitk.sitkFloat32)
    warped = _warp_mask(mask, mask_grid, method.GetTransformParameterObject(), fixed_grid)
    return image, warped, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# the child process


def _stop_child(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after ``CHILD_GRACE_S``; returns when the child is reaped."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=CHILD_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.debug("stopped the registration child process %d (%s)", proc.pid, proc.returncode)


def _child_failure(proc: subprocess.Popen, work: Path) -> Exception:
    """The error for a child that ended without a result: its own error, else how it ended."""
    result = work / "result.json"
    if result.is_file():
        error = json.loads(result.read_text()).get("error") or {}
        if error.get("name") == "RegistrationError":
            return _registration_error(error.get("message", ""))
        return _registration_error(f"the registration child process failed: {error.get('name')}: "
                                   f"{error.get('message')}")
    rc = proc.returncode
    how = f"was killed by {signal_name(-rc)}" if rc < 0 else f"exited with code {rc}"
    out = work / CHILD_LOG
    tail = out.read_text(errors="replace").strip().splitlines()[-5:] if out.is_file() else []
    return _registration_error(f"the elastix child process {how} without a result"
                               + (f"; its last output: {' | '.join(tail)[-600:]}" if tail else ""))


def _run_child(work: Path) -> subprocess.Popen:
    """Start the registration child on the job in ``work`` (see ``registration_worker``)."""
    env = dict(os.environ)  # the child imports the same hnseg as this process
    env["PYTHONPATH"] = os.pathsep.join([str(_PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    with open(work / CHILD_LOG, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", CHILD_MODULE, str(work), str(os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                close_fds=True)


def _register_in_child(fixed_a: np.ndarray, fixed_grid: sitk.Image, moving_a: np.ndarray,
                       moving_grid: sitk.Image, mask: np.ndarray, mask_grid: sitk.Image,
                       settings: RegistrationSettings) -> tuple[np.ndarray, np.ndarray, str, float]:
    """``_register_arrays`` in a child process, through a private temporary folder (always removed):
    the registered image and mask arrays, elastix's log text and the seconds taken.

    The parent waits in ``CHILD_POLL_S`` slices, so that its signal handler runs promptly; on any
    ``BaseException`` (``Interrupted``, ``KeyboardInterrupt``, ``SystemExit``) it stops the child
    (SIGTERM, then SIGKILL), removes the folder and re-raises."""
    work = Path(tempfile.mkdtemp(prefix="hnseg-elastix-"))
    proc = None
    try:
        for name, array in (("fixed", fixed_a), ("moving", moving_a), ("mask", mask)):
            np.save(work / f"{name}.npy", array, allow_pickle=False)
        job = {"settings": settings.model_dump(mode="json"), "fixed": _geometry(fixed_grid),
               "moving": _geometry(moving_grid), "mask": _geometry(mask_grid)}
        (work / "job.json").write_text(json.dumps(job))
        with held_signals():  # a signal cannot come between the start and ``proc``: it is raised after
            proc = _run_child(work)
        log.debug("elastix runs in child process %d (work folder %s)", proc.pid, work)
        while proc.poll() is None:
            time.sleep(CHILD_POLL_S)
        if proc.returncode != 0 or not (work / "result.json").is_file():
            raise _child_failure(proc, work)
        result = json.loads((work / "result.json").read_text())
        log_path = work / "elastix" / ELASTIX_LOG
        log_text = log_path.read_text(errors="replace") if log_path.is_file() else ""
        return (np.load(work / "out_image.npy", allow_pickle=False),
                np.load(work / "out_mask.npy", allow_pickle=False), log_text, float(result["seconds"]))
    finally:
        with held_signals():  # a second signal must not cut the clean-up short
            if proc is not None:
                _stop_child(proc)
            shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# the registration


def register_pre_to_mid(pre_image: sitk.Image, pre_mask: sitk.Image, mid_image: sitk.Image,
                        settings: RegistrationSettings | None = None) -> RegistrationResult:
    """Register ``pre_image`` (moving) onto ``mid_image`` (fixed) and warp ``pre_mask`` with the
    found transform; both outputs lie on ``mid_image``'s grid (see the module docstring). The inputs
    are checked here; elastix runs in a child process that SIGTERM / SIGINT stop within seconds."""
    settings = settings or RegistrationSettings()
    for image, what in ((pre_image, "pre-RT image"), (pre_mask, "pre-RT mask"),
                        (mid_image, "mid-RT image")):
        _check_volume(image, what)
    diffs = grid_differences(pre_image, pre_mask)
    if diffs:
        raise GridMismatchError(
            f"pre-RT mask must lie on the pre-RT image's grid ({', '.join(diffs)} differ): expected "
            f"{describe_grid(pre_image)} (pre-RT image), found {describe_grid(pre_mask)} (pre-RT mask)")
    mask = _mask_array(pre_mask)
    fixed_a = sitk.GetArrayFromImage(mid_image).astype(np.float32)
    moving_a = sitk.GetArrayFromImage(pre_image).astype(np.float32)
    _check_finite(fixed_a, "mid-RT image")
    _check_finite(moving_a, "pre-RT image")
    param_file = Path(settings.parameter_file)
    if not param_file.is_file():
        raise _registration_error(f"elastix parameter file not found: expected {param_file}")

    image_a, mask_a, log_text, seconds = _register_in_child(
        fixed_a, mid_image, moving_a, pre_image, mask, pre_mask, settings)
    del fixed_a, moving_a
    expected = tuple(reversed(mid_image.GetSize()))
    if image_a.shape != expected or mask_a.shape != expected:
        raise _registration_error(f"the registration child returned arrays of shape {image_a.shape} / "
                                  f"{mask_a.shape}, expected {expected} (the mid-RT grid)")
    image = sitk.GetImageFromArray(image_a.astype(np.float32, copy=False))
    image.CopyInformation(mid_image)
    warped = sitk.GetImageFromArray(mask_a.astype(np.uint8, copy=False))
    warped.CopyInformation(mid_image)

    stages = (["rigid (elastix default map)"] if settings.rigid else []) + [f"bspline ({param_file.name})"]
    record = RegistrationRecord(
        elastix_version=_elastix_version(log_text),
        parameter_file=param_file.name,
        parameter_file_sha256=_sha256(param_file),
        stages=stages,
        max_iterations=settings.max_iterations,
        random_seed=settings.random_seed,
        threads=settings.threads,
        seconds=round(seconds, 3),
        final_metric=_final_metric(log_text),
    )
    log.info("registered pre-RT onto mid-RT with itk-elastix in %.1f s (%s; iterations %s; seed %d; "
             "final metric %s)", seconds, " + ".join(stages),
             settings.max_iterations or "from the parameter files", settings.random_seed,
             record.final_metric)
    return RegistrationResult(image=image, mask=warped, record=record)
