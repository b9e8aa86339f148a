"""The evaluation engine against pycocotools' COCOeval, the oracle: on generated sets with
several labels, crowd regions, items without ground truth or without predictions, tied
scores and more than 100 detections on an item, for boxes and masks, class-aware (useCats=1)
and class-agnostic (useCats=0): the 12 stats, per-label AP, the precision and recall arrays,
and the match records (evalImgs' dtMatches / gtMatches / dtIgnore for area "all").

Pure unit tests: no database, no server fixtures.
"""

import contextlib
import io
from typing import Any

import numpy as np
import pytest

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from resolvers.evaluation import (  # noqa: E402
    GroundTruths,
    Options,
    Predictions,
    accumulate,
    evaluate_items,
)
from resolvers.evaluation.item_results import FP, IGNORED, TP  # noqa: E402
from resolvers.evaluation.overlap import box_iou, mask_iou  # noqa: E402

H, W = 150, 200


def _rle(box: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """A rectangle with holes: a blob whose IoU differs from its box's."""
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    x, y, w, h = (round(v) for v in box)
    rows, cols = slice(max(y, 0), min(y + max(h, 1), H)), slice(max(x, 0), min(x + max(w, 1), W))
    m[rows, cols] = rng.random(m[rows, cols].shape) > 0.15
    return mask_utils.encode(m)


def make_set(seed: int, iou_type: str, n_items: int = 24, n_labels: int = 4) -> tuple:
    rng = np.random.default_rng(seed)
    gt_counts = rng.integers(0, 12, n_items)
    gt_counts[:3] = 0  # items without ground truth
    pred_counts = rng.integers(0, 30, n_items)
    pred_counts[3:5] = 0  # items without predictions
    pred_counts[5] = 130  # more than maxDets[-1] on one item
    pred_counts[6] = 115
    g_item = np.repeat(np.arange(n_items), gt_counts)
    n_gt = len(g_item)
    g_label = rng.integers(0, n_labels, n_gt)
    wh = np.exp(rng.uniform(np.log(3), np.log(130), (n_gt, 2)))
    xy = rng.uniform(0, [W - 4, H - 4], (n_gt, 2))
    g_box = np.round(np.hstack([xy, wh]), 1)
    crowd = rng.random(n_gt) < 0.12
    p_item = np.repeat(np.arange(n_items), pred_counts)
    n_pred = len(p_item)
    # predictions near a ground truth of their item when it has one, else anywhere
    p_xy = rng.uniform(0, [W - 4, H - 4], (n_pred, 2))
    p_box = np.round(np.hstack([p_xy, np.exp(rng.uniform(np.log(3), np.log(130), (n_pred, 2)))]), 1)
    p_label = rng.integers(0, n_labels, n_pred)
    starts = np.r_[0, np.cumsum(gt_counts)]
    for i in range(n_pred):
        item = p_item[i]
        if gt_counts[item] and rng.random() < 0.7:
            g = starts[item] + rng.integers(gt_counts[item])
            b = g_box[g].copy()
            b[:2] += rng.normal(0, 0.06, 2) * b[2:]
            b[2:] *= np.exp(rng.normal(0, 0.08, 2))
            p_box[i] = np.round(b, 1)
            if rng.random() < 0.8:
                p_label[i] = g_label[g]
    p_box[:, 2:] = np.maximum(p_box[:, 2:], 0.5)
    p_label[p_item == 5] = 0  # > 100 of one label on one item: cut in class-aware mode too
    score = np.round(rng.random(n_pred), 1)  # many ties
    # rows out of item order, as a commit may read them
    g_perm, p_perm = rng.permutation(n_gt), rng.permutation(n_pred)
    g_item, g_label, g_box, crowd = g_item[g_perm], g_label[g_perm], g_box[g_perm], crowd[g_perm]
    p_item, p_label, p_box, score = p_item[p_perm], p_label[p_perm], p_box[p_perm], score[p_perm]
    g_masks = p_masks = None
    if iou_type == "segm":
        g_masks = [_rle(b, rng) for b in g_box]
        p_masks = [_rle(b, rng) for b in p_box]
        g_area = np.array([float(mask_utils.area(m)) for m in g_masks])
        p_area = np.array([float(mask_utils.area(m)) for m in p_masks])
    else:
        g_area = g_box[:, 2] * g_box[:, 3] * rng.uniform(0.6, 1.0, n_gt)  # as a polygon's
        p_area = p_box[:, 2] * p_box[:, 3]
    ground = GroundTruths(item=g_item, label=g_label, area=g_area, crowd=crowd,
                          ids=np.arange(1, n_gt + 1), bbox=g_box, masks=g_masks)  # fmt: skip
    preds = Predictions(item=p_item, label=p_label, area=p_area, score=score,
                        ids=np.arange(1, n_pred + 1), bbox=p_box, masks=p_masks)  # fmt: skip
    return ground, preds, n_items, n_labels


def coco_eval(ground, preds, n_items: int, n_labels: int, iou_type: str, use_cats: bool):
    images = [{"id": i + 1, "width": W, "height": H} for i in range(n_items)]
    categories = [{"id": c + 1, "name": f"c{c}"} for c in range(n_labels)]
    anns = []
    for r in range(len(ground)):
        ann = {
            "id": int(ground.ids[r]),
            "image_id": int(ground.item[r]) + 1,
            "category_id": int(ground.label[r]) + 1,
            "bbox": ground.bbox[r].tolist(),
            "area": float(ground.area[r]),
            "iscrowd": int(ground.crowd[r]),
        }
        if iou_type == "segm":
            ann["segmentation"] = ground.masks[r]
        anns.append(ann)
    gt = COCO()
    gt.dataset = {"images": images, "categories": categories, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    results = []
    for r in range(len(preds)):
        res = {
            "image_id": int(preds.item[r]) + 1,
            "category_id": int(preds.label[r]) + 1,
            "score": float(preds.score[r]),
        }
        if iou_type == "segm":
            res["segmentation"] = preds.masks[r]
        else:
            res["bbox"] = preds.bbox[r].tolist()
        results.append(res)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _ap(precision: np.ndarray, k: int) -> float:
    s = precision[:, :, k, 0, -1]
    return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))


CASES = [(seed, t, agnostic) for seed in (0, 1, 2) for t in ("bbox", "segm")
         for agnostic in (False, True)]  # fmt: skip


@pytest.fixture(scope="module")
def evaluated() -> dict:
    """Each case evaluated once, by COCOeval and by the engine."""
    out = {}
    for seed, iou_type, agnostic in CASES:
        ground, preds, n_items, n_labels = make_set(seed, iou_type)
        options = Options(n_labels=n_labels, class_agnostic=agnostic, iou_type=iou_type)
        results = evaluate_items(ground, preds, options, n_items)
        metrics = accumulate(results, options)
        ev = coco_eval(ground, preds, n_items, n_labels, iou_type, use_cats=not agnostic)
        aware = (
            coco_eval(ground, preds, n_items, n_labels, iou_type, use_cats=True) if agnostic else ev
        )
        out[seed, iou_type, agnostic] = (ground, preds, results, metrics, ev, aware)
    return out


@pytest.mark.parametrize(("seed", "iou_type", "agnostic"), CASES)
def test_stats_and_arrays_equal_cocoeval(evaluated, seed, iou_type, agnostic) -> None:
    _, _, _, metrics, ev, aware = evaluated[seed, iou_type, agnostic]
    np.testing.assert_allclose(metrics.stats, ev.stats, atol=1e-12, rtol=0)
    for name, ours in (("precision", metrics.precision), ("recall", metrics.recall)):
        theirs = ev.eval[name]
        assert ours.shape == theirs.shape, name
        np.testing.assert_array_equal(ours == -1, theirs == -1, err_msg=name)
        np.testing.assert_allclose(ours, theirs, atol=1e-12, rtol=0, err_msg=name)
    np.testing.assert_allclose(metrics.scores, ev.eval["scores"], atol=1e-12, rtol=0)
    expected = [_ap(aware.eval["precision"], k) for k in range(aware.eval["precision"].shape[2])]
    np.testing.assert_allclose(metrics.per_label_ap, expected, atol=1e-12, rtol=0)
    assert metrics.stats[0] > 0
    assert (metrics.stats > 0).sum() >= 10


@pytest.mark.parametrize(("seed", "iou_type", "agnostic"), CASES)
def test_match_records_equal_evalimgs(evaluated, seed, iou_type, agnostic) -> None:
    _ground, _preds, results, _, ev, _ = evaluated[seed, iou_type, agnostic]
    n_thr = len(ev.params.iouThrs)
    pred_row = {int(i): r for r, i in enumerate(results.pred_ids)}
    gt_row = {int(i): r for r, i in enumerate(results.gt_ids)}
    seen = np.zeros(len(results.pred_ids), dtype=bool)
    all_range = ev.params.areaRng[0]
    checked_crowd = checked_iou = 0
    for e in ev.evalImgs:
        if e is None or e["aRng"] != all_range:
            continue
        cat = e["category_id"]
        ious = ev.ious[e["image_id"], cat]
        if ev.params.useCats:
            gts_in_order = ev._gts[e["image_id"], cat]
        else:
            cats = sorted(ev.cocoGt.getCatIds())  # accumulate() has set params.catIds to [-1]
            gts_in_order = [g for c in cats for g in ev._gts[e["image_id"], c]]
        column = {g["id"]: j for j, g in enumerate(gts_in_order)}
        for d, dt_id in enumerate(e["dtIds"]):
            r = pred_row[dt_id]
            seen[r] = True
            for t in range(n_thr):
                matched, ignored = e["dtMatches"][t, d], e["dtIgnore"][t, d]
                want = IGNORED if ignored else (TP if matched else FP)
                assert results.pred_status[r, t] == want, (dt_id, t)
                got = results.pred_match[r, t]
                assert (results.gt_ids[got] if got >= 0 else 0) == matched, (dt_id, t)
                if matched:
                    iou = ious[d, column[int(matched)]]
                    assert results.pred_iou[r, t] == np.float32(iou)  # stored as float32
                    checked_iou += 1
                    checked_crowd += bool(results.gt_crowd[got])
        for g, gt_id in enumerate(e["gtIds"]):
            r = gt_row[gt_id]
            for t in range(n_thr):
                got = results.gt_match[r, t]
                assert (results.pred_ids[got] if got >= 0 else 0) == e["gtMatches"][t, g]
    # predictions COCO never saw were cut by maxDets: ignored, unmatched
    assert (~seen).sum() > 0
    assert (results.pred_status[~seen] == IGNORED).all()
    assert (results.pred_match[~seen] == -1).all()
    assert checked_iou > 0
    assert checked_crowd > 0


def test_box_iou_is_bitwise_pycocotools() -> None:
    rng = np.random.default_rng(7)
    dt = np.round(rng.uniform(0, 100, (300, 4)), 3)
    gt = np.round(rng.uniform(0, 100, (200, 4)), 3)
    crowd = rng.random(200) < 0.2
    ours = box_iou(dt, gt, crowd)
    theirs = mask_utils.iou(dt.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist())
    assert (ours == theirs).all()


def test_mask_iou_is_pycocotools() -> None:
    rng = np.random.default_rng(8)
    dt = [_rle(b, rng) for b in rng.uniform(0, 50, (40, 4))]
    gt = [_rle(b, rng) for b in rng.uniform(0, 50, (30, 4))]
    crowd = rng.random(30) < 0.3
    theirs = mask_utils.iou(dt, gt, crowd.astype(np.uint8).tolist())
    assert (mask_iou(dt, gt, crowd) == theirs).all()
