"""Integrity of input files before ITK reads them: regular files only, compressed streams complete, data sizes
that match their headers.

ITK reads a truncated ``.nii.gz`` or a damaged gzip ``.nrrd`` without an error (the missing voxels come back as
zeros), and opening a FIFO or a device blocks or never ends. So every file a volume consists of (a header and
its detached data file, or each file of a DICOM folder) is checked here first, and a problem is one sentence.
Checks cost one pass over the compressed bytes (streamed, no volume-sized buffer).
"""
from __future__ import annotations

import bz2
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import InputError

_CHUNK = 1 << 22


def file_kind(path) -> str:
    """'file', 'folder', 'missing' or a word for a special file (FIFO, device, socket); never opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def require_regular_file(path, role: str = "Input") -> None:
    kind = file_kind(path)
    if kind == "missing":
        raise InputError(f"{role} file '{path}' does not exist.")
    if kind == "unreadable":
        raise InputError(f"{role} file '{path}' cannot be read.")
    if kind != "file":
        raise InputError(f"{role} '{path}' is a {kind}, not a regular file; MedFusion reads only regular files.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{role} file '{path}' cannot be read (permission denied).")


def check_folder_entries(folder: Path) -> None:
    """A DICOM folder must hold regular files only: GDCM opens every entry, and a FIFO would block it."""
    for entry in sorted(folder.iterdir()):
        kind = file_kind(entry)
        if kind not in ("file", "folder"):
            raise InputError(f"Folder '{folder}' holds '{entry.name}', a {kind}; remove it, since reading it "
                             f"would block.")


def volume_files(path) -> List[Path]:
    """Every file the volume at ``path`` consists of: the file itself, plus a detached data file if any."""
    p = Path(path)
    files = [p]
    data = _detached_data_file(p)
    if data is not None:
        files.append(data)
    return files


def check_integrity(path) -> None:
    """Raise InputError when ``path`` (NIfTI, NRRD or MetaImage) is truncated, damaged or inconsistent."""
    p = Path(path)
    require_regular_file(p)
    name = p.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            _check_nifti(p)
        elif name.endswith((".nrrd", ".nhdr")):
            _check_nrrd(p)
        elif name.endswith((".mha", ".mhd")):
            _check_metaimage(p)
    except OSError as error:
        raise InputError(f"Cannot read '{path}' ({error.strerror or error}).") from None


# ------------------------------------------------------------------------------------------------ streams
def _stream_length(handle, decompressor, name: str, kind: str) -> Tuple[int, bytes]:
    """Decompress the rest of ``handle``; returns (bytes produced, the first 540 of them)."""
    total, head = 0, b""
    try:
        while True:
            block = handle.read(_CHUNK)
            if not block:
                break
            out = block if decompressor is None else decompressor.decompress(block)
            if len(head) < 540:
                head += out[: 540 - len(head)]
            total += len(out)
    except (zlib.error, OSError, EOFError, ValueError):
        raise InputError(f"'{name}' is damaged: its {kind} data cannot be decompressed.") from None
    if decompressor is not None and not decompressor.eof:
        raise InputError(f"'{name}' is truncated: its {kind} stream ends early (an incomplete copy or download?).")
    return total, head


def _gzip_length(path: Path, offset: int = 0) -> Tuple[int, bytes]:
    """Length of the decompressed gzip stream(s) in ``path`` after ``offset``; the gzip CRC is checked."""
    import gzip

    with open(path, "rb") as raw:
        raw.seek(offset)
        total, head = 0, b""
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                while True:
                    block = stream.read(_CHUNK)
                    if not block:
                        break
                    if len(head) < 540:
                        head += block[: 540 - len(head)]
                    total += len(block)
        except EOFError:
            raise InputError(f"'{path}' is truncated: its gzip stream ends early (an incomplete copy or "
                             f"download?).") from None
        except (zlib.error, OSError, ValueError):
            raise InputError(f"'{path}' is damaged: its gzip data fails the integrity check (CRC).") from None
    return total, head


def _too_short(path: Path, have: int, need: int) -> InputError:
    return InputError(f"'{path}' is truncated: it holds {have} bytes of voxel data where its header declares "
                      f"{need}.")


# ------------------------------------------------------------------------------------------------ NIfTI
def _nifti_needs(head: bytes) -> Optional[int]:
    """Bytes a NIfTI-1/2 file needs (header, extensions, voxels), from its header; None if not recognised."""
    if len(head) < 348:
        return None
    for endian in "<>":
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if size == 540 and len(head) >= 540:
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    n = dims[0]
    if not 1 <= n <= 7 or bitpix <= 0:
        return None
    voxels = 1
    for d in dims[1:n + 1]:
        voxels *= max(int(d), 1)
    return max(offset, 348) + voxels * bitpix // 8


def _is_gzip(path: Path, offset: int = 0) -> bool:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(2) == b"\x1f\x8b"


def _check_nifti(path: Path) -> None:
    if _is_gzip(path):  # by content: a .nii.gz may be stored uncompressed, and ITK reads it so
        have, head = _gzip_length(path)
    else:
        have = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(540)
    need = _nifti_needs(head)
    if need is not None and have < need:
        raise _too_short(path, have, need)


# ------------------------------------------------------------------------------------------------ NRRD
_NRRD_SIZES = (("long long", 8), ("longlong", 8), ("int64", 8), ("char", 1), ("int8", 1), ("short", 2),
               ("int16", 2), ("int32", 4), ("int", 4), ("float", 4), ("double", 8))


def _nrrd_type_size(text: str) -> Optional[int]:
    text = text.lower()
    for word, size in _NRRD_SIZES:
        if word in text:
            return size
    return None


def _read_nrrd_header(path: Path) -> Tuple[Dict[str, str], int]:
    """(fields, offset of the attached data); the header ends at the first empty line."""
    fields: Dict[str, str] = {}
    with open(path, "rb") as handle:
        magic = handle.readline(64)
        if not magic.startswith(b"NRRD"):
            return {}, 0
        while True:
            line = handle.readline(1 << 16)
            if not line or not line.strip():
                return fields, handle.tell()
            text = line.decode("latin-1").strip()
            if text.startswith("#") or ":" not in text:
                continue
            key, _, value = text.partition(":=" if ":=" in text else ":")
            fields[key.strip().lower()] = value.strip()


def _nrrd_data_file(path: Path, fields: Dict[str, str]) -> Optional[Path]:
    value = fields.get("data file", fields.get("datafile"))
    if value is None or value.upper().startswith("LIST") or "%" in value or " " in value:
        return None
    data = Path(value)
    return data if data.is_absolute() else path.parent / data


def _check_nrrd(path: Path) -> None:
    fields, offset = _read_nrrd_header(path)
    if not fields:
        return  # not a NRRD we can parse: ITK decides
    data = _nrrd_data_file(path, fields)
    if data is not None:
        require_regular_file(data, role="Data")
        offset = 0
    elif "data file" in fields or "datafile" in fields:
        return  # a list or pattern of data files: ITK checks them
    else:
        data = path
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
    except ValueError:
        return
    type_size = _nrrd_type_size(fields.get("type", ""))
    if not sizes or type_size is None:
        return
    need = type_size
    for s in sizes:
        need *= s
    encoding = fields.get("encoding", "raw").lower()
    skip_lines = int(fields.get("line skip", fields.get("lineskip", "0")) or 0)
    if encoding in ("gzip", "gz") and skip_lines == 0:
        have, _ = _gzip_length(data, offset)
    elif encoding in ("bzip2", "bz2") and skip_lines == 0:
        with open(data, "rb") as handle:
            handle.seek(offset)
            have, _ = _stream_length(handle, bz2.BZ2Decompressor(), str(data), "bzip2")
    elif encoding == "raw":
        skip = int(fields.get("byte skip", fields.get("byteskip", "0")) or 0)
        have = data.stat().st_size - offset - max(skip, 0)  # skip -1: the data is the file's last bytes
    else:
        return  # text encodings: ITK counts the values
    if have < need:
        raise _too_short(data, have, need)


# ------------------------------------------------------------------------------------------------ MetaImage
_MET_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _read_meta_header(path: Path) -> Tuple[Dict[str, str], int]:
    fields: Dict[str, str] = {}
    with open(path, "rb") as handle:
        for _ in range(200):
            line = handle.readline(1 << 16)
            if not line:
                break
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                return {}, 0
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                return fields, handle.tell()
    return {}, 0


def _meta_data_file(path: Path, fields: Dict[str, str]) -> Optional[Path]:
    value = fields.get("elementdatafile", "")
    if value.upper() in ("", "LOCAL") or value.upper().startswith("LIST") or "%" in value or " " in value:
        return None
    data = Path(value)
    return data if data.is_absolute() else path.parent / data


def _detached_data_file(path: Path) -> Optional[Path]:
    name = path.name.lower()
    try:
        if name.endswith(".nhdr"):
            return _nrrd_data_file(path, _read_nrrd_header(path)[0])
        if name.endswith(".mhd"):
            return _meta_data_file(path, _read_meta_header(path)[0])
    except OSError:
        return None
    return None


def _check_metaimage(path: Path) -> None:
    fields, offset = _read_meta_header(path)
    if not fields:
        return
    value = fields.get("elementdatafile", "")
    data = _meta_data_file(path, fields)
    if data is not None:
        require_regular_file(data, role="Data")
        offset = 0
    elif value.upper() != "LOCAL":
        return
    else:
        data = path
    try:
        sizes = [int(v) for v in fields.get("dimsize", "").split()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except ValueError:
        return
    type_size = _MET_SIZES.get(fields.get("elementtype", "").upper())
    if not sizes or type_size is None:
        return
    need = type_size * channels
    for s in sizes:
        need *= s
    if fields.get("compresseddata", "false").lower() == "true":
        with open(data, "rb") as handle:
            handle.seek(offset)
            have, _ = _stream_length(handle, zlib.decompressobj(wbits=47), str(data), "zlib")
    else:
        header_size = int(fields.get("headersize", "0") or 0)
        have = data.stat().st_size - offset - (0 if header_size == -1 else header_size)
    if have < need:
        raise _too_short(data, have, need)
