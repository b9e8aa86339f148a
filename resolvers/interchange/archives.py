"""The zip archives exports write, one kind per format, fed a page of items at a time.

Each writer is given the items in export order with their annotations and writes what its
format makes of them; what a format has no place for is counted as skipped, per type. All of
it runs in a thread (zip and JSON work is CPU work), a page at a time, into a temporary file.

- COCO: `annotations/instances.json`, its `images` and `annotations` arrays spooled to two
  temporary files and joined at the end, so the JSON is never in memory.
- YOLO: `labels/<path>.txt` per image (its path in the dataset, `.txt` for the extension),
  `data.yaml`, and one list file of image paths per split subset.
- Pascal VOC: `Annotations/<path>.xml` per image and `ImageSets/Main/<subset>.txt`.

Every format puts the files, when asked, under `images/` at their paths in the dataset.
"""

import contextlib
import json
import shutil
import tempfile
import zipfile
from collections import Counter
from pathlib import PurePosixPath
from typing import IO, Any

from resolvers.interchange import coco, voc, yolo

Entry = tuple[int, dict[str, Any], list[dict[str, Any]]]
"""(the image's number from 1, the item, its annotations in id order)."""


def file_name(item: dict[str, Any]) -> str:
    """The item's path in the dataset, as the archive names it (no leading slash)."""
    return item["filename"].lstrip("/")


def _renamed(name: str, suffix: str) -> str:
    return str(PurePosixPath(name).with_suffix(suffix))


class Archive:
    """What every format's archive does: hold the zip, take files, count what it skips."""

    def __init__(self, file: IO[bytes], names: list[str], stack: contextlib.ExitStack) -> None:
        self.zip = zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED)
        self.names = names
        self.skipped: Counter[str] = Counter()
        self.subsets: dict[str, list[str]] = {}

    def add_file(self, name: str, content: bytes) -> None:
        self.zip.writestr(f"images/{name}", content, zipfile.ZIP_STORED)

    def _kept(self, docs: list[dict[str, Any]], shapes: tuple[str, ...]) -> list[dict[str, Any]]:
        kept = [doc for doc in docs if doc["type"] in shapes]
        self.skipped.update(doc["type"] for doc in docs if doc["type"] not in shapes)
        return kept

    def _listed(self, item: dict[str, Any], path: str) -> None:
        self.subsets.setdefault(item.get("split") or "all", []).append(path)

    def add_page(self, entries: list[Entry]) -> int:
        """Write a page; the number of annotations written."""
        raise NotImplementedError

    def finish(self) -> None:
        self.zip.close()


class CocoArchive(Archive):
    def __init__(self, file: IO[bytes], names: list[str], stack: contextlib.ExitStack) -> None:
        super().__init__(file, names, stack)
        self.categories = coco.categories(names)
        self.category_of = {category["name"]: category["id"] for category in self.categories}
        # The spools close with the export's stack, which outlives this writer.
        self.images = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        self.annotations = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        self.written = 0

    @staticmethod
    def _append(spool: IO[bytes], entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            separator = b"," if spool.tell() else b""
            spool.write(separator + json.dumps(entry, separators=(",", ":")).encode())

    def add_page(self, entries: list[Entry]) -> int:
        images, annotations = [], []
        for number, item, docs in entries:
            images.append(coco.image(number, item, file_name(item)))
            for doc in self._kept(docs, coco.SHAPES):
                self.written += 1
                category = self.category_of[doc["label"]]
                annotations.append(coco.annotation(self.written, number, category, doc))
        self._append(self.images, images)
        self._append(self.annotations, annotations)
        return len(annotations)

    def finish(self) -> None:
        head = {"info": {"description": "Exported by Loom"}, "licenses": []}
        with self.zip.open("annotations/instances.json", "w") as entry:
            entry.write(json.dumps(head, separators=(",", ":"))[:-1].encode())
            entry.write(b',"categories":' + json.dumps(self.categories).encode())
            for key, spool in (("images", self.images), ("annotations", self.annotations)):
                entry.write(f',"{key}":['.encode())
                spool.seek(0)
                shutil.copyfileobj(spool, entry)
                entry.write(b"]")
            entry.write(b"}")
        super().finish()


class YoloArchive(Archive):
    def __init__(self, file: IO[bytes], names: list[str], stack: contextlib.ExitStack) -> None:
        super().__init__(file, names, stack)
        self.class_of = {name: number for number, name in enumerate(names)}

    def add_page(self, entries: list[Entry]) -> int:
        written = 0
        for _, item, docs in entries:
            name = file_name(item)
            kept = self._kept(docs, yolo.SHAPES)
            if item["width"] is None or item["height"] is None:
                self.skipped.update("unsized" for _ in kept)
                kept = []
            lines = [
                yolo.line(self.class_of[doc["label"]], doc, item["width"], item["height"])
                for doc in kept
            ]
            self.zip.writestr(f"labels/{_renamed(name, '.txt')}", "".join(f"{x}\n" for x in lines))
            self._listed(item, f"images/{name}")
            written += len(lines)
        return written

    def finish(self) -> None:
        lists = {}
        for subset, paths in self.subsets.items():
            self.zip.writestr(f"{subset}.txt", "".join(f"./{path}\n" for path in paths))
            lists[subset] = f"{subset}.txt"
        if set(lists) == {"all"}:
            lists = {"train": "all.txt", "val": "all.txt"}
        self.zip.writestr("data.yaml", yolo.data_yaml(self.names, lists))
        super().finish()


class VocArchive(Archive):
    def add_page(self, entries: list[Entry]) -> int:
        written = 0
        for _, item, docs in entries:
            name = file_name(item)
            boxes = self._kept(docs, voc.SHAPES)
            self.zip.writestr(
                f"Annotations/{_renamed(name, '.xml')}", voc.document(item, name, boxes)
            )
            self._listed(item, _renamed(name, ""))
            written += len(boxes)
        return written

    def finish(self) -> None:
        for subset, stems in self.subsets.items():
            self.zip.writestr(f"ImageSets/Main/{subset}.txt", "".join(f"{s}\n" for s in stems))
        super().finish()


ARCHIVES: dict[str, type[Archive]] = {"coco": CocoArchive, "yolo": YoloArchive, "voc": VocArchive}
