"""Datasets in and out of Loom: COCO (YOLO and Pascal VOC to come) archives."""
