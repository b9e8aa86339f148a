"""Loom's evaluation semantics, checked by hand: class-agnostic vs class-aware vs allowed
label pairs on a three-item car/truck/person fixture, the extra metrics (P/R/F1 at a
confidence threshold, best-F1 threshold, confusion matrix with background), and the
incremental re-commit (per-item dicts, replaced items, accumulate) against a fresh run.

Pure unit tests: no database, no server fixtures.
"""

import numpy as np
import pytest

from resolvers.evaluation import (
    FP,
    IGNORED,
    TP,
    GroundTruths,
    ItemResults,
    Options,
    Predictions,
    accumulate,
    evaluate_items,
)

CAR, TRUCK, PERSON = 0, 1, 2

# Ground truths (ids 1..4):       item  label   box
#   A = 1                           0   car     [0, 0, 10, 10]
#   B = 2                           0   truck   [20, 0, 10, 10]
#   C = 3                           1   person  [0, 0, 20, 20]
#   D = 4                           2   car     [0, 0, 10, 10]   (item 2 has no predictions)
# Predictions (ids 10..14):       item  label   score  box            IoU
#   p0 = 10                         0   truck   0.9    [0, 0, 10, 10]  1 with A, 0 with B
#   p1 = 11                         0   car     0.8    [21, 0, 10, 10] 90/110 with B, 0 with A
#   p2 = 12                         0   person  0.7    [50, 50, 5, 5]  0 with all
#   p3 = 13                         1   person  0.6    [0, 0, 20, 10]  200/400 = 0.5 with C
#   p4 = 14                         1   car     0.4    [0, 0, 20, 20]  1 with C
A, B, C, D = 1, 2, 3, 4
P0, P1, P2, P3, P4 = 10, 11, 12, 13, 14


def fixture() -> tuple[GroundTruths, Predictions]:
    boxes = np.array([[0, 0, 10, 10], [20, 0, 10, 10], [0, 0, 20, 20], [0, 0, 10, 10]], float)
    ground = GroundTruths(
        item=[0, 0, 1, 2],
        label=[CAR, TRUCK, PERSON, CAR],
        area=boxes[:, 2] * boxes[:, 3],
        crowd=[False] * 4,
        ids=[A, B, C, D],
        bbox=boxes,
    )
    pboxes = np.array(
        [[0, 0, 10, 10], [21, 0, 10, 10], [50, 50, 5, 5], [0, 0, 20, 10], [0, 0, 20, 20]], float
    )
    preds = Predictions(
        item=[0, 0, 0, 1, 1],
        label=[TRUCK, CAR, PERSON, PERSON, CAR],
        area=pboxes[:, 2] * pboxes[:, 3],
        score=[0.9, 0.8, 0.7, 0.6, 0.4],
        ids=[P0, P1, P2, P3, P4],
        bbox=pboxes,
    )
    return ground, preds


def options(mode: str) -> Options:
    if mode == "pairs":
        return Options(n_labels=3, allowed_label_matches=((CAR, TRUCK),))
    return Options(n_labels=3, class_agnostic=mode == "agnostic")


def matches_at(results: ItemResults, t: int) -> dict[int, tuple[int | None, float, int]]:
    """pred id -> (matched gt id or None, IoU, status) at threshold index t."""
    out = {}
    for r, pid in enumerate(results.pred_ids):
        g = results.pred_match[r, t]
        out[int(pid)] = (
            int(results.gt_ids[g]) if g >= 0 else None,
            float(results.pred_iou[r, t]),
            int(results.pred_status[r, t]),
        )
    return out


EXPECTED_AT_HALF = {
    "agnostic": {
        P0: (A, 1.0, TP),
        P1: (B, 90 / 110, TP),
        P2: (None, 0.0, FP),
        P3: (C, 0.5, TP),
        P4: (None, 0.0, FP),  # C is taken by the higher-scored p3
    },
    "aware": {
        P0: (None, 0.0, FP),  # a truck: only B may take it, IoU 0
        P1: (None, 0.0, FP),  # a car: only A may take it, IoU 0
        P2: (None, 0.0, FP),
        P3: (C, 0.5, TP),
        P4: (None, 0.0, FP),  # no car on item 1
    },
    "pairs": {
        P0: (A, 1.0, TP),  # (car, truck) allowed: the truck prediction takes the car
        P1: (None, 0.0, FP),  # (truck, car) is not allowed
        P2: (None, 0.0, FP),
        P3: (C, 0.5, TP),
        P4: (None, 0.0, FP),
    },
}


@pytest.mark.parametrize("mode", ["agnostic", "aware", "pairs"])
def test_matches_by_hand(mode: str) -> None:
    ground, preds = fixture()
    results = evaluate_items(ground, preds, options(mode), 3)
    got = matches_at(results, 0)
    for pid, (gt, iou, status) in EXPECTED_AT_HALF[mode].items():
        assert got[pid][0] == gt, (mode, pid)
        assert got[pid][1] == pytest.approx(iou, abs=1e-7), (mode, pid)
        assert got[pid][2] == status, (mode, pid)
    gt_side = {
        int(results.gt_ids[g]): (
            int(results.pred_ids[results.gt_match[g, 0]]) if results.gt_match[g, 0] >= 0 else None
        )
        for g in range(len(results.gt_ids))
    }
    expected = {gt: None for gt in (A, B, C, D)}
    for pid, (gt, _, _) in EXPECTED_AT_HALF[mode].items():
        if gt is not None:
            expected[gt] = pid
    assert gt_side == expected
    # at IoU 0.55 p3 (0.5) no longer matches C, so p4 (IoU 1) may, where labels allow it
    at_55 = matches_at(results, 1)
    assert at_55[P3][0] is None
    assert at_55[P4][0] == (C if mode == "agnostic" else None)


def test_per_label_ap_by_hand() -> None:
    ground, preds = fixture()
    aware = accumulate(evaluate_items(ground, preds, options("aware"), 3), options("aware"))
    # person: p2 (FP) then p3 (TP at 0.5 only): precision 0.5 at all 101 recall points at
    # IoU 0.5, 0 at the nine higher thresholds; car and truck have only false positives.
    assert aware.per_label_ap[PERSON] == pytest.approx(0.05, abs=1e-12)
    assert aware.per_label_ap[CAR] == 0.0
    assert aware.per_label_ap[TRUCK] == 0.0
    pairs = accumulate(evaluate_items(ground, preds, options("pairs"), 3), options("pairs"))
    # car's pool: A, D and the predictions p0 (truck, TP), p1, p4: recall 1/2 at precision
    # 1 - eps, so 51 of the 101 recall points, at every threshold
    assert pairs.per_label_ap[CAR] == pytest.approx(51 / 101, abs=1e-12)
    # truck's pool holds p0 too (COCO copies it into each pool it may enter): IoU 0 with B
    assert pairs.per_label_ap[TRUCK] == 0.0
    # class-agnostic headline stats, but per-label AP from a class-aware matching
    agnostic_options = options("agnostic")
    agnostic = accumulate(evaluate_items(ground, preds, agnostic_options, 3), agnostic_options)
    np.testing.assert_array_equal(agnostic.per_label_ap, aware.per_label_ap)
    assert agnostic.precision.shape[2] == 1


def test_extra_metrics_by_hand() -> None:
    ground, preds = fixture()
    opts = options("agnostic")
    metrics = accumulate(evaluate_items(ground, preds, opts, 3), opts)
    x = metrics.extras
    # confidence >= 0.5 drops p4; per label, TPs/FPs are predictions of the label and
    # recall counts ground truths of the label
    np.testing.assert_array_equal(x.tp, [1, 1, 1])  # p1 (car), p0 (truck), p3 (person)
    np.testing.assert_array_equal(x.fp, [0, 0, 1])  # p2
    np.testing.assert_array_equal(x.fn, [1, 0, 0])  # D
    np.testing.assert_allclose(x.precision, [1.0, 1.0, 0.5])
    np.testing.assert_allclose(x.recall, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(x.f1, [2 / 3, 1.0, 2 / 3])
    assert (x.overall_precision, x.overall_recall, x.overall_f1) == pytest.approx((0.75,) * 3)
    # the sweep: >=.9: P 1, R 1/4; >=.8: 1, 1/2; >=.7: 2/3, 1/2; >=.6: 3/4, 3/4; >=.4: 3/5, 3/4
    curve = x.overall_curve
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.7, 0.6, 0.4])
    np.testing.assert_allclose(curve.precision, [1, 1, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(curve.recall, [1 / 4, 1 / 2, 1 / 2, 3 / 4, 3 / 4])
    np.testing.assert_allclose(curve.f1, [0.4, 2 / 3, 4 / 7, 0.75, 2 / 3])
    assert curve.best_threshold == 0.6
    assert curve.best_f1 == pytest.approx(0.75)
    person = x.curves[PERSON]
    np.testing.assert_allclose(person.f1, [0.0, 2 / 3])
    assert person.best_threshold == 0.6
    # rows: gt car, truck, person, background; columns: predicted car, truck, person, bg
    np.testing.assert_array_equal(
        x.confusion,
        [
            [0, 1, 0, 1],  # A taken by the truck p0; D missed
            [1, 0, 0, 0],  # B taken by the car p1
            [0, 0, 1, 0],  # C taken by p3
            [0, 0, 1, 0],  # p2 on background (p4 is below the confidence threshold)
        ],
    )
    np.testing.assert_array_equal(x.item_counts, [[2, 1, 0], [1, 0, 0], [0, 0, 1]])
    doc = metrics.to_document()
    assert doc["confusion"]["labels"] == [0, 1, 2, "background"]
    assert doc["per_label"][PERSON]["curve"]["best_threshold"] == 0.6
    assert set(doc["stats"]) >= {"AP", "AP50", "AR100"}


def test_confusion_is_class_agnostic_in_every_mode() -> None:
    ground, preds = fixture()
    matrices = [
        accumulate(evaluate_items(ground, preds, options(m), 3), options(m)).extras.confusion
        for m in ("agnostic", "aware", "pairs")
    ]
    np.testing.assert_array_equal(matrices[0], matrices[1])
    np.testing.assert_array_equal(matrices[0], matrices[2])


def _subset(ground: GroundTruths, preds: Predictions, items: np.ndarray):
    """The rows of `items`, renumbered 0..len(items)-1 in that order."""
    number = {int(item): i for i, item in enumerate(items)}

    def pick(cols, extra: str):
        keep = np.isin(cols.item, items)
        fields = {
            "item": np.array([number[int(i)] for i in cols.item[keep]], dtype=np.int64),
            "label": cols.label[keep],
            "area": cols.area[keep],
            "ids": cols.ids[keep],
            "bbox": cols.bbox[keep],
            extra: getattr(cols, extra)[keep],
        }
        return fields

    return GroundTruths(**pick(ground, "crowd")), Predictions(**pick(preds, "score"))


def _assert_same_metrics(a, b) -> None:
    np.testing.assert_array_equal(a.stats, b.stats)
    np.testing.assert_array_equal(a.precision, b.precision)
    np.testing.assert_array_equal(a.recall, b.recall)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.per_label_ap, b.per_label_ap)
    np.testing.assert_array_equal(a.extras.confusion, b.extras.confusion)
    np.testing.assert_array_equal(a.extras.item_counts, b.extras.item_counts)
    np.testing.assert_array_equal(a.extras.f1, b.extras.f1)
    assert a.to_document() == b.to_document()


@pytest.mark.parametrize("mode", ["agnostic", "aware", "pairs"])
def test_incremental_recommit_equals_fresh_evaluation(mode: str) -> None:
    from tests.test_evaluation_parity import make_set

    n_items = 300
    ground, preds, _, n_labels = make_set(3, "bbox", n_items=n_items)
    if mode == "pairs":
        opts = Options(n_labels=n_labels, allowed_label_matches=((0, 1), (2, 1), (3, 3)))
    else:
        opts = Options(n_labels=n_labels, class_agnostic=mode == "agnostic")
    full = evaluate_items(ground, preds, opts, n_items)
    docs = full.to_item_dicts()
    # the dicts alone rebuild the same results and metrics
    rebuilt = ItemResults.from_item_dicts(docs)
    assert rebuilt.equals(full)
    _assert_same_metrics(accumulate(rebuilt, opts), accumulate(full, opts))
    assert all(isinstance(d["data"], bytes) and len(d["rows"]) == 4 for d in docs)

    # change 1 % of the items: new scores and shifted boxes for their predictions
    rng = np.random.default_rng(11)
    changed = np.sort(rng.choice(n_items, size=n_items // 100, replace=False))
    changed = np.union1d(changed, [5])  # the item with > 100 predictions
    rows = np.isin(preds.item, changed)
    score = preds.score.copy()
    score[rows] = np.round(rng.random(rows.sum()), 1)
    bbox = preds.bbox.copy()
    bbox[rows, :2] += rng.normal(0, 2, (rows.sum(), 2))
    new_preds = Predictions(item=preds.item, label=preds.label, area=preds.area, score=score,
                            ids=preds.ids, bbox=bbox)  # fmt: skip
    fresh = evaluate_items(ground, new_preds, opts, n_items)

    sub_ground, sub_preds = _subset(ground, new_preds, changed)
    redone = evaluate_items(sub_ground, sub_preds, opts, len(changed)).to_item_dicts()
    for i, item in enumerate(changed):
        docs[item] = redone[i]
    recommitted = ItemResults.from_item_dicts(docs)
    assert recommitted.equals(fresh)
    _assert_same_metrics(accumulate(recommitted, opts), accumulate(fresh, opts))
    # and the change did change something
    assert not np.array_equal(accumulate(full, opts).stats, accumulate(fresh, opts).stats)

    # concat of parts is the whole
    parts = [full.select(range(0, 100)), full.select(range(100, n_items))]
    assert ItemResults.concat(parts).equals(full)


def test_item_dicts_refuse_other_options() -> None:
    ground, preds = fixture()
    a = evaluate_items(ground, preds, options("aware"), 3).to_item_dicts()
    b = evaluate_items(ground, preds, options("agnostic"), 3).to_item_dicts()
    with pytest.raises(ValueError, match="different options"):
        ItemResults.from_item_dicts([a[0], b[1]])
    with pytest.raises(ValueError, match="different options"):
        accumulate(ItemResults.from_item_dicts(a), options("agnostic"))


def test_crowd_and_cut_predictions_are_ignored() -> None:
    boxes = np.array([[0, 0, 50, 50]], float)
    ground = GroundTruths(item=[0], label=[0], area=[2500.0], crowd=[True], ids=[1], bbox=boxes)
    n = 102
    pboxes = np.tile([[5, 5, 10, 10]], (n, 1)).astype(float)
    preds = Predictions(item=[0] * n, label=[0] * n, area=[100.0] * n,
                        score=np.linspace(1, 0.01, n), ids=np.arange(n), bbox=pboxes)  # fmt: skip
    results = evaluate_items(ground, preds, Options(n_labels=1), 1)
    # inside the crowd region: matched (IoU over the prediction's area = 1), ignored
    assert (results.pred_status[:100] == IGNORED).all()
    assert (results.pred_match[:100] == 0).all()
    np.testing.assert_array_equal(results.pred_iou[:100], 1.0)
    # beyond maxDets: ignored, unmatched
    assert (results.pred_status[100:] == IGNORED).all()
    assert (results.pred_match[100:] == -1).all()
    assert (results.pred_confusion[100:] == -2).all()
