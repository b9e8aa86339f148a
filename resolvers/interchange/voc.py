"""Pascal VOC's XML: one file per image, one `<object>` per box.

Coordinates are the VOC devkit's 1-based inclusive pixel indices: a Loom box from `left` to
`right` (continuous, 0-based edges) is `xmin = left + 1`, `xmax = right` — what VOC readers
(supervision's among them) turn back into the same edges. Only boxes have a place in VOC;
other shapes are skipped. Split subsets are listed in `ImageSets/Main/<subset>.txt`.
"""

from typing import Any
from xml.etree import ElementTree as ET

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
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
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
