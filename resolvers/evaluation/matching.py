"""COCO's greedy matching, for every pool of every item at once.

A *pool* is what COCOeval's evaluateImg sees for one (image, category): in class-aware mode
the ground truths and predictions of one item and label; class-agnostic, all of one item;
with allowed label pairs, the ground truths of label c and every prediction whose label is c
or may match c. One compiled kernel walks all pools in a single call (a Python loop per item
or per detection would be 100 x slower), taking exactly pycocotools' branches: predictions by
descending score (mergesort ties), ground truths non-ignored first (stable), `iou >= thr`
with ties to the later ground truth, the `break` that prefers a non-ignored match, crowd
regions matchable repeatedly, unmatched predictions outside the area range ignored.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from resolvers.evaluation.columns import GroundTruths, Options, Predictions
from resolvers.evaluation.item_results import FP, IGNORED, TP, ItemResults
from resolvers.evaluation.overlap import box_iou_pair, mask_iou

FLAG_MATCHED = np.uint8(1)
FLAG_IGNORED = np.uint8(2)


@numba.njit(cache=True)
def sort_segments_by_score(order: np.ndarray, starts: np.ndarray, score: np.ndarray) -> None:
    """Within each segment `order[starts[s]:starts[s+1]]`, sort stably by descending score,
    in place: pycocotools' `argsort(-score, kind="mergesort")` on each pool's list."""
    for s in range(len(starts) - 1):
        lo, hi = starts[s], starts[s + 1]
        if hi - lo < 2:
            continue
        if hi - lo <= 24:
            for i in range(lo + 1, hi):
                cur = order[i]
                key = score[cur]
                j = i - 1
                while j >= lo and score[order[j]] < key:
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = cur
        else:
            segment = order[lo:hi].copy()
            keys = np.empty(hi - lo)
            for i in range(hi - lo):
                keys[i] = -score[segment[i]]
            ranked = np.argsort(keys, kind="mergesort")
            for i in range(hi - lo):
                order[lo + i] = segment[ranked[i]]


@numba.njit(cache=True)
def rank_in_segments(starts: np.ndarray, n: int) -> np.ndarray:
    """Each position's rank within its segment."""
    rank = np.empty(n, dtype=np.int64)
    for s in range(len(starts) - 1):
        for i in range(starts[s], starts[s + 1]):
            rank[i] = i - starts[s]
    return rank


@numba.njit(cache=True)
def _sort_stably(order: np.ndarray, lo: int, hi: int, primary: np.ndarray, score: np.ndarray):
    """Sort `order[lo:hi]` stably by ascending `primary`, then descending score: insertion
    sort for the usual few rows, else two stable sorts."""
    if hi - lo <= 64:
        for i in range(lo + 1, hi):
            cur = order[i]
            key, s = primary[cur], score[cur]
            j = i - 1
            while j >= lo and (
                primary[order[j]] > key or (primary[order[j]] == key and score[order[j]] < s)
            ):
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = cur
        return
    segment = order[lo:hi].copy()
    keys = np.empty(hi - lo)
    for i in range(hi - lo):
        keys[i] = -score[segment[i]]
    segment = segment[np.argsort(keys, kind="mergesort")]
    for i in range(hi - lo):
        keys[i] = primary[segment[i]]
    segment = segment[np.argsort(keys, kind="mergesort")]
    for i in range(hi - lo):
        order[lo + i] = segment[i]


@numba.njit(cache=True, parallel=True)
def item_orders(
    start: np.ndarray, label: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two pool orders of the predictions of item-major rows, sorted once for every
    pass: `by_label` (item, label, descending score, row: COCO's per-category lists) with
    each entry's rank in its (item, label) pool and each row's (`row_label_rank`), and
    `by_item` (item, descending score, label, row: useCats=0's concatenation of the
    category lists, mergesorted by score) with each entry's rank in its item."""
    n = len(label)
    by_label = np.empty(n, dtype=np.int64)
    by_item = np.empty(n, dtype=np.int64)
    label_rank = np.empty(n, dtype=np.int64)
    item_rank = np.empty(n, dtype=np.int64)
    row_label_rank = np.empty(n, dtype=np.int64)
    no_key = np.zeros(n, dtype=np.int64)
    for item in numba.prange(len(start) - 1):
        lo, hi = start[item], start[item + 1]
        for i in range(lo, hi):
            by_label[i] = i
        _sort_stably(by_label, lo, hi, label, score)
        for i in range(lo, hi):
            by_item[i] = by_label[i]
            item_rank[i] = i - lo
            if i > lo and label[by_label[i]] == label[by_label[i - 1]]:
                label_rank[i] = label_rank[i - 1] + 1
            else:
                label_rank[i] = 0
            row_label_rank[by_label[i]] = label_rank[i]
        _sort_stably(by_item, lo, hi, no_key, score)
    return by_label, label_rank, row_label_rank, by_item, item_rank


@numba.njit(cache=True, inline="always")
def _pool_iou(
    d: int, g: int, crowd: bool, dt_box: np.ndarray, gt_box: np.ndarray, segm: bool,
    seg_iou: np.ndarray, seg_offset: np.ndarray, dt_item: np.ndarray,
    dt_item_start: np.ndarray, gt_item_start: np.ndarray,
) -> float:  # fmt: skip
    if segm:
        item = dt_item[d]
        n_gt = gt_item_start[item + 1] - gt_item_start[item]
        local = (d - dt_item_start[item]) * n_gt + (g - gt_item_start[item])
        return seg_iou[seg_offset[item] + local]
    return box_iou_pair(
        dt_box[d, 0], dt_box[d, 1], dt_box[d, 2], dt_box[d, 3],
        gt_box[g, 0], gt_box[g, 1], gt_box[g, 2], gt_box[g, 3], crowd,
    )  # fmt: skip


@numba.njit(cache=True)
def _match_pool(
    first, end, pool_entry_start, pool_gt_start, entry_dt, pool_gts, dt_box, dt_area,
    dt_label, gt_box, gt_area, gt_label, gt_crowd, compat, use_compat, area_lo, area_hi,
    thresholds, record_area, segm, seg_iou, seg_offset, dt_item, dt_item_start,
    gt_item_start, lowest, iou, candidates, n_candidates, ignored, gt_order, taken, chosen,
    flags, record_status, record_gt, record_iou, gt_record,
):  # fmt: skip
    """Pools first..end-1 of `match_pools` (scratch arrays passed in; one call per chunk:
    a call per pool would pass and reference-count some thirty arrays).

    Two area ranges whose ground-truth ignore flags agree (or are uniform, all ignored or
    none: then neither the partition nor the `break` can act) give the same matches, so each
    distinct pattern is matched once and only the flags are redone per area range."""
    for p in range(first, end):
        n_areas = len(area_lo)
        n_thr = len(thresholds)
        e0, e1 = pool_entry_start[p], pool_entry_start[p + 1]
        g0, g1 = pool_gt_start[p], pool_gt_start[p + 1]
        n_d, n_g = e1 - e0, g1 - g0
        if n_d == 0:
            continue
        any_candidate = False
        for i in range(n_d):
            d = entry_dt[e0 + i]
            for j in range(n_g):
                g = pool_gts[g0 + j]
                if use_compat and not compat[gt_label[g], dt_label[d]]:
                    iou[i * n_g + j] = -1.0  # not a candidate at all
                    continue
                v = _pool_iou(
                    d, g, gt_crowd[g], dt_box, gt_box, segm, seg_iou, seg_offset,
                    dt_item, dt_item_start, gt_item_start,
                )  # fmt: skip
                iou[i * n_g + j] = v
                if v >= lowest:
                    any_candidate = True
        for a in range(n_areas):
            lo, hi = area_lo[a], area_hi[a]
            n_ignored = 0
            for j in range(n_g):
                g = pool_gts[g0 + j]
                ignored[a, j] = gt_crowd[g] or gt_area[g] < lo or gt_area[g] > hi
                n_ignored += ignored[a, j]
            uniform = n_ignored == 0 or n_ignored == n_g
            source = -1
            if not any_candidate:
                source = a
            else:
                for b in range(a):
                    same = True
                    if not uniform:
                        for j in range(n_g):
                            if ignored[a, j] != ignored[b, j]:
                                same = False
                                break
                    else:
                        first = ignored[b, 0] if n_g else False
                        for j in range(n_g):
                            if ignored[b, j] != first:
                                same = False
                                break
                    if same:
                        source = b
                        break
            if source == -1:
                source = a
                k = 0
                for j in range(n_g):
                    if not ignored[a, j]:
                        gt_order[k] = j
                        k += 1
                for j in range(n_g):
                    if ignored[a, j]:
                        gt_order[k] = j
                        k += 1
                # A gt whose IoU is below every threshold can only be skipped, or end the scan
                # where the next one would end it too: leave it out of the candidates.
                for i in range(n_d):
                    c = 0
                    for jj in range(n_g):
                        j = gt_order[jj]
                        if iou[i * n_g + j] >= lowest:
                            candidates[i * n_g + c] = j
                            c += 1
                    n_candidates[i] = c
                for t in range(n_thr):
                    threshold = min(thresholds[t], 1.0 - 1e-10)
                    taken[:n_g] = -1
                    for i in range(n_d):
                        best = threshold
                        m = -1
                        for c in range(n_candidates[i]):
                            j = candidates[i * n_g + c]
                            if taken[j] >= 0 and not gt_crowd[pool_gts[g0 + j]]:
                                continue
                            if m > -1 and not ignored[a, m] and ignored[a, j]:
                                break
                            if iou[i * n_g + j] < best:
                                continue
                            best = iou[i * n_g + j]
                            m = j
                        if m >= 0:
                            taken[m] = i
                        chosen[a, i * n_thr + t] = m
            elif not any_candidate:
                for i in range(n_d * n_thr):
                    chosen[a, i] = -1
            for i in range(n_d):
                e = e0 + i
                out_of_range = dt_area[entry_dt[e]] < lo or dt_area[entry_dt[e]] > hi
                for t in range(n_thr):
                    m = chosen[source, i * n_thr + t]
                    if m >= 0:
                        flag = FLAG_MATCHED
                        if ignored[a, m]:
                            flag |= FLAG_IGNORED
                        if a == record_area:
                            record_gt[entry_dt[e], t] = pool_gts[g0 + m]
                            record_iou[entry_dt[e], t] = iou[i * n_g + m]
                            gt_record[pool_gts[g0 + m], t] = entry_dt[e]
                    else:
                        flag = FLAG_IGNORED if out_of_range else np.uint8(0)
                    flags[e, a, t] = flag
                    if a == record_area:
                        record_status[entry_dt[e], t] = (
                            IGNORED if flag & FLAG_IGNORED else (TP if flag & FLAG_MATCHED else FP)
                        )


@numba.njit(cache=True, parallel=True)
def match_pools(
    pool_entry_start: np.ndarray,
    pool_gt_start: np.ndarray,
    entry_dt: np.ndarray,
    pool_gts: np.ndarray,
    dt_box: np.ndarray,
    dt_area: np.ndarray,
    dt_label: np.ndarray,
    gt_box: np.ndarray,
    gt_area: np.ndarray,
    gt_label: np.ndarray,
    gt_crowd: np.ndarray,
    compat: np.ndarray,
    use_compat: bool,
    area_lo: np.ndarray,
    area_hi: np.ndarray,
    thresholds: np.ndarray,
    record_area: int,
    segm: bool,
    seg_iou: np.ndarray,
    seg_offset: np.ndarray,
    dt_item: np.ndarray,
    dt_item_start: np.ndarray,
    gt_item_start: np.ndarray,
    flags: np.ndarray,
    record_status: np.ndarray,
    record_gt: np.ndarray,
    record_iou: np.ndarray,
    gt_record: np.ndarray,
) -> None:
    """Match every pool, for every area range and IoU threshold.

    Entries are predictions (rows of the dt arrays, `entry_dt`) already sorted within each
    pool and cut to maxDets[-1]; `pool_gts` lists each pool's ground-truth rows in COCO's
    order before the ignore partition. Fills `flags[entry, area, thr]` (MATCHED | IGNORED
    bits, what accumulate needs) and, for `record_area` (-1: none), the match records, by
    prediction row (`record_status`, the matched gt row `record_gt`, its IoU) and by gt row
    (`gt_record`, the matching prediction row), which needs one entry per prediction. Rows
    without an entry keep what they hold (the caller presets them). The caller allocates
    them: numpy does it several times faster than compiled code.
    """
    lowest = 1.0 - 1e-10
    for t in range(len(thresholds)):
        lowest = min(lowest, thresholds[t])
    lowest = min(lowest, 1.0 - 1e-10)
    n_pools = len(pool_entry_start) - 1
    most_d = 1
    most_g = 1
    for p in range(n_pools):
        most_d = max(most_d, pool_entry_start[p + 1] - pool_entry_start[p])
        most_g = max(most_g, pool_gt_start[p + 1] - pool_gt_start[p])
    # Scratch space per chunk of pools, not per pool: allocation would dominate tiny pools.
    n_chunks = min(n_pools, 64)
    for chunk in numba.prange(n_chunks):
        _match_range(
            chunk * n_pools // n_chunks, (chunk + 1) * n_pools // n_chunks, most_d, most_g,
            pool_entry_start, pool_gt_start, entry_dt, pool_gts, dt_box, dt_area,
            dt_label, gt_box, gt_area, gt_label, gt_crowd, compat, use_compat, area_lo,
            area_hi, thresholds, record_area, segm, seg_iou, seg_offset, dt_item,
            dt_item_start, gt_item_start, lowest, flags, record_status, record_gt, record_iou,
            gt_record,
        )  # fmt: skip


@numba.njit(cache=True)
def _match_range(
    first, end, most_d, most_g, pool_entry_start, pool_gt_start, entry_dt, pool_gts, dt_box,
    dt_area, dt_label, gt_box, gt_area, gt_label, gt_crowd, compat, use_compat, area_lo,
    area_hi, thresholds, record_area, segm, seg_iou, seg_offset, dt_item, dt_item_start,
    gt_item_start, lowest, flags, record_status, record_gt, record_iou, gt_record,
):  # fmt: skip
    """Pools first..end-1 of `match_pools`, with their scratch space."""
    iou = np.empty(most_d * most_g)
    candidates = np.empty(most_d * most_g, dtype=np.int64)
    n_candidates = np.empty(most_d, dtype=np.int64)
    ignored = np.empty((len(area_lo), most_g), dtype=np.bool_)
    gt_order = np.empty(most_g, dtype=np.int64)
    taken = np.empty(most_g, dtype=np.int64)
    chosen = np.empty((len(area_lo), most_d * len(thresholds)), dtype=np.int64)
    _match_pool(
        first, end, pool_entry_start, pool_gt_start, entry_dt, pool_gts, dt_box, dt_area,
        dt_label, gt_box, gt_area, gt_label, gt_crowd, compat, use_compat, area_lo, area_hi,
        thresholds, record_area, segm, seg_iou, seg_offset, dt_item, dt_item_start,
        gt_item_start, lowest, iou, candidates, n_candidates, ignored, gt_order, taken, chosen,
        flags, record_status, record_gt, record_iou, gt_record,
    )  # fmt: skip


@numba.njit(cache=True)
def pool_starts(gt_keys: np.ndarray, entry_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pools present in either sorted key array (a pool with only ground truths still
    counts its misses), as start offsets into each: one merge, no dense item x label grid."""
    n_g, n_e = len(gt_keys), len(entry_keys)
    gt_start = np.empty(n_g + n_e + 1, dtype=np.int64)
    entry_start = np.empty(n_g + n_e + 1, dtype=np.int64)
    i = j = p = 0
    while i < n_g or j < n_e:
        key = gt_keys[i] if j >= n_e or (i < n_g and gt_keys[i] <= entry_keys[j]) else entry_keys[j]
        gt_start[p] = i
        entry_start[p] = j
        while i < n_g and gt_keys[i] == key:
            i += 1
        while j < n_e and entry_keys[j] == key:
            j += 1
        p += 1
    gt_start[p] = n_g
    entry_start[p] = n_e
    return gt_start[: p + 1].copy(), entry_start[: p + 1].copy()


@numba.njit(cache=True)
def segment_starts(keys: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal values in `keys` (plus the end)."""
    n = len(keys)
    starts = np.empty(n + 1, dtype=np.int64)
    p = 0
    for i in range(n):
        if i == 0 or keys[i] != keys[i - 1]:
            starts[p] = i
            p += 1
    starts[p] = n
    return starts[: p + 1].copy()


def _label_pools(options: Options) -> tuple[np.ndarray, np.ndarray]:
    """CSR table: the pool labels a prediction of each label enters (its own label, plus c
    for every allowed pair (c, label))."""
    n = options.n_labels
    pools: list[list[int]] = [[label] for label in range(n)]
    for gt_label, pred_label in options.allowed_label_matches or ():
        if gt_label != pred_label and gt_label not in pools[pred_label]:
            pools[pred_label].append(gt_label)
    for p in pools:
        p.sort()
    starts = np.cumsum([0] + [len(p) for p in pools]).astype(np.int64)
    return starts, np.array([c for p in pools for c in p], dtype=np.int64)


def _compat(options: Options) -> np.ndarray:
    """`compat[gt_label, pred_label]`: may this pair match in the records' one greedy pass."""
    n = options.n_labels
    if options.mode == "agnostic":
        return np.ones((n, n), dtype=np.bool_)
    compat = np.eye(n, dtype=np.bool_)
    for gt_label, pred_label in options.allowed_label_matches or ():
        compat[gt_label, pred_label] = True
    return compat


@dataclass
class _Rows:
    """Ground truths and predictions in item-major order, as the kernels take them."""

    n_items: int
    gt_start: np.ndarray
    gt_item: np.ndarray
    gt_label: np.ndarray
    gt_crowd: np.ndarray
    gt_area: np.ndarray
    gt_box: np.ndarray
    gt_ids: np.ndarray
    pred_start: np.ndarray
    pred_item: np.ndarray
    pred_label: np.ndarray
    pred_score: np.ndarray
    pred_area: np.ndarray
    pred_box: np.ndarray
    pred_ids: np.ndarray
    seg_iou: np.ndarray
    seg_offset: np.ndarray
    n_labels: int

    @cached_property
    def orders(self) -> tuple[np.ndarray, ...]:
        """`item_orders` of the predictions, shared by every pass."""
        return item_orders(self.pred_start, self.pred_label, self.pred_score)

    @cached_property
    def gt_key(self) -> np.ndarray:
        return self.gt_item * self.n_labels + self.gt_label

    @cached_property
    def gt_pool(self) -> np.ndarray:
        """Ground truths by (item, label), stably: COCO's per-category lists, and for one
        pool per item their concatenation in category order."""
        return np.argsort(self.gt_key, kind="stable").astype(np.int64)


def _item_major(values: np.ndarray) -> np.ndarray | None:
    """The stable item-major order, or None when the rows already are in it (the commit
    usually reads them so)."""
    if len(values) < 2 or bool(np.all(values[1:] >= values[:-1])):
        return None
    return np.argsort(values, kind="stable")


def _rows(ground: GroundTruths, predictions: Predictions, options: Options, n_items: int) -> _Rows:
    for name, labels in (("ground truth", ground.label), ("prediction", predictions.label)):
        if len(labels) and (labels.min() < 0 or labels.max() >= options.n_labels):
            raise ValueError(f"{name} label outside 0..{options.n_labels - 1}")
    for name, items in (("ground truth", ground.item), ("prediction", predictions.item)):
        if len(items) and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"{name} item outside 0..{n_items - 1}")
    g_order, p_order = _item_major(ground.item), _item_major(predictions.item)

    def take(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
        return values if order is None else values[order]

    gt_item, pred_item = take(ground.item, g_order), take(predictions.item, p_order)
    gt_start = np.searchsorted(gt_item, np.arange(n_items + 1)).astype(np.int64)
    pred_start = np.searchsorted(pred_item, np.arange(n_items + 1)).astype(np.int64)
    seg_iou = np.zeros(0)
    seg_offset = np.zeros(n_items + 1, dtype=np.int64)
    gt_crowd = take(ground.crowd, g_order)
    if options.iou_type == "segm":
        if ground.masks is None or predictions.masks is None:
            raise ValueError('iou_type "segm" needs masks on ground truths and predictions')
        g_masks = ground.masks if g_order is None else [ground.masks[i] for i in g_order]
        p_masks = predictions.masks if p_order is None else [predictions.masks[i] for i in p_order]
        blocks = []
        for item in range(n_items):
            g0, g1 = gt_start[item], gt_start[item + 1]
            p0, p1 = pred_start[item], pred_start[item + 1]
            block = mask_iou(p_masks[p0:p1], g_masks[g0:g1], gt_crowd[g0:g1])
            blocks.append(block.reshape(-1))
            seg_offset[item + 1] = seg_offset[item] + block.size
        seg_iou = np.concatenate(blocks) if blocks else np.zeros(0)
    return _Rows(
        n_items=n_items,
        gt_start=gt_start,
        gt_item=gt_item,
        gt_label=take(ground.label, g_order),
        gt_crowd=gt_crowd,
        gt_area=take(ground.area, g_order),
        gt_box=take(ground.bbox, g_order),
        gt_ids=take(ground.ids, g_order),
        pred_start=pred_start,
        pred_item=pred_item,
        pred_label=take(predictions.label, p_order),
        pred_score=take(predictions.score, p_order),
        pred_area=take(predictions.area, p_order),
        pred_box=take(predictions.bbox, p_order),
        pred_ids=take(predictions.ids, p_order),
        seg_iou=seg_iou,
        seg_offset=seg_offset,
        n_labels=options.n_labels,
    )


@dataclass
class _Pass:
    """One matching pass: its entries (cut to maxDets[-1]) and what the kernel returned."""

    entry_pred: np.ndarray
    entry_label: np.ndarray
    entry_rank: np.ndarray
    cut: np.ndarray  # predictions no entry of which survived the cut (records: ignored)
    flags: np.ndarray
    # match records (when the pass made them): per prediction row and threshold, status,
    # matched gt row (-1) and IoU; per gt row, the matching prediction row (-1)
    status: np.ndarray
    match: np.ndarray
    iou: np.ndarray
    gt_match: np.ndarray


def _run_pass(
    rows: _Rows,
    options: Options,
    *,
    pools: str,
    area_ranges: Sequence[tuple[float, float]],
    thresholds: np.ndarray,
    record_area: int,
    compat: np.ndarray | None = None,
    cut_by_label: bool = False,
) -> _Pass:
    """Pools "item" (one per item; COCO useCats=0, or the records' single pass when
    `compat` restricts pairs), "label" (per item and label: useCats=1) or "pairs" (per item
    and label c, holding the predictions of c and those allowed to match c)."""
    n_labels = options.n_labels
    max_det = options.max_detections[-1]
    pred_key = rows.pred_item * n_labels + rows.pred_label
    if pools == "pairs":
        starts, table = _label_pools(options)
        counts = np.diff(starts)[rows.pred_label]
        entry_pred = np.repeat(np.arange(len(pred_key), dtype=np.int64), counts)
        first = np.repeat(starts[rows.pred_label], counts)
        within = np.arange(len(entry_pred)) - np.repeat(np.cumsum(counts) - counts, counts)
        entry_label = table[first + within]
        entry_key = rows.pred_item[entry_pred] * n_labels + entry_label
        order = np.argsort(entry_key, kind="stable")
        entry_pred, entry_label, entry_key = entry_pred[order], entry_label[order], entry_key[order]
        pool_key = entry_key
        segments = segment_starts(pool_key)
        sort_segments_by_score(entry_pred, segments, rows.pred_score)
        rank = rank_in_segments(segments, len(entry_pred))
    elif pools == "label":
        entry_pred, rank = rows.orders[0], rows.orders[1]
        pool_key = pred_key[entry_pred]
        entry_label = rows.pred_label[entry_pred]
    else:
        entry_pred, rank = rows.orders[3], rows.orders[4]
        pool_key = rows.pred_item[entry_pred]
        entry_label = rows.pred_label[entry_pred]
    # the records' pass cuts per (item, prediction label), as COCO would
    keep = (rows.orders[2][entry_pred] if cut_by_label else rank) < max_det
    cut = np.ones(len(pred_key), dtype=np.bool_)
    cut[entry_pred[keep]] = False
    entry_pred, entry_label, rank, pool_key = (
        entry_pred[keep],
        entry_label[keep],
        rank[keep],
        pool_key[keep],
    )
    gt_pool = rows.gt_pool
    gt_key = rows.gt_item[gt_pool] if pools == "item" else rows.gt_key[gt_pool]
    gt_starts, entry_starts = pool_starts(gt_key, pool_key)
    lo = np.array([r[0] for r in area_ranges], dtype=np.float64)
    hi = np.array([r[1] for r in area_ranges], dtype=np.float64)
    use_compat = compat is not None
    n_thr = len(thresholds)
    flags = np.empty((len(entry_pred), len(area_ranges), n_thr), dtype=np.uint8)
    n_rec_pred, n_rec_gt = (len(rows.pred_item), len(rows.gt_item)) if record_area >= 0 else (0, 0)
    record_status = np.full((n_rec_pred, n_thr), IGNORED, dtype=np.int8)
    record_gt = np.full((n_rec_pred, n_thr), -1, dtype=np.int32)
    record_iou = np.zeros((n_rec_pred, n_thr))
    gt_record = np.full((n_rec_gt, n_thr), -1, dtype=np.int32)
    match_pools(
        entry_starts,
        gt_starts,
        entry_pred,
        gt_pool,
        rows.pred_box,
        rows.pred_area,
        rows.pred_label,
        rows.gt_box,
        rows.gt_area,
        rows.gt_label,
        rows.gt_crowd,
        compat if use_compat else np.ones((1, 1), dtype=np.bool_),
        use_compat,
        lo,
        hi,
        np.ascontiguousarray(thresholds, dtype=np.float64),
        record_area,
        options.iou_type == "segm",
        rows.seg_iou,
        rows.seg_offset,
        rows.pred_item,
        rows.pred_start,
        rows.gt_start,
        flags,
        record_status,
        record_gt,
        record_iou,
        gt_record,
    )
    return _Pass(
        entry_pred, entry_label, rank, cut, flags, record_status, record_gt, record_iou, gt_record
    )


def _index_of_half(thresholds: np.ndarray) -> int:
    """The threshold Loom's extra metrics use: 0.5, or the nearest given one."""
    return int(np.argmin(np.abs(thresholds - 0.5)))


def evaluate_items(
    ground: GroundTruths,
    predictions: Predictions,
    options: Options,
    n_items: int | None = None,
) -> ItemResults:
    """Match the predictions of items 0..n_items-1 (default: up to the largest item index
    given) with their ground truths, for every area range and IoU threshold of `options`.

    Class-aware (`class_agnostic=False`) and class-agnostic runs equal COCOeval's evaluate()
    with useCats=1 / useCats=0. With `allowed_label_matches`, label c's COCO pool also holds
    the predictions allowed to match c (a prediction may sit in several pools), while the
    match records come from one greedy pass per item over all compatible pairs, cut at
    maxDets[-1] per (item, prediction label). Class-agnostic runs also keep a class-aware
    pass (area "all") for per-label AP.
    """
    if n_items is None:
        n_items = int(max(ground.item.max(initial=-1), predictions.item.max(initial=-1)) + 1)
    rows = _rows(ground, predictions, options, n_items)
    thresholds = options.thresholds()
    n_thr = len(thresholds)
    areas = options.area_ranges
    a_all = options.area_labels.index("all")
    mode = options.mode
    pools = {"agnostic": "item", "aware": "label", "pairs": "pairs"}[mode]
    main = _run_pass(
        rows,
        options,
        pools=pools,
        area_ranges=areas,
        thresholds=thresholds,
        record_area=-1 if mode == "pairs" else a_all,  # pairs: a prediction in several pools
    )
    if mode == "pairs":
        single = _run_pass(
            rows,
            options,
            pools="item",
            area_ranges=[areas[a_all]],
            thresholds=thresholds,
            record_area=0,
            compat=_compat(options),
            cut_by_label=True,
        )
        status, match, iou, gt_match = single.status, single.match, single.iou, single.gt_match
    else:
        status, match, iou, gt_match = main.status, main.match, main.iou, main.gt_match
    half = _index_of_half(thresholds)
    if mode == "agnostic":
        confusion = match[:, half].copy()
    else:
        run = _run_pass(
            rows,
            options,
            pools="item",
            area_ranges=[areas[a_all]],
            thresholds=thresholds[half : half + 1],
            record_area=0,
        )
        confusion = run.match[:, 0]
    confusion = np.where(main.cut if mode != "pairs" else single.cut, -2, confusion)
    if mode == "agnostic":
        aware = _run_pass(
            rows,
            options,
            pools="label",
            area_ranges=[areas[a_all]],
            thresholds=thresholds,
            record_area=-1,
        )
        aware_parts = (aware.entry_pred, aware.entry_label, aware.entry_rank, aware.flags[:, 0])
    else:
        empty = np.zeros(0, dtype=np.int64)
        aware_parts = (empty, empty, empty, np.zeros((0, n_thr), dtype=np.uint8))

    def starts_of(pred_rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(rows.pred_item[pred_rows], np.arange(n_items + 1)).astype(np.int64)

    return ItemResults(
        options_key=options.key(),
        n_items=n_items,
        n_thresholds=n_thr,
        n_areas=len(areas),
        gt_start=rows.gt_start,
        pred_start=rows.pred_start,
        entry_start=starts_of(main.entry_pred),
        aware_start=starts_of(aware_parts[0]),
        gt_ids=rows.gt_ids,
        gt_label=rows.gt_label.astype(np.int32),
        gt_crowd=rows.gt_crowd,
        gt_area=rows.gt_area,
        gt_match=gt_match,
        pred_ids=rows.pred_ids,
        pred_label=rows.pred_label.astype(np.int32),
        pred_score=rows.pred_score,
        pred_status=status,
        pred_match=match,
        pred_iou=iou.astype(np.float32),
        pred_confusion=confusion.astype(np.int32),
        entry_pred=main.entry_pred.astype(np.int32),
        entry_label=main.entry_label.astype(np.int32),
        entry_rank=main.entry_rank.astype(np.int32),
        entry_flags=main.flags,
        aware_pred=aware_parts[0].astype(np.int32),
        aware_label=aware_parts[1].astype(np.int32),
        aware_rank=aware_parts[2].astype(np.int32),
        aware_flags=aware_parts[3],
    )
