"""The engine's less common options against pycocotools' COCOeval (custom area ranges, "all"
not first, maxDets without 100), iou_type "segm" with allowed label pairs checked by hand,
and the stored per-item layout: `item_arrays` against the ItemResults columns, through
BSON, and version 1 dicts still read.

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
    FP,
    IGNORED,
    TP,
    GroundTruths,
    ItemResults,
    Options,
    Predictions,
    accumulate,
    evaluate_items,
    item_arrays,
)
from resolvers.evaluation.item_results import COLUMNS, RECORD_COLUMNS  # noqa: E402
from tests.test_evaluation_parity import make_set  # noqa: E402

W, H = 200, 150


def coco_eval(ground, preds, n_items, n_labels, use_cats, area_ranges, area_labels, max_dets,
              summarize):  # fmt: skip
    images = [{"id": i + 1, "width": W, "height": H} for i in range(n_items)]
    categories = [{"id": c + 1, "name": f"c{c}"} for c in range(n_labels)]
    anns = [
        {
            "id": int(ground.ids[r]),
            "image_id": int(ground.item[r]) + 1,
            "category_id": int(ground.label[r]) + 1,
            "bbox": ground.bbox[r].tolist(),
            "area": float(ground.area[r]),
            "iscrowd": int(ground.crowd[r]),
        }
        for r in range(len(ground))
    ]
    results = [
        {
            "image_id": int(preds.item[r]) + 1,
            "category_id": int(preds.label[r]) + 1,
            "score": float(preds.score[r]),
            "bbox": preds.bbox[r].tolist(),
        }
        for r in range(len(preds))
    ]
    gt = COCO()
    gt.dataset = {"images": images, "categories": categories, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.useCats = int(use_cats)
        ev.params.areaRng = [list(r) for r in area_ranges]
        ev.params.areaRngLbl = list(area_labels)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        if summarize:
            ev.summarize()
    return ev


def _check_records(results: ItemResults, ev: COCOeval, a_all: int) -> None:
    """Match records against evalImgs' dtMatches / dtIgnore / gtMatches for area "all"."""
    pred_row = {int(i): r for r, i in enumerate(results.pred_ids)}
    gt_row = {int(i): r for r, i in enumerate(results.gt_ids)}
    seen = np.zeros(len(results.pred_ids), dtype=bool)
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[a_all]:
            continue
        for d, dt_id in enumerate(e["dtIds"]):
            r = pred_row[dt_id]
            seen[r] = True
            for t in range(len(ev.params.iouThrs)):
                matched, ignored = e["dtMatches"][t, d], e["dtIgnore"][t, d]
                want = IGNORED if ignored else (TP if matched else FP)
                assert results.pred_status[r, t] == want, (dt_id, t)
                got = results.pred_match[r, t]
                assert (results.gt_ids[got] if got >= 0 else 0) == matched, (dt_id, t)
        for g, gt_id in enumerate(e["gtIds"]):
            for t in range(len(ev.params.iouThrs)):
                got = results.gt_match[gt_row[gt_id], t]
                assert (results.pred_ids[got] if got >= 0 else 0) == e["gtMatches"][t, g]
    assert (~seen).sum() > 0  # maxDets cut some
    assert (results.pred_status[~seen] == IGNORED).all()


def _check_arrays(metrics, ev: COCOeval) -> None:
    for name, ours in (("precision", metrics.precision), ("recall", metrics.recall)):
        theirs = ev.eval[name]
        assert ours.shape == theirs.shape, name
        np.testing.assert_array_equal(ours == -1, theirs == -1, err_msg=name)
        np.testing.assert_allclose(ours, theirs, atol=1e-12, rtol=0, err_msg=name)
    np.testing.assert_allclose(metrics.scores, ev.eval["scores"], atol=1e-12, rtol=0)


CUSTOM_AREAS = [
    # three ranges of their own, "all" in the middle: summarize finds no small/medium/large
    (((0.0, 20.0**2), (0.0, 1e5**2), (20.0**2, 1e5**2)), ("tiny", "all", "rest")),
    # five ranges, COCO's labels on other bounds, overlapping ranges
    (
        ((0.0, 1e5**2), (0.0, 15.0**2), (10.0**2, 60.0**2), (60.0**2, 1e5**2), (0.0, 40.0**2)),
        ("all", "small", "medium", "large", "upto40"),
    ),
]


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize(("areas", "labels"), CUSTOM_AREAS)
def test_custom_area_ranges_equal_cocoeval(areas, labels, agnostic) -> None:
    ground, preds, n_items, n_labels = make_set(4, "bbox")
    opts = Options(n_labels=n_labels, class_agnostic=agnostic, area_ranges=areas,
                   area_labels=labels)  # fmt: skip
    results = evaluate_items(ground, preds, opts, n_items)
    metrics = accumulate(results, opts)
    ev = coco_eval(ground, preds, n_items, n_labels, not agnostic, areas, labels, (1, 10, 100),
                   summarize=True)  # fmt: skip
    _check_arrays(metrics, ev)
    # summarize's own lookups by label (-1 where a label is missing), same floats
    np.testing.assert_allclose(metrics.stats, ev.stats, atol=1e-12, rtol=0)
    if "small" not in labels:
        assert metrics.stats[3] == -1.0
    assert metrics.precision.shape[3] == len(areas)
    _check_records(results, ev, labels.index("all"))


@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("max_dets", [(1, 5, 20), (3, 30, 60), (2, 7)])
def test_max_detections_without_100_equal_cocoeval(max_dets, agnostic) -> None:
    ground, preds, n_items, n_labels = make_set(5, "bbox")
    opts = Options(n_labels=n_labels, class_agnostic=agnostic, max_detections=max_dets)
    results = evaluate_items(ground, preds, opts, n_items)
    metrics = accumulate(results, opts)
    three = len(max_dets) == 3  # summarize reads maxDets[2]
    ev = coco_eval(ground, preds, n_items, n_labels, not agnostic, opts.area_ranges,
                   opts.area_labels, max_dets, summarize=three)  # fmt: skip
    _check_arrays(metrics, ev)
    assert metrics.precision.shape[4] == len(max_dets)
    if three:
        # stats[0] asks for maxDets 100, which is not there: -1 in both
        np.testing.assert_allclose(metrics.stats, ev.stats, atol=1e-12, rtol=0)
        assert metrics.stats[0] == -1.0
    _check_records(results, ev, 0)


def test_max_detections_cut_changes_results() -> None:
    """A sanity check that the options reach the matching: a smaller maxDets[-1] cuts more."""
    ground, preds, n_items, n_labels = make_set(5, "bbox")
    big = evaluate_items(ground, preds, Options(n_labels=n_labels, class_agnostic=False), n_items)
    small_opts = Options(n_labels=n_labels, class_agnostic=False, max_detections=(1, 5, 20))
    small = evaluate_items(ground, preds, small_opts, n_items)
    assert (small.pred_status == IGNORED).sum() > (big.pred_status == IGNORED).sum()
    assert len(small.entry_pred) < len(big.entry_pred)


# segm with allowed pairs, by hand (40 x 40 images, filled rectangles rows r0:r1, cols c0:c1)
CAR, TRUCK, PERSON = 0, 1, 2
SIDE = 40


def _rect(r0: int, r1: int, c0: int, c1: int) -> dict[str, Any]:
    m = np.zeros((SIDE, SIDE), dtype=np.uint8, order="F")
    m[r0:r1, c0:c1] = 1
    return mask_utils.encode(m)


# Ground truths:                item  label   rows   cols   px
#   A = 1                         0   car     0:10   0:10   100
#   B = 2                         0   truck   0:10   20:30  100
#   C = 3                         1   person  0:20   0:20   400
#   D = 4 (crowd)                 2   car     0:20   0:20   400
# Predictions:                  item  label  score  rows  cols     IoU
#   p0 = 10                       0   truck   0.9   0:10  0:10     1 with A: (car, truck) ok
#   p1 = 11                       0   car     0.8   0:10  21:31    90/110 with B: not allowed
#   p2 = 12                       1   person  0.6   0:10  0:20     200/400 with C
#   p3 = 13                       1   car     0.4   0:20  0:20     1 with C: not allowed
#   p4 = 14                       2   car     0.7   0:10  0:10     crowd D: 100/100
#   p5 = 15                       2   truck   0.5   5:15  0:10     crowd D: 100/100, allowed
SEGM_GT = [(0, CAR, (0, 10, 0, 10), False), (0, TRUCK, (0, 10, 20, 30), False),
           (1, PERSON, (0, 20, 0, 20), False), (2, CAR, (0, 20, 0, 20), True)]  # fmt: skip
SEGM_PRED = [(0, TRUCK, 0.9, (0, 10, 0, 10)), (0, CAR, 0.8, (0, 10, 21, 31)),
             (1, PERSON, 0.6, (0, 10, 0, 20)), (1, CAR, 0.4, (0, 20, 0, 20)),
             (2, CAR, 0.7, (0, 10, 0, 10)), (2, TRUCK, 0.5, (5, 15, 0, 10))]  # fmt: skip


def _segm_fixture(with_masks: bool) -> tuple[GroundTruths, Predictions]:
    def box(r: tuple[int, int, int, int]) -> list[float]:
        return [r[2], r[0], r[3] - r[2], r[1] - r[0]]

    def area(r: tuple[int, int, int, int]) -> float:
        return float((r[1] - r[0]) * (r[3] - r[2]))

    ground = GroundTruths(
        item=[g[0] for g in SEGM_GT],
        label=[g[1] for g in SEGM_GT],
        area=[area(g[2]) for g in SEGM_GT],
        crowd=[g[3] for g in SEGM_GT],
        ids=[1, 2, 3, 4],
        bbox=[box(g[2]) for g in SEGM_GT],
        masks=[_rect(*g[2]) for g in SEGM_GT] if with_masks else None,
    )
    preds = Predictions(
        item=[p[0] for p in SEGM_PRED],
        label=[p[1] for p in SEGM_PRED],
        area=[area(p[3]) for p in SEGM_PRED],
        score=[p[2] for p in SEGM_PRED],
        ids=[10, 11, 12, 13, 14, 15],
        bbox=[box(p[3]) for p in SEGM_PRED],
        masks=[_rect(*p[3]) for p in SEGM_PRED] if with_masks else None,
    )
    return ground, preds


def test_segm_with_allowed_pairs_by_hand() -> None:
    pairs = ((CAR, TRUCK),)
    opts = Options(n_labels=3, iou_type="segm", allowed_label_matches=pairs)
    ground, preds = _segm_fixture(with_masks=True)
    results = evaluate_items(ground, preds, opts, 3)
    gt_id = {r: int(i) for r, i in enumerate(results.gt_ids)}
    row = {int(i): r for r, i in enumerate(results.pred_ids)}

    def record(pid: int, t: int) -> tuple[int | None, float, int]:
        r = row[pid]
        g = int(results.pred_match[r, t])
        matched = gt_id[g] if g >= 0 else None
        return matched, float(results.pred_iou[r, t]), int(results.pred_status[r, t])

    expected_at_half = {
        10: (1, 1.0, TP),  # the truck takes the car: (car, truck) is allowed
        11: (None, 0.0, FP),  # (truck, car) is not
        12: (3, 0.5, TP),
        13: (None, 0.0, FP),  # a car on a person
        14: (4, 1.0, IGNORED),  # a crowd region: intersection over the prediction's area
        15: (4, 1.0, IGNORED),  # matched again (crowd), through the allowed pair
    }
    for pid, want in expected_at_half.items():
        got = record(pid, 0)
        assert got[0] == want[0], pid
        assert got[2] == want[2], pid
        assert got[1] == pytest.approx(want[1], abs=1e-15), pid
    assert record(12, 1) == (None, 0.0, FP)  # 0.5 is below 0.55
    assert record(10, 9) == (1, 1.0, TP)
    gt_side = {gt_id[g]: int(results.gt_match[g, 0]) for g in range(4)}
    assert results.pred_ids[gt_side[1]] == 10
    assert gt_side[2] == -1
    assert results.pred_ids[gt_side[3]] == 12
    assert results.pred_ids[gt_side[4]] == 15  # the last prediction the crowd region took

    metrics = accumulate(results, opts)
    # car's pool: A and (crowd) D; p0 (truck, allowed) TP at every threshold, p1 FP after it
    # (0.8 < 0.9), p4 on D ignored: precision 1 up to recall 1 -> AP 1
    assert metrics.per_label_ap[CAR] == pytest.approx(1.0, abs=1e-12)
    # person: p2 TP at 0.5 only -> 101 points of precision 1 at one threshold in ten
    assert metrics.per_label_ap[PERSON] == pytest.approx(0.1, abs=1e-12)
    # truck: B unmatched, p0 in truck's pool has IoU 0 with B
    assert metrics.per_label_ap[TRUCK] == 0.0

    # filled rectangles: the same as boxes, whose IoU is the same ratio
    box_opts = Options(n_labels=3, iou_type="bbox", allowed_label_matches=pairs)
    box_ground, box_preds = _segm_fixture(with_masks=False)
    boxes = evaluate_items(box_ground, box_preds, box_opts, 3)
    np.testing.assert_array_equal(results.pred_status, boxes.pred_status)
    np.testing.assert_array_equal(results.pred_match, boxes.pred_match)
    np.testing.assert_array_equal(results.gt_match, boxes.gt_match)
    np.testing.assert_allclose(results.pred_iou, boxes.pred_iou, atol=1e-15)
    np.testing.assert_array_equal(results.entry_flags, boxes.entry_flags)
    np.testing.assert_allclose(metrics.stats, accumulate(boxes, box_opts).stats, atol=1e-15)


# the stored per-item layout


def _results(mode: str) -> tuple[ItemResults, Options]:
    ground, preds, n_items, n_labels = make_set(6, "bbox", n_items=40)
    if mode == "pairs":
        opts = Options(n_labels=n_labels, allowed_label_matches=((0, 1), (2, 1)))
    else:
        opts = Options(n_labels=n_labels, class_agnostic=mode == "agnostic")
    return evaluate_items(ground, preds, opts, n_items), opts


_POINTS_TO = {"gt_match": "pred", "pred_match": "gt", "pred_confusion": "gt",
              "entry_pred": "pred", "aware_pred": "pred"}  # fmt: skip


def _item_slice(results: ItemResults, name: str, item: int) -> np.ndarray:
    """An item's rows of a column, references made relative to the item (as stored)."""
    space = name.split("_")[0]
    starts = getattr(results, f"{space}_start")
    part = getattr(results, name)[starts[item] : starts[item + 1]]
    target = _POINTS_TO.get(name)
    if target is not None:
        base = getattr(results, f"{target}_start")[item]
        part = np.where(part >= 0, part - base, part)
    return part


@pytest.mark.parametrize("mode", ["agnostic", "aware", "pairs"])
def test_item_arrays_agree_with_item_results(mode: str) -> None:
    bson = pytest.importorskip("bson")
    results, opts = _results(mode)
    docs = results.to_item_dicts()
    stored = [bson.decode(bson.encode({"state": d}))["state"] for d in docs]  # through BSON
    names = [c[0] for c in COLUMNS]
    for item, doc in enumerate(stored):
        arrays = item_arrays(doc, names)
        assert list(arrays) == names
        for name in names:
            want = _item_slice(results, name, item)
            got = arrays[name]
            assert got.dtype == getattr(results, name).dtype, name
            assert got.shape == want.shape, (name, item)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {item}")
    # a few columns, in the order asked for
    some = item_arrays(stored[5], ["pred_status", "gt_label"])
    assert list(some) == ["pred_status", "gt_label"]
    assert ItemResults.from_item_dicts(stored).equals(results)
    assert accumulate(ItemResults.from_item_dicts(stored), opts).stats.tolist() == (
        accumulate(results, opts).stats.tolist()
    )
    with pytest.raises(KeyError):
        item_arrays(stored[0], ["pred_status", "no_such_column"])
    with pytest.raises(ValueError, match="row counts"):
        item_arrays({**stored[0], "data": stored[0]["data"][:-1]}, ["gt_label"])


def test_states_of_another_version_are_refused() -> None:
    results, _ = _results("aware")
    old = {**results.to_item_dicts()[0], "version": 2}
    with pytest.raises(ValueError, match="version 2 is not supported"):
        ItemResults.from_item_dicts([old])
    with pytest.raises(ValueError, match="version 2 is not supported"):
        item_arrays(old, ["pred_status"])


def test_states_read_without_their_records_accumulate_alike() -> None:
    results, opts = _results("agnostic")
    docs = results.to_item_dicts()
    bare = [{k: v for k, v in doc.items() if k != "records"} for doc in docs]
    read = ItemResults.from_item_dicts(bare)
    for name in RECORD_COLUMNS:
        assert getattr(read, name) is None, name
    assert read.entry_flags.tobytes() == results.entry_flags.tobytes()
    assert accumulate(read, opts).to_document() == accumulate(results, opts).to_document()
    assert not read.equals(results)
    with pytest.raises(ValueError, match="was not read"):
        read.to_item_dicts()
    with pytest.raises(ValueError, match="different parts"):
        ItemResults.from_item_dicts([docs[0], bare[1]])
    assert item_arrays(bare[3], ["pred_status"])["pred_status"].shape[1] == results.n_thresholds
    with pytest.raises(KeyError):
        item_arrays(bare[3], ["pred_iou"])


def test_item_dicts_of_selected_items_and_empty_items() -> None:
    results, _ = _results("agnostic")
    docs = results.to_item_dicts()
    assert results.select([3, 0, 3]).equals(
        ItemResults.from_item_dicts([docs[3], docs[0], docs[3]])
    )
    # items without ground truth (0..2) or predictions (3, 4) store zero rows
    assert docs[0]["rows"][0] == 0
    assert docs[3]["rows"][1] == 0
    assert item_arrays(docs[0], ["gt_match"])["gt_match"].shape == (0, results.n_thresholds)
    again = ItemResults.from_item_dicts(docs[:5])
    assert again.n_items == 5
    assert again.equals(results.select(range(5)))
