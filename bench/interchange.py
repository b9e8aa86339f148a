"""Dataset versions and interchange: taking a version of a large dataset through the gateway
and a worker, next to MongoDB copying the same documents by itself.

    .venv/bin/python bench/interchange.py            # about two minutes on 2 cores

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set. On a fresh database: an organization with an owner key, a project
and a dataset of --items items (100,000 by default) with --per-item box annotations each
(10: 1,000,000 annotations), written with insert_many in the shape uploads and
createAnnotations write, 1,000 distinct files among them. One Loom gateway runs under uvicorn
in a child process, one real `loom worker` beside it (LOOM_LOG_LEVEL=WARNING).

1. Bare copy: what MongoDB does alone — one `$match → $lookup → $set → $unset _id → $out`
   aggregation making the same documents a version holds (each item with its annotations)
   in a new collection, then building a version's indexes on it (no snapshot read, no
   chunks, no transactions, no file references).
2. Loom: `createDatasetVersion` through the gateway, until the version is ready (the worker's
   Command copying at the mutation's moment, chunk by chunk): seconds, and its ratio to the
   bare copy. Its counts must equal the dataset's.

3. Export: `exportDatasetVersion` of that version as COCO (no files), until its archive is
   stored: annotations/s; then pycocotools loading the exported instances file (`COCO(path)`).
4. Import: that instances file uploaded to `importAnnotations` on the dataset (mode REPLACE:
   every item's annotations deleted and imported again), until the command succeeds, next to
   pycocotools merely loading the same file: seconds, and the ratio.

Goals, printed as `(goal <op> <target>: MET | NOT MET)`: versioning the dataset in at most
20 s; exporting it at 20,000 annotations/s or more.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import harness
import httpx

EMAIL = "bench@interchange.io"
SETUP = {
    "project": """mutation($org: ID!) { createProject(organizationId: $org,
      input: {name: "interchange"}) { id } }""",
    "dataset": """mutation($p: ID!) { createDataset(projectId: $p, input: {name: "large",
      labels: [{name: "car"}, {name: "person"}, {name: "bike"}]}) { id } }""",
}
CREATE_VERSION = """mutation($d: ID!) { createDatasetVersion(datasetId: $d,
  input: {name: "bench"}) { id } }"""
EXPORT = """mutation($id: ID!) { exportDatasetVersion(id: $id, input: {}) { id } }"""
IMPORT = """mutation($d: ID!, $file: Upload!) { importAnnotations(datasetId: $d, file: $file) {
  id } }"""
LABELS = ("car", "person", "bike")
FILES = 1000
GOAL_S = 20.0
EXPORT_GOAL = 20_000


def _items(dataset: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Items as an upload writes them (resolvers/items.py), FILES distinct contents."""
    from bson import ObjectId

    from resolvers.timestamps import new_document

    return [
        new_document(
            None,
            _id=ObjectId(),
            orgId=dataset["orgId"],
            projectId=dataset["projectId"],
            datasetId=dataset["_id"],
            name=f"{n:07}.jpg",
            dir="/",
            filename=f"/{n:07}.jpg",
            type="file",
            mimetype="image/jpeg",
            size=120_000,
            width=1280,
            height=720,
            sha256=f"{n % FILES:064x}",
            metadata={"user": {"camera": n % 7}, "system": {"originalName": f"{n:07}.jpg"}},
            tags=[],
            description="",
            hidden=False,
            annotated=True,
            annotationsCount=0,
        )
        for n in range(count)
    ]


def _annotations(item: dict[str, Any], per_item: int) -> list[dict[str, Any]]:
    """Boxes as createAnnotations writes them (resolvers/annotations.py)."""
    from resolvers.timestamps import new_document

    return [
        new_document(
            None,
            orgId=item["orgId"],
            projectId=item["projectId"],
            datasetId=item["datasetId"],
            itemId=item["_id"],
            type="box",
            label=LABELS[k % len(LABELS)],
            coordinates={
                "left": 10.0 * k,
                "top": 5.0 * k,
                "right": 10.0 * k + 40,
                "bottom": 5.0 * k + 30,
            },
            attributes={"occluded": k % 2 == 0},
            status="clear",
            automated=False,
            parentId=None,
            objectId=None,
            frames=[],
            modelInfo=None,
            metadata={"user": {}},
        )
        for k in range(per_item)
    ]


class Bench(harness.GatewayBench):
    async def setup(self, items: int, per_item: int) -> str:
        """The dataset's id, seeded, with the gateway and a worker running."""
        from bson import ObjectId

        key_doc = await self.start(__file__, EMAIL)
        async with httpx.AsyncClient(base_url=self.server.url, timeout=60) as client:
            org = str(key_doc["orgId"])
            project = (await self.graphql(client, SETUP["project"], org=org))["createProject"]
            created = await self.graphql(client, SETUP["dataset"], p=project["id"])
        dataset = await self.db.datasets.find_one({"_id": ObjectId(created["createDataset"]["id"])})
        started = time.monotonic()
        docs = _items(dataset, items)
        for doc in docs:
            doc["annotationsCount"] = per_item
        for at in range(0, len(docs), 5000):
            chunk = docs[at : at + 5000]
            await self.db.items.insert_many(chunk, ordered=False)
            boxes = [box for item in chunk for box in _annotations(item, per_item)]
            await self.db.annotations.insert_many(boxes, ordered=False)
        # Each blob is written with its references at once: the worker's file sweep deletes
        # any blob it finds at 0.
        refs = {n: len(range(n, items, FILES)) for n in range(FILES)}
        await self.db.blobs.insert_many(
            [
                {"_id": f"{n:064x}", "gridfsId": ObjectId(), "size": 120_000, "refs": count}
                for n, count in refs.items()
                if count
            ]
        )
        await self.db.datasets.update_one(
            {"_id": dataset["_id"]},
            {"$set": {"itemsCount": items, "annotationsCount": items * per_item}},
        )
        print(
            f"seeded {items:,} items and {items * per_item:,} annotations in "
            f"{time.monotonic() - started:.1f} s; gateway and worker ready",
            flush=True,
        )
        return str(dataset["_id"])

    async def bare_copy(self, dataset: str) -> float:
        """MongoDB making the same documents by itself: each item joined with its
        annotations, `$out` into a new collection, then a version's indexes built."""
        from bson import ObjectId

        from gateway.indexes import INDEXES

        pipeline = [
            {"$match": {"datasetId": ObjectId(dataset)}},
            {"$set": {"itemId": "$_id"}},
            {
                "$lookup": {
                    "from": "annotations",
                    "localField": "_id",
                    "foreignField": "itemId",
                    "pipeline": [{"$sort": {"_id": 1}}],
                    "as": "annotations",
                }
            },
            {"$set": {"versionId": ObjectId(), "split": None}},
            {"$unset": "_id"},
            {"$out": "bare_items"},
        ]
        started = time.monotonic()
        await (await self.db.items.aggregate(pipeline)).to_list()
        await self.db.bare_items.create_indexes(INDEXES["version_items"])
        elapsed = time.monotonic() - started
        await self.db.bare_items.drop()
        return elapsed

    async def _timed(
        self, collection: str, mutation: str, done: Any, **variables: Any
    ) -> tuple[float, dict[str, Any]]:
        """Run `mutation` (one field answering {id}) through the gateway and follow
        `collection`'s change stream until the document it made satisfies `done`: the
        seconds that took, and that document."""
        from bson import ObjectId

        async with (
            httpx.AsyncClient(base_url=self.server.url, timeout=600) as client,
            await self.db[collection].watch(full_document="updateLookup") as changes,
        ):
            started = time.monotonic()
            created = (await self.graphql(client, mutation, **variables)).popitem()[1]
            target = ObjectId(created["id"])
            while True:
                doc = (await changes.next()).get("fullDocument") or {}
                if doc.get("_id") == target and done(doc):
                    return time.monotonic() - started, doc

    async def version(self, dataset: str) -> tuple[float, dict[str, Any]]:
        """createDatasetVersion, until the version is ready."""

        def ready(doc: dict[str, Any]) -> bool:
            return doc.get("status") != "creating"

        return await self._timed("dataset_versions", CREATE_VERSION, ready, d=dataset)

    async def import_file(self, dataset: str, instances: Path) -> tuple[float, dict[str, Any]]:
        """importAnnotations of the instances file (multipart upload through the gateway)
        until its command succeeds; the seconds from sending the upload, and its result."""
        from bson import ObjectId

        async with (
            httpx.AsyncClient(base_url=self.server.url, timeout=600) as client,
            await self.db.commands.watch(full_document="updateLookup") as changes,
        ):
            started = time.monotonic()
            operations = {"query": IMPORT, "variables": {"d": dataset, "file": None}}
            with instances.open("rb") as content:
                response = await client.post(
                    "/graphql",
                    data={
                        "operations": json.dumps(operations),
                        "map": json.dumps({"0": ["variables.file"]}),
                    },
                    files={"0": ("instances.json", content, "application/json")},
                    headers=self.headers,
                )
            body = response.json()
            if body.get("errors"):
                raise SystemExit(f"the import was refused: {body['errors']}")
            target = ObjectId(body["data"]["importAnnotations"]["id"])
            while True:
                doc = (await changes.next()).get("fullDocument") or {}
                if doc.get("_id") == target and doc.get("status") in ("success", "failed"):
                    break
        if doc["status"] != "success":
            raise SystemExit(f"the import failed: {doc['error']}")
        return time.monotonic() - started, doc["result"]

    async def export(self, version: str) -> tuple[float, Path]:
        """exportDatasetVersion until its archive is stored; the archive's instances file,
        downloaded and unpacked."""
        import zipfile

        def finished(doc: dict[str, Any]) -> bool:
            return doc.get("status") in ("success", "failed")

        elapsed, doc = await self._timed("commands", EXPORT, finished, id=version)
        if doc["status"] != "success":
            raise SystemExit(f"the export failed: {doc['error']}")
        archive = self.logs / "export.zip"
        async with (
            httpx.AsyncClient(base_url=self.server.url, timeout=600) as client,
            client.stream(
                "GET", f"/commands/{doc['_id']}/archive", headers=self.headers
            ) as response,
        ):
            with archive.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        with zipfile.ZipFile(archive) as unpacked:
            unpacked.extract("annotations/instances.json", self.logs)
        return elapsed, self.logs / "annotations" / "instances.json"


async def run(args: argparse.Namespace) -> int:
    print(f"bench/interchange.py — {harness.machine_info(1)}", flush=True)
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        print(f"databases: {origin}", flush=True)
        async with Bench(mongodb_url, redis_url) as bench:
            dataset = await bench.setup(args.items, args.per_item)
            bare = await bench.bare_copy(dataset)
            print(f"bare MongoDB copy ($lookup, $out, then the indexes): {bare:.1f} s")
            loom, version = await bench.version(dataset)
            expected = (args.items, args.items * args.per_item)
            held = (version["itemsCount"], version["annotationsCount"])
            if version["status"] != "ready" or held != expected:
                raise SystemExit(f"the version is {version['status']} holding {held}")
            print(
                f"createDatasetVersion until ready: {loom:.1f} s for {held[0]:,} items and "
                f"{held[1]:,} annotations ({held[1] / loom:,.0f} annotations/s)"
            )
            print(f"ratio loom / bare = {loom / bare:.2f}x (no goal)")
            verdict = "MET" if loom <= GOAL_S else "NOT MET"
            print(
                f"versioning {args.items:,} x {args.per_item} = {loom:.1f} s "
                f"(goal <= {GOAL_S:.0f} s: {verdict})"
            )
            exported, instances = await bench.export(str(version["_id"]))
            rate = held[1] / exported
            print(
                f"COCO export of the version until stored: {exported:.1f} s, "
                f"{instances.stat().st_size / 1e6:.0f} MB of JSON"
            )
            started = time.monotonic()
            loaded = await asyncio.to_thread(_load_with_pycocotools, instances)
            loading = time.monotonic() - started
            print(f"pycocotools COCO(path) loading it: {loading:.1f} s ({loaded:,} annotations)")
            verdict = "MET" if rate >= EXPORT_GOAL else "NOT MET"
            print(f"export = {rate:,.0f} annotations/s (goal >= {EXPORT_GOAL:,}: {verdict})")
            imported, result = await bench.import_file(dataset, instances)
            if result["importedAnnotations"] != held[1] or result["errorsCount"]:
                raise SystemExit(f"the import did not hold the version's annotations: {result}")
            print(
                f"COCO import of it (REPLACE) until done: {imported:.1f} s, "
                f"{result['importedAnnotations'] / imported:,.0f} annotations/s"
            )
            print(f"ratio import / pycocotools loading = {imported / loading:.2f}x (no goal)")
    return 0


def _load_with_pycocotools(path: Path) -> int:
    from pycocotools.coco import COCO

    return len(COCO(str(path)).anns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--per-item", type=int, default=10)
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--parent", type=int)
    args = parser.parse_args()
    if args.serve:
        harness.run_uvicorn(harness.loom_app(), args.port, args.parent)
        return 0
    return harness.run_async(run(args))


if __name__ == "__main__":
    sys.exit(main())
