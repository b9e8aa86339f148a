"""The evaluation engine against pycocotools, faster-coco-eval and hotcoco, in memory.

A seeded set of 5,000 items x 20 ground truths x 40 predictions, 10 labels, boxes (2 %
crowd regions, three quarters of the predictions jittered around a ground truth of their
item, a tenth of those with a wrong label, the rest anywhere; scores rounded to 2 decimals,
so ties exist). Timed in one run, best of `--repeats` (pycocotools once):

- pycocotools COCOeval evaluate() + accumulate();
- faster-coco-eval COCOeval_faster evaluate() + accumulate();
- hotcoco: COCO.from_arrays + load_res on an (N, 7) array, then evaluate() + accumulate()
  (shown without and with building its inputs);
- Loom: evaluate_items + accumulate from the columns, class-aware (comparable with
  COCOeval's default useCats=1), and class-agnostic for information. Loom's time includes
  its match records, the class-agnostic pass behind the confusion matrix and the extra
  metrics, which the others do not compute.

For information: the per-item state of the class-aware run, `to_item_dicts` and
`from_item_dicts` on all items (a re-commit reads every item's dict back), and their BSON
encoding and decoding when pymongo's bson is installed.

Then Loom's whole commit of the same set from MongoDB (bench/model_run_commit.py: read,
match, metrics, write the match records) and a re-commit after 1 % of the items changed.

Goals, each on one line ending `(goal <op> <target>: MET | NOT MET)`: Loom class-aware
<= 1.5 x hotcoco's evaluate + accumulate, and its 12 stats within 1e-12 of pycocotools'; the
whole commit >= 6 x faster than pycocotools' evaluate + accumulate alone; the re-commit
<= 10 % of the whole commit's time.
The engine's kernels are compiled by numba (cached on disk); a warm-up run compiles or loads
them before timing. `make_bench_set(seed)` is reusable (the commit-from-MongoDB bench).
"""

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from resolvers.evaluation import (  # noqa: E402
    GroundTruths,
    ItemResults,
    Options,
    Predictions,
    accumulate,
    evaluate_items,
)

N_ITEMS, N_GT, N_PRED, N_LABELS = 5000, 20, 40, 10
WIDTH, HEIGHT = 640.0, 480.0
SPEED_GOAL = 1.5
STAT_GOAL = 1e-12


def make_bench_set(
    seed: int,
    n_items: int = N_ITEMS,
    n_gt: int = N_GT,
    n_pred: int = N_PRED,
    n_labels: int = N_LABELS,
) -> tuple[GroundTruths, Predictions, int, int]:
    """The bench's columns: (ground, predictions, n_items, n_labels); ids are 1-based rows."""
    rng = np.random.default_rng(seed)
    n_g = n_items * n_gt
    g_item = np.repeat(np.arange(n_items), n_gt)
    g_label = rng.integers(0, n_labels, n_g)
    w = np.exp(rng.uniform(np.log(4), np.log(300), n_g))
    h = w * np.exp(rng.normal(0, 0.3, n_g))
    x = rng.uniform(0, WIDTH - np.minimum(w, WIDTH - 1))
    y = rng.uniform(0, HEIGHT - np.minimum(h, HEIGHT - 1))
    g_box = np.round(np.stack([x, y, w, h], 1), 2)
    crowd = rng.random(n_g) < 0.02
    n_p = n_items * n_pred
    p_item = np.repeat(np.arange(n_items), n_pred)
    source = p_item * n_gt + rng.integers(0, n_gt, n_p)
    jittered = rng.random(n_p) < 0.75
    near = g_box[source].copy()
    near[:, :2] += rng.normal(0, 0.08, (n_p, 2)) * near[:, 2:]
    near[:, 2:] *= np.exp(rng.normal(0, 0.12, (n_p, 2)))
    rw = np.exp(rng.uniform(np.log(4), np.log(300), n_p))
    rh = rw * np.exp(rng.normal(0, 0.3, n_p))
    anywhere = np.stack(
        [rng.uniform(0, WIDTH - 4, n_p), rng.uniform(0, HEIGHT - 4, n_p), rw, rh], 1
    )
    p_box = np.round(np.where(jittered[:, None], near, anywhere), 2)
    wrong = rng.random(n_p) >= 0.9
    p_label = np.where(jittered & ~wrong, g_label[source], rng.integers(0, n_labels, n_p))
    score = np.round(np.where(jittered, rng.beta(5, 2, n_p), rng.beta(2, 5, n_p)), 2)
    ground = GroundTruths(
        item=g_item,
        label=g_label,
        area=g_box[:, 2] * g_box[:, 3],
        crowd=crowd,
        ids=np.arange(1, n_g + 1),
        bbox=g_box,
    )
    predictions = Predictions(
        item=p_item,
        label=p_label,
        area=p_box[:, 2] * p_box[:, 3],
        score=score,
        ids=np.arange(1, n_p + 1),
        bbox=p_box,
    )
    return ground, predictions, n_items, n_labels


def coco_dicts(ground: GroundTruths, predictions: Predictions, n_items: int, n_labels: int):
    """The same set as pycocotools' dataset dict and result list (1-based ids)."""
    images = [{"id": i + 1, "width": int(WIDTH), "height": int(HEIGHT)} for i in range(n_items)]
    categories = [{"id": c + 1, "name": f"label{c}"} for c in range(n_labels)]
    annotations = [
        {
            "id": int(i),
            "image_id": int(item) + 1,
            "category_id": int(label) + 1,
            "bbox": box,
            "area": float(area),
            "iscrowd": int(crowd),
        }
        for i, item, label, box, area, crowd in zip(
            ground.ids,
            ground.item,
            ground.label,
            ground.bbox.tolist(),
            ground.area,
            ground.crowd,
            strict=True,
        )
    ]
    results = [
        {"image_id": int(item) + 1, "category_id": int(label) + 1, "bbox": box, "score": float(s)}
        for item, label, box, s in zip(
            predictions.item,
            predictions.label,
            predictions.bbox.tolist(),
            predictions.score,
            strict=True,
        )
    ]
    dataset = {"images": images, "categories": categories, "annotations": annotations}
    return dataset, results


def pycocotools_run(dataset: dict[str, Any], results: list[dict[str, Any]]) -> tuple[float, Any]:
    """pycocotools' evaluate() + accumulate() on the set: (seconds, the summarized COCOeval)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = dataset
    _quiet(gt.createIndex)
    dt = _quiet(lambda: gt.loadRes([dict(r) for r in results]))
    ev = COCOeval(gt, dt, "bbox")
    began = time.perf_counter()
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    seconds = time.perf_counter() - began
    _quiet(ev.summarize)
    return seconds, ev


def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - began)
    return best, out


def goal(label: str, value: float, target: float, shown: str, target_shown: str) -> bool:
    met = value <= target
    print(f"{label} = {shown} (goal <= {target_shown}: {'MET' if met else 'NOT MET'})")
    return met


def state_line(results: ItemResults, repeats: int) -> None:
    """Time the per-item state's round trip (information only, no goal)."""
    to_s, docs = _best(results.to_item_dicts, repeats)
    from_s, back = _best(lambda: ItemResults.from_item_dicts(docs), repeats)
    assert back.equals(results)
    size = sum(len(d["data"]) for d in docs) / len(docs)
    line = (
        f"per-item state (for information): to_item_dicts {to_s:.3f} s, from_item_dicts "
        f"{from_s:.3f} s for {len(docs)} items ({size / 1000:.1f} kB each)"
    )
    try:
        import bson
    except ImportError:
        print(line)
        return
    enc_s, encoded = _best(lambda: [bson.encode({"state": d}) for d in docs], repeats)
    dec_s, _ = _best(lambda: [bson.decode(e) for e in encoded], repeats)
    print(f"{line}; BSON encode {enc_s:.3f} s, decode {dec_s:.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-pycocotools", action="store_true")
    parser.add_argument(
        "--skip-commit", action="store_true", help="leave out the commit from MongoDB"
    )
    args = parser.parse_args()

    ground, preds, n_items, n_labels = make_bench_set(args.seed)
    print(f"{n_items} items, {len(ground)} ground truths, {len(preds)} predictions, "
          f"{n_labels} labels, {int(ground.crowd.sum())} crowd")  # fmt: skip
    aware = Options(n_labels=n_labels, class_agnostic=False)
    agnostic = Options(n_labels=n_labels, class_agnostic=True)

    def loom(options: Options) -> Any:
        return accumulate(evaluate_items(ground, preds, options, n_items), options)

    from bench.model_run_commit import commit_goals, measure_commits, warm_kernels

    began = time.perf_counter()
    warm_kernels(ground, preds, n_items, aware)
    loom(agnostic)
    print(f"warm-up (numba compile or cache load): {time.perf_counter() - began:.2f} s")

    dataset, results = coco_dicts(ground, preds, n_items, n_labels)
    times: dict[str, float] = {}
    stats: dict[str, np.ndarray] = {}
    precision: dict[str, np.ndarray] = {}

    if not args.skip_pycocotools:
        times["pycocotools"], ev = pycocotools_run(dataset, results)
        stats["pycocotools"], precision["pycocotools"] = ev.stats, ev.eval["precision"]

    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster

    fgt = _quiet(lambda: FasterCOCO(dataset))
    fdt = _quiet(lambda: fgt.loadRes([dict(r) for r in results]))

    def faster() -> Any:
        ev = COCOeval_faster(fgt, fdt, "bbox")
        _quiet(ev.evaluate)
        _quiet(ev.accumulate)
        return ev

    import hotcoco

    def hotcoco_inputs() -> tuple[Any, Any]:
        images = [{"id": i + 1, "width": int(WIDTH), "height": int(HEIGHT)} for i in range(n_items)]
        categories = [{"id": c + 1, "name": f"label{c}"} for c in range(n_labels)]
        gt = hotcoco.COCO.from_arrays(
            images, categories, ground.item + 1, ground.label + 1, ground.bbox,
            ids=ground.ids, area=ground.area, iscrowd=ground.crowd,
        )  # fmt: skip
        res = np.column_stack([preds.item + 1, preds.bbox, preds.score, preds.label + 1])
        return gt, gt.load_res(res)

    hgt, hdt = hotcoco_inputs()

    def hot() -> Any:
        ev = hotcoco.COCOeval(hgt, hdt, "bbox")
        ev.evaluate()
        ev.accumulate()
        return ev

    def hot_with_inputs() -> Any:
        gt, dt = hotcoco_inputs()
        ev = hotcoco.COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        return ev

    runs = {
        "faster-coco-eval": faster,
        "hotcoco": hot,
        "hotcoco incl. inputs": hot_with_inputs,
        "loom class-aware": lambda: loom(aware),
        "loom class-agnostic": lambda: loom(agnostic),
    }
    best = {name: float("inf") for name in runs}
    outputs: dict[str, Any] = {}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits all alike
        for name, fn in runs.items():
            began = time.perf_counter()
            outputs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - began)
    times.update(best)
    fe = outputs["faster-coco-eval"]
    _quiet(fe.summarize)
    stats["faster-coco-eval"] = np.asarray(fe.stats)
    he = outputs["hotcoco"]
    _quiet(he.summarize)
    stats["hotcoco"] = np.asarray(he.stats)
    precision["hotcoco"] = np.asarray(he.eval["precision"])
    stats["loom class-aware"] = outputs["loom class-aware"].stats
    precision["loom class-aware"] = outputs["loom class-aware"].precision

    print(f"\n{'evaluator':<24}{'seconds':>10}{'x pycocotools':>16}")
    for name, seconds in times.items():
        ratio = times["pycocotools"] / seconds if "pycocotools" in times else float("nan")
        print(f"{name:<24}{seconds:>10.3f}{ratio:>15.1f}x")
    print(
        "loom class-agnostic (for information):", np.round(outputs["loom class-agnostic"].stats, 4)
    )
    reference = "pycocotools" if "pycocotools" in stats else "hotcoco"
    for name in ("faster-coco-eval", "hotcoco", "loom class-aware"):
        d = float(np.max(np.abs(stats[name] - stats[reference])))
        line = f"{name}: largest stat difference from {reference} = {d:.3g}"
        if name in precision and reference in precision:
            dp = float(np.max(np.abs(precision[name] - precision[reference])))
            line += f", precision array: {dp:.3g}"
        print(line)
    state_line(evaluate_items(ground, preds, aware, n_items), args.repeats)
    with_inputs = times["loom class-aware"] / times["hotcoco incl. inputs"]
    print(f"loom engine / hotcoco incl. inputs = {with_inputs:.2f}x (for information)")
    ratio = times["loom class-aware"] / times["hotcoco"]
    met = goal("loom engine / hotcoco", ratio, SPEED_GOAL, f"{ratio:.2f}x", f"{SPEED_GOAL:g}x")
    diff = float(np.max(np.abs(stats["loom class-aware"] - stats[reference])))
    label = f"largest stat difference from {reference}"
    met &= goal(label, diff, STAT_GOAL, f"{diff:.3g}", f"{STAT_GOAL:g}")
    if not args.skip_commit:
        commit = measure_commits(ground, preds, n_items, args.seed)
        met &= commit_goals(commit, times.get("pycocotools"), stats.get("pycocotools"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
