"""What an import reads from its upload, whatever the format: files in, images with shapes out.

An upload is a zip archive or a single file. `UploadedFiles` opens it and refuses, before
anything is read or stored, a zip that is unsafe to unpack: a member with an absolute path or
`..` in it, a symbolic link, more than MAX_MEMBERS members, more than MAX_BYTES uncompressed,
or a member inflating more than MAX_RATIO times (a zip bomb). Folders, `__MACOSX/` and `._`
files (what macOS's Finder adds to the zips it makes) are not counted as the archive's files.

Each format's reader (`coco.read`, `yolo.read`, `voc.read`) turns the files into
`ImportedImage`s: the path in the dataset each names, the member holding its pixels when the
archive carries them, and its annotations as `ImportedShape`s. The shapes are not checked here:
whether a box lies inside its image depends on the item it lands on, which the import finds.
"""

import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any

from resolvers.errors import LoomError

MAX_MEMBERS = 200_000
MAX_BYTES = 4 << 30
MAX_RATIO = 200
ZIP_MAGIC = b"PK\x03\x04"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class ImportRefused(LoomError):
    """The upload cannot be imported at all; nothing was written."""

    code = "BAD_USER_INPUT"


@dataclass(slots=True)
class ImportedShape:
    """One annotation as a file gives it: Loom's type and coordinates, not yet checked."""

    element: str
    """Where it is in its file: `annotations[17] (id 42)`, `line 3`, `object[2]`."""
    label: str
    type: str
    coordinates: Any
    attributes: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    """Why it cannot be imported, when the file alone says so (an unknown class, say)."""


@dataclass(slots=True)
class ImportedImage:
    """An image a file names, and the annotations it gives it."""

    file: str
    element: str
    """Where the file names it (`images[3]`); empty when the whole file is about it."""
    path: str
    """The item's path in the dataset (`/train/a.png`); without its extension if `stem`."""
    stem: bool
    member: str | None
    """The archive member holding the image's pixels, if the archive carries them."""
    shapes: list[ImportedShape]
    fractions: bool = False
    """The coordinates are fractions of the image's width and height (YOLO's)."""


@dataclass
class Imported:
    labels: list[str]
    """Every label the files define, in their order (for `createMissingLabels`)."""
    images: list[ImportedImage]


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    """Why an archive member must not be read, if it must not."""
    path = PurePosixPath(info.filename.replace("\\", "/"))
    if path.is_absolute() or info.filename[1:3] in (":\\", ":/"):
        return "an absolute path"
    if ".." in path.parts:
        return "a path with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.file_size > MAX_BYTES:
        return f"over {MAX_BYTES} bytes"
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        return f"inflating {info.file_size // info.compress_size} times (a zip bomb?)"
    return None


def _safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ImportRefused(f"The archive holds {len(members)} files (at most {MAX_MEMBERS})")
    for info in members:
        if (reason := _unsafe(info)) is not None:
            raise ImportRefused(f"The archive's member {info.filename!r} is {reason}")
    total = sum(info.file_size for info in members)
    if total > MAX_BYTES:
        raise ImportRefused(f"The archive inflates to {total} bytes (at most {MAX_BYTES})")
    return members


def _is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return name.endswith("/") or "__MACOSX" in parts or (bool(parts) and parts[-1][:2] == "._")


class UploadedFiles:
    """The upload's files by name: a safe zip's members, or the one file uploaded."""

    def __init__(self, spool: IO[bytes], filename: str) -> None:
        spool.seek(0)
        self.is_zip = spool.read(4) == ZIP_MAGIC
        spool.seek(0)
        self._zip: zipfile.ZipFile | None = None
        self._single = spool
        if not self.is_zip:
            self.names = [PurePosixPath(filename or "upload").name]
            self._named = set(self.names)
            return
        try:
            self._zip = zipfile.ZipFile(spool)
        except zipfile.BadZipFile as exc:
            raise ImportRefused(f"The upload is not a readable zip archive: {exc}") from exc
        try:
            members = _safe_members(self._zip)
        except ImportRefused:
            self._zip.close()
            raise
        self.names = [info.filename for info in members if not _is_junk(info.filename)]
        self._named = set(self.names)

    def head(self) -> bytes:
        """The first bytes of a single uploaded file, blanks stripped (to tell its kind)."""
        self._single.seek(0)
        head = self._single.read(64).lstrip()
        self._single.seek(0)
        return head

    def read(self, name: str) -> bytes:
        if self._zip is None:
            self._single.seek(0)
            return self._single.read()
        try:
            return self._zip.read(name)
        except zipfile.BadZipFile as exc:
            raise ImportRefused(f"The archive's member {name!r} cannot be read: {exc}") from exc

    def text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportRefused(f"{name} is not UTF-8 text: {exc}") from exc

    def find(self, *candidates: str) -> str | None:
        """The first of these names the upload holds."""
        return next((name for name in candidates if name in self._named), None)

    def ending(self, *suffixes: str) -> list[str]:
        return [name for name in self.names if name.lower().endswith(suffixes)]

    def images(self, *folders: str) -> dict[str, str]:
        """The archive's image files by the path they stand for without their extension,
        the first of `folders` (`images`) left out of it: `images/train/a.png` is
        `train/a`."""
        found = {}
        for name in self.names:
            path = PurePosixPath(name)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found[without_folder(path.with_suffix(""), folders)] = name
        return found

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def without_folder(path: PurePosixPath, folders: tuple[str, ...]) -> str:
    """The path with its last folder named one of `folders` left out (`labels/train/a` and
    `train/labels/a` are both `train/a`)."""
    parts = list(path.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in folders:
            del parts[index]
            break
    return "/".join(parts)
