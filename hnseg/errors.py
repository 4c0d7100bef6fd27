"""One exception type per kind of user error.

Every message names the file or socket, what was expected and what was found. The CLI turns any
``HnsegError`` into a one-line ``<ErrorName>: <message>`` on stderr and a non-zero exit code.
"""

from __future__ import annotations


class HnsegError(Exception):
    """Base class of every error a user can cause (bad inputs, bad weights, bad options)."""

    exit_code = 2

    @property
    def name(self) -> str:
        return type(self).__name__


class InputsJsonError(HnsegError):
    """``inputs.json`` is not valid JSON or does not have the grand-challenge structure."""


class MissingInputError(HnsegError):
    """A required input socket has no file."""


class AmbiguousInputError(HnsegError):
    """A socket folder holds more than one image file."""


class UnreadableImageError(HnsegError):
    """An image file cannot be read by SimpleITK."""


class DicomSeriesError(HnsegError):
    """A DICOM series does not form one regular volume (missing slice, uneven or duplicate positions,
    mixed orientations or slice sizes, tilted stack)."""


class ImageDimensionError(HnsegError):
    """An image is not a 3D single-component volume."""


class NonFiniteImageError(HnsegError):
    """An image holds NaN or Inf values."""


class GridMismatchError(HnsegError):
    """Two images that must share one voxel grid do not."""


class ImageOverlapError(HnsegError):
    """Two images that must show the same anatomy (e.g. CT and MRI) do not overlap in space."""


class MaskLabelError(HnsegError):
    """A mask is not integer-valued or holds labels outside the task's label set."""


class TaskSelectionError(HnsegError):
    """The task cannot be chosen from the inputs, or an unknown task was named."""


class WeightsError(HnsegError):
    """Weights folder missing or its metadata unusable."""


class WeightsIntegrityError(WeightsError):
    """A weights file does not match the sha256 recorded in the manifest."""


class SpacingMismatchError(HnsegError):
    """Evaluation: prediction and ground truth have different voxel spacing."""


class CaseMatchingError(HnsegError):
    """Evaluation: ground-truth and prediction files cannot be paired by case id."""


class DatasetLayoutError(HnsegError):
    """Training: a release folder does not follow the documented layout."""


class SettingsError(HnsegError):
    """A run setting (flag or environment variable) has an unusable value."""


class OutputFormatError(HnsegError):
    """Evaluation: a ground-truth or prediction file does not have the task's output format."""


class RegistrationError(HnsegError):
    """itk-elastix could not register the pre-RT image onto the mid-RT image, or transformix could
    not warp the pre-RT mask onto the mid-RT grid (the message quotes what elastix reported)."""


class UnsafePathError(HnsegError):
    """An input path leads out of the input folder (a symbolic link, an MHA ``ElementDataFile`` or a
    ``relative_path`` pointing elsewhere) or to something that is not a regular file (a device, a FIFO)."""


class ResourceLimitError(HnsegError):
    """An input or setting would need implausible resources: a voxel count or physical extent beyond the
    task profile's limits, a compressed file that inflates beyond its header's size, an over-large or
    over-deep JSON file, a sliding-window step that would multiply the work."""


class PixelTypeError(HnsegError):
    """An image's pixel type is not a real-valued scalar (complex, vector, label-map or string pixels)."""


class IntensityRangeError(HnsegError):
    """An image's values are implausible for its modality (CT outside the HU window, strongly negative
    MRI, values near the floating-point limits); ``--force`` turns it into a recorded warning."""


class DirectionMatrixError(HnsegError):
    """An image's direction cosines are not orthonormal (a sheared or scaled direction matrix)."""


class OutputWriteError(HnsegError):
    """An output cannot be written: the output folder is unwritable, a file stands where a folder must
    be, or the disk is full. No partial or empty output file is left behind."""


class OutputLocationError(HnsegError):
    """The output folder is, contains or lies inside the input folder or a case source: writing there
    could replace or delete inputs."""


class BatchLockError(HnsegError):
    """Another live ``hnseg batch`` run holds the output folder (its host and pid are named)."""
