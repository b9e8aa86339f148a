"""Pascal VOC's XML: one file per image, one `<object>` per box.

Coordinates are the VOC devkit's 1-based inclusive pixel indices: a Loom box from `left` to
`right` (continuous, 0-based edges) is `xmin = left + 1`, `xmax = right` — what VOC readers
(supervision's among them) turn back into the same edges. Only boxes have a place in VOC;
other shapes are skipped. Split subsets are listed in `ImageSets/Main/<subset>.txt`. An
annotation's attributes `difficult` and `truncated`, when true, are VOC's flags of those names.

Reading (an import): every `.xml` file of the upload (a zip, or one file), each an
`<annotation>` of one image. XML that is not well-formed is refused with its line and column,
and XML declaring a DTD or entities is refused outright (defusedxml: no entity expansion bombs,
no external entities). The item's path is `<filename>` when it holds a folder, else the XML
file's folder under `Annotations/` with `<filename>` (`Annotations/000005.xml` naming
`000005.jpg` is `/000005.jpg`); the archive carries the image under `JPEGImages/` or
`images/`. Each `<object>` is a box; one without a `<name>` or a numeric `<bndbox>` is refused,
named `object[n]` (from 1, as XPath counts). `xmin` 0, which some tools write, is read as 0.
"""

from pathlib import PurePosixPath
from typing import Any
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from resolvers.interchange.import_archives import (
    Imported,
    ImportedImage,
    ImportedShape,
    ImportRefused,
    UploadedFiles,
    without_folder,
)

SHAPES = ("box",)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def document(item: dict[str, Any], file_name: str, boxes: list[dict[str, Any]]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "images"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for key, value in (("width", item["width"]), ("height", item["height"]), ("depth", 3)):
        ET.SubElement(size, key).text = "" if value is None else str(value)
    for doc in boxes:
        shape = doc["coordinates"]
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = doc["label"]
        ET.SubElement(obj, "pose").text = "Unspecified"
        for flag in ("truncated", "difficult"):
            ET.SubElement(obj, flag).text = "1" if doc["attributes"].get(flag) is True else "0"
        box = ET.SubElement(obj, "bndbox")
        corners = (
            ("xmin", shape["left"] + 1),
            ("ymin", shape["top"] + 1),
            ("xmax", shape["right"]),
            ("ymax", shape["bottom"]),
        )
        for key, value in corners:
            ET.SubElement(box, key).text = _number(value)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --- reading ---------------------------------------------------------------------------------

FLAGS = ("difficult", "truncated")


def check(files: UploadedFiles) -> None:
    if files.is_zip and not files.ending(".xml"):
        raise ImportRefused("The archive holds no Pascal VOC .xml file")
    if not files.is_zip and not files.head().startswith(b"<"):
        raise ImportRefused("Upload a Pascal VOC .xml file, or a .zip of them")


def _parsed(name: str, content: bytes) -> ET.Element:
    try:
        root = fromstring(content)
    except ET.ParseError as exc:
        line, column = exc.position
        where = f"line {line}, column {column}"
        raise ImportRefused(f"{name} is not well-formed XML ({where})") from exc
    except DefusedXmlException as exc:
        raise ImportRefused(f"{name} declares a DTD or entities, which are not read") from exc
    if root.tag != "annotation":
        raise ImportRefused(f"{name}: the root element is <{root.tag}>, not <annotation>")
    return root


def _path(name: str, root: ET.Element) -> tuple[str, bool]:
    """The image's path in the dataset, and whether it lacks its extension."""
    given = (root.findtext("filename") or "").strip().lstrip("/")
    if "/" in given:
        return given, False
    folder = PurePosixPath(without_folder(PurePosixPath(name), ("Annotations",))).parent
    if not given:
        return str(folder / PurePosixPath(name).stem), True
    return str(folder / given), False


def _box(where: str, obj: ET.Element) -> ImportedShape:
    label = (obj.findtext("name") or "").strip()
    if not label:
        return ImportedShape(where, "", "box", None, problem="needs a <name>")
    corners = [obj.findtext(f"bndbox/{key}") for key in ("xmin", "ymin", "xmax", "ymax")]
    try:
        xmin, ymin, xmax, ymax = (float((text or "").strip()) for text in corners)
    except ValueError:
        problem = "needs a <bndbox> with numbers xmin, ymin, xmax and ymax"
        return ImportedShape(where, label, "box", None, problem=problem)
    box = {"left": max(xmin - 1, 0.0), "top": max(ymin - 1, 0.0), "right": xmax, "bottom": ymax}
    flags = {flag: True for flag in FLAGS if (obj.findtext(flag) or "").strip() == "1"}
    return ImportedShape(where, label, "box", box, flags)


def read(files: UploadedFiles) -> Imported:
    check(files)
    carried = files.images("JPEGImages", "images")
    labels: dict[str, None] = {}
    images = []
    for name in files.ending(".xml") if files.is_zip else files.names:
        root = _parsed(name, files.read(name))
        path, stem = _path(name, root)
        without = path if stem else str(PurePosixPath(path).with_suffix(""))
        member = files.find(f"images/{path}") or carried.get(without)
        shapes = [_box(f"object[{n}]", obj) for n, obj in enumerate(root.findall("object"), 1)]
        labels.update((shape.label, None) for shape in shapes if shape.label)
        images.append(ImportedImage(name, "", "/" + path, stem, member, shapes))
    return Imported(list(labels), images)
