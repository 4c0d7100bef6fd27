"""Everything learnt about an image file before its voxels are read.

- the data files a header points to (MetaImage ``ElementDataFile``, detached NRRD ``data file``) must be
  regular files inside the input folder (``UnsafePathError``): a header may not read ``/etc/shadow``
  or stream ``/dev/zero``;
- the header's size, spacing, pixel type and direction (``sitk.ImageFileReader.ReadImageInformation``,
  which reads no voxel), checked against the task's limits (``hnseg.load.plausibility``);
- a compressed stream (``.nii.gz``, MetaImage ``CompressedData = True``) may not inflate beyond the
  size its header declares (``ResourceLimitError``): decompression stops one block past it.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import ResourceLimitError, UnreadableImageError
from hnseg.io.safe_paths import check_regular_file

HEADER_BYTES = 1 << 16  # MetaImage / NRRD headers are text of a few hundred bytes
CHUNK = 1 << 22
_METAIO_TYPES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


@dataclass(frozen=True)
class MetaHeader:
    """The fields of a MetaImage (.mha/.mhd) header that locate and size its voxel data."""

    fields: dict[str, str]
    data_offset: int  # bytes before the voxel data when ElementDataFile = LOCAL

    @property
    def compressed(self) -> bool:
        return self.fields.get("compresseddata", "false").lower() == "true"

    def voxel_bytes(self) -> int | None:
        try:
            dims = [int(v) for v in self.fields["dimsize"].split()]
            channels = int(self.fields.get("elementnumberofchannels", "1"))
            size = _METAIO_TYPES[self.fields["elementtype"].upper()]
        except (KeyError, ValueError):
            return None
        return int(np.prod(dims, dtype=object)) * channels * size


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEADER_BYTES)


def read_meta_header(path: Path) -> MetaHeader:
    """MetaIO's ``Key = Value`` lines up to and including ``ElementDataFile`` (always the last key)."""
    head = _head(path)
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        line = raw.decode("latin-1").strip()
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        fields[key.lower()] = value
        if key.lower() == "elementdatafile":
            break
    return MetaHeader(fields=fields, data_offset=min(offset, len(head)))


def _metaio_data_files(path: Path, header: MetaHeader) -> list[str]:
    """The files named by ``ElementDataFile``: LOCAL (none), a file name, ``LIST`` (the names on the
    following lines) or a ``printf`` pattern with min/max/step."""
    value = header.fields.get("elementdatafile", "")
    if not value or value.upper() == "LOCAL":
        return []
    if value.upper().startswith("LIST"):
        rest = _head(path)[header.data_offset:].decode("latin-1").splitlines()
        return [ln.strip() for ln in rest if ln.strip()]
    pattern = re.fullmatch(r"(.*%\d*d.*?)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)", value)
    if pattern:
        fmt, lo, hi, step = pattern.group(1), *map(int, pattern.groups()[1:])
        if step == 0 or abs((hi - lo) // step) > 10_000:
            return [value]  # not a usable pattern: checked as a plain name, which then does not exist
        return [fmt % i for i in range(lo, hi + (1 if step > 0 else -1), step)]
    return [value]


def _nrrd_data_files(path: Path) -> list[str]:
    files: list[str] = []
    lines = _head(path).decode("latin-1").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            break  # a blank line ends the header
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("data file", "datafile"):
            value = value.strip()
            if value.upper().startswith("LIST"):
                files += [ln.strip() for ln in lines[i + 1:] if ln.strip()]
            elif value:
                files.append(value.split()[0] if "%" in value else value)
    return files


def check_data_files(path: Path, label: str, root: str | os.PathLike | None) -> MetaHeader | None:
    """Refuse a header whose voxel data lies outside ``root`` (default: the header's own folder) or is
    not a regular file. Returns the MetaImage header (None for other formats)."""
    name = path.name.lower()
    base = root if root is not None else path.parent
    header = None
    if name.endswith((".mha", ".mhd")):
        header = read_meta_header(path)
        names = _metaio_data_files(path, header)
    elif name.endswith((".nrrd", ".nhdr")):
        names = _nrrd_data_files(path)
    else:
        return None
    for n in names:
        data = Path(n) if os.path.isabs(n) else path.parent / n
        check_regular_file(data, base, f"{label}: data file {n!r} named in its header")
    return header


def read_information(path: Path, label: str) -> sitk.ImageFileReader:
    """The header (size, spacing, origin, direction, pixel type) without reading any voxel."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith(("Description:", "Reason:"))),
                      lines[-1] if lines else "no reader accepted it")
        raise UnreadableImageError(f"{label}: expected a readable image header (.mha/.nii.gz/.nrrd), "
                                   f"SimpleITK failed: {detail} ({path.stat().st_size} bytes)") from None
    return reader


def _bomb(label: str, declared: int) -> ResourceLimitError:
    return ResourceLimitError(f"{label}: expected a compressed stream inflating to the {declared:,} bytes its "
                              f"header declares, found it inflating beyond that (a decompression bomb or a "
                              f"corrupt header)")


def check_meta_inflation(path: Path, header: MetaHeader, label: str, root: str | os.PathLike | None) -> None:
    """A compressed MetaImage's zlib stream may inflate to the header's voxel bytes, no more."""
    declared = header.voxel_bytes()
    if not header.compressed or declared is None:
        return
    value = header.fields.get("elementdatafile", "")
    source, offset = (path, header.data_offset) if value.upper() == "LOCAL" else (path.parent / value, 0)
    if value.upper() not in ("LOCAL",) and not source.is_file():
        return  # LIST / pattern files: ITK reads them uncompressed
    inflater = zlib.decompressobj(47)  # zlib or gzip header, as ITK's MetaIO accepts
    total = 0
    with open(source, "rb") as f:
        f.seek(offset)
        while chunk := f.read(CHUNK):
            data = chunk
            while data:
                total += len(inflater.decompress(data, CHUNK))
                if total > declared:
                    raise _bomb(label, declared)
                data = inflater.unconsumed_tail
            if inflater.eof:
                break


def nifti_scan(path: Path, label: str, need: int, data_offset: int, dtype: np.dtype) -> tuple[int, int]:
    """One pass over a NIfTI file's voxel bytes (decompressing a ``.nii.gz`` at most one block past
    ``need``): returns (bytes found, non-finite float voxels). Raises ``ResourceLimitError`` for a
    stream inflating beyond ``need`` by more than one block, ``UnreadableImageError`` for a damaged one."""
    gz = path.name.lower().endswith(".gz")
    floating = dtype.kind == "f"
    size = bad = 0
    carry = b""
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            while chunk := f.read(CHUNK):
                start = size
                size += len(chunk)
                if size > need + CHUNK:
                    raise _bomb(label, need)
                if floating:
                    lo, hi = max(data_offset - start, 0), max(min(need - start, len(chunk)), 0)
                    if lo < hi:
                        block = carry + chunk[lo:hi]
                        cut = len(block) - len(block) % dtype.itemsize
                        values = np.frombuffer(block[:cut], dtype=dtype)
                        bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                        carry = block[cut:]
    except (EOFError, OSError, zlib.error) as exc:
        raise UnreadableImageError(f"{label}: expected a complete gzip stream, found a damaged or "
                                   f"truncated one ({exc})") from None
    return size, bad


@dataclass(frozen=True)
class ImageInfo:
    """Geometry and pixel type of an image, from its header (or from an image already in memory)."""

    dimension: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    pixel_id: int
    pixel_type: str
    components: int

    @classmethod
    def of(cls, source: sitk.ImageFileReader | sitk.Image) -> ImageInfo:
        if isinstance(source, sitk.Image):
            dim, pid, comps = source.GetDimension(), source.GetPixelID(), source.GetNumberOfComponentsPerPixel()
            ptype = source.GetPixelIDTypeAsString()
        else:
            dim, pid, comps = source.GetDimension(), source.GetPixelID(), source.GetNumberOfComponents()
            ptype = sitk.GetPixelIDValueAsString(pid)
        return cls(dimension=dim, size=tuple(source.GetSize()), spacing=tuple(source.GetSpacing()),
                   origin=tuple(source.GetOrigin()), direction=tuple(source.GetDirection()), pixel_id=pid,
                   pixel_type=ptype, components=comps)
