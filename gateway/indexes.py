"""Every MongoDB index and collection option Loom relies on, in one place, applied
idempotently at start-up."""

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

INDEXES: dict[str, list[IndexModel]] = {
    "users": [IndexModel([("email", ASCENDING)], unique=True)],
    "organizations": [IndexModel([("name", ASCENDING)], unique=True)],
    "org_members": [
        IndexModel([("orgId", ASCENDING), ("userId", ASCENDING)], unique=True),
        IndexModel([("userId", ASCENDING)]),
        IndexModel([("orgId", ASCENDING), ("_id", ASCENDING)]),
    ],
    "projects": [
        IndexModel([("orgId", ASCENDING), ("name", ASCENDING)], unique=True),
        IndexModel([("name", ASCENDING), ("_id", ASCENDING)]),
    ],
    "project_members": [
        IndexModel([("projectId", ASCENDING), ("userId", ASCENDING)], unique=True),
        IndexModel([("userId", ASCENDING), ("orgId", ASCENDING)]),
        IndexModel([("orgId", ASCENDING), ("userId", ASCENDING)]),
    ],
    "api_keys": [
        IndexModel([("hash", ASCENDING)], unique=True),
        IndexModel([("userId", ASCENDING), ("_id", ASCENDING)]),
    ],
    "datasets": [
        IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True),
    ],
    "items": [
        IndexModel([("datasetId", ASCENDING), ("filename", ASCENDING)], unique=True),
        IndexModel([("datasetId", ASCENDING), ("filename", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("datasetId", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("datasetId", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("datasetId", ASCENDING), ("updatedAt", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("datasetId", ASCENDING), ("size", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("datasetId", ASCENDING), ("sha256", ASCENDING)]),
        IndexModel([("projectId", ASCENDING)]),
        IndexModel(
            [("datasetId", ASCENDING), ("referenceId", ASCENDING)],
            unique=True,
            partialFilterExpression={"referenceId": {"$type": "string"}},
            name="one_item_per_reference_id",
        ),
    ],
    "annotations": [
        IndexModel([("itemId", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("datasetId", ASCENDING), ("label", ASCENDING)]),
        IndexModel([("projectId", ASCENDING)]),
        # A model run's commit reads its dataset's ground truth item by item, in id order.
        IndexModel([("datasetId", ASCENDING), ("itemId", ASCENDING), ("_id", ASCENDING)]),
        # ... and, to re-commit, the annotations changed since its last commit, and its
        # classifications (resolvers/classification_metrics.py): a partial index, so only
        # classifications pay for it.
        IndexModel([("datasetId", ASCENDING), ("updatedAt", ASCENDING)]),
        IndexModel(
            [
                ("datasetId", ASCENDING),
                ("type", ASCENDING),
                ("itemId", ASCENDING),
                ("_id", ASCENDING),
            ],
            partialFilterExpression={"type": "classification"},
            name="classifications_by_item",
        ),
    ],
    "saved_filters": [IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True)],
    "services": [IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True)],
    "executions": [
        IndexModel([("status", ASCENDING), ("leaseUntil", ASCENDING)]),
        IndexModel([("serviceId", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("projectId", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("projectId", ASCENDING), ("status", ASCENDING)]),
        IndexModel([("batchId", ASCENDING)], sparse=True),
        # A service's concurrency: one running execution per slot (resolvers/execution_runs.py).
        IndexModel(
            [("serviceId", ASCENDING), ("slot", ASCENDING)],
            unique=True,
            partialFilterExpression={"status": "inProgress", "slot": {"$type": "int"}},
            name="one_run_per_slot",
        ),
        # A trigger creates one execution per event (per resource, for `Once` triggers):
        # a replayed event, two relays or a retried write create nothing twice.
        IndexModel(
            [("triggerKey", ASCENDING)],
            unique=True,
            partialFilterExpression={"triggerKey": {"$type": "string"}},
        ),
        IndexModel(
            [("triggerId", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)],
            partialFilterExpression={"triggerId": {"$type": "objectId"}},
        ),
        IndexModel([("eventId", ASCENDING)], sparse=True),
        # An ordered trigger's executions of one resource run in event order.
        IndexModel(
            [("orderKey", ASCENDING), ("orderSeq", ASCENDING)],
            partialFilterExpression={"orderKey": {"$type": "string"}},
        ),
    ],
    "triggers": [
        IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True),
    ],
    # Cron triggers (triggers/cron/): the scheduler's due read, and abandoned claims.
    "cron_triggers": [
        IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True),
        IndexModel([("active", ASCENDING), ("nextRunAt", ASCENDING)]),
        IndexModel([("pendingFires.claimedAt", ASCENDING)], sparse=True),
    ],
    # One record per tick of a cron trigger, however many workers claimed or completed it.
    "cron_fires": [
        IndexModel(
            [("cronTriggerId", ASCENDING), ("scheduledAt", ASCENDING)],
            unique=True,
            name="one_fire_per_tick",
        ),
        IndexModel([("cronTriggerId", ASCENDING), ("scheduledAt", DESCENDING), ("_id", ASCENDING)]),
        IndexModel([("scheduledAt", ASCENDING)]),
    ],
    "scheduled_runs": [
        IndexModel([("status", ASCENDING), ("at", ASCENDING)]),
        IndexModel([("projectId", ASCENDING), ("at", DESCENDING), ("_id", ASCENDING)]),
        IndexModel([("at", ASCENDING)]),
    ],
    # The relay's log of changes (triggers/relay/): one event per change-stream token.
    "events": [
        IndexModel([("token", ASCENDING)], unique=True),
        IndexModel([("projectId", ASCENDING), ("token", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("triggers", ASCENDING), ("token", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("time", ASCENDING)]),
        IndexModel([("keepUntil", ASCENDING)], sparse=True),
    ],
    "webhooks": [
        IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True),
    ],
    "models": [IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True)],
    # Version numbers are unique per model (resolvers/models.py); pages go newest first.
    "model_versions": [
        IndexModel([("modelId", ASCENDING), ("version", ASCENDING)], unique=True),
        IndexModel([("modelId", ASCENDING), ("version", DESCENDING), ("_id", ASCENDING)]),
    ],
    # Deployments (resolvers/deployments/lifecycle.py): names unique per project; switches
    # page newest first per deployment.
    "deployments": [IndexModel([("projectId", ASCENDING), ("name", ASCENDING)], unique=True)],
    # Predicted assets (resolvers/deployments/predictions.py): newest first per deployment.
    "predicted_assets": [
        IndexModel([("deploymentId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("batchId", ASCENDING)], sparse=True),
        # Settled slots not yet rolled up (resolvers/deployments/rollups.py): the sweep's
        # batches, and a deployment's window that stats count live.
        *(
            IndexModel(
                [
                    (f"rolledUp.{role}", ASCENDING),
                    (f"{role}.status", ASCENDING),
                    ("deploymentId", ASCENDING),
                    ("createdAt", ASCENDING),
                ]
            )
            for role in ("champion", "shadow")
        ),
    ],
    # Rollups of a deployment's slots: one per (deployment, minute or hour, role, version).
    "deployment_rollups": [
        IndexModel(
            [
                ("deploymentId", ASCENDING),
                ("unit", ASCENDING),
                ("at", ASCENDING),
                ("role", ASCENDING),
                ("versionId", ASCENDING),
            ],
            unique=True,
        ),
    ],
    "deployment_switches": [
        IndexModel([("deploymentId", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
    ],
    # Webhook deliveries (triggers/webhooks/): one per (trigger, event) as executions are.
    "deliveries": [
        IndexModel(
            [("deliveryKey", ASCENDING)],
            unique=True,
            partialFilterExpression={"deliveryKey": {"$type": "string"}},
        ),
        IndexModel([("webhookId", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("projectId", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)]),
        # The sweep finds pending deliveries no worker holds without a scan.
        IndexModel(
            [("nextAttemptAt", ASCENDING), ("_id", ASCENDING)],
            partialFilterExpression={"state": "pending"},
        ),
        IndexModel([("eventId", ASCENDING)], sparse=True),
        IndexModel([("endedAt", ASCENDING)], sparse=True),
    ],
    "commands": [
        IndexModel([("status", ASCENDING), ("leaseUntil", ASCENDING)]),
        IndexModel([("projectId", ASCENDING)]),
        # A project's commands, newest first (the console's commands page).
        IndexModel([("projectId", ASCENDING), ("_id", DESCENDING)]),
    ],
    "workers": [IndexModel([("lastSeenAt", ASCENDING)], expireAfterSeconds=120)],
    "blobs": [
        IndexModel([("gridfsId", ASCENDING)]),
        # Only unreferenced blobs are in it: the sweep finds them without a scan.
        IndexModel([("refs", ASCENDING)], partialFilterExpression={"refs": {"$lte": 0}}),
    ],
    "files.files": [IndexModel([("uploadDate", ASCENDING)])],
    # Documents APQ stored go after 30 days (a client sends the text again on its next miss);
    # trusted documents, imported by an operator, stay.
    "persisted_documents": [
        IndexModel(
            [("createdAt", ASCENDING)],
            expireAfterSeconds=30 * 24 * 3600,
            partialFilterExpression={"trusted": False},
        )
    ],
    "model_runs": [
        IndexModel([("modelVersionId", ASCENDING), ("name", ASCENDING)], unique=True),
        IndexModel([("modelVersionId", ASCENDING), ("createdAt", DESCENDING), ("_id", ASCENDING)]),
        IndexModel([("modelId", ASCENDING)]),
        IndexModel([("projectId", ASCENDING)]),
    ],
    "predictions": [
        IndexModel([("runId", ASCENDING), ("itemId", ASCENDING), ("_id", ASCENDING)]),
        IndexModel(
            [("runId", ASCENDING), ("itemId", ASCENDING), ("annotationId", ASCENDING)],
            unique=True,
            partialFilterExpression={"annotationId": {"$type": "string"}},
            name="one_prediction_per_annotation_id",
        ),
        IndexModel([("itemId", ASCENDING), ("runId", ASCENDING)]),
        IndexModel(
            [
                ("runId", ASCENDING),
                ("type", ASCENDING),
                ("itemId", ASCENDING),
                ("confidence", DESCENDING),
                ("_id", ASCENDING),
            ],
            partialFilterExpression={"type": "classification"},
            name="classifications_by_item",
        ),
    ],
    # Dataset versions (resolvers/versions/): copies of items and annotations, read as the
    # live ones are, per version instead of per dataset.
    "dataset_versions": [
        IndexModel([("datasetId", ASCENDING), ("name", ASCENDING)], unique=True),
        IndexModel([("datasetId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)]),
    ],
    "version_items": [
        IndexModel([("versionId", ASCENDING), ("itemId", ASCENDING)], unique=True),
        *(
            IndexModel([("versionId", ASCENDING), (field, ASCENDING), ("_id", ASCENDING)])
            for field in ("filename", "name", "createdAt", "updatedAt", "size", "split")
        ),
    ],
    # A commit's per-item matching state and match records (resolvers/model_run_commit.py).
    "model_run_items": [
        IndexModel([("runId", ASCENDING), ("itemId", ASCENDING)], unique=True),
        *(
            IndexModel([("runId", ASCENDING), (f"counts.{kind}", DESCENDING), ("_id", ASCENDING)])
            for kind in ("errors", "fp", "fn")
        ),
    ],
    "model_run_changes": [IndexModel([("runId", ASCENDING), ("at", ASCENDING)])],
    # Idempotency keys answer retries for 24 h (resolvers/idempotency.py).
    "idempotency_keys": [IndexModel([("createdAt", ASCENDING)], expireAfterSeconds=24 * 3600)],
}


CHANGE_IMAGES = (
    "executions",
    "commands",
    "api_keys",
    "org_members",
    "project_members",
    "items",
    "annotations",
    "datasets",
    "triggers",
    "predicted_assets",
    "deployments",
    "dataset_versions",
    "deliveries",
)
"""Collections whose change events carry the document as it was right after the change (not
as it is when the event is read), so subscribers see every state, not a later one twice, and
as it was right before (a membership's deletion names the user whose access it changes; an
event of the relay holds the document before and after its change)."""


async def ensure_indexes(db: AsyncDatabase) -> None:
    """Create what is missing; existing indexes with the same spec are left as they are."""
    for collection, models in INDEXES.items():
        await db[collection].create_indexes(models)
    for collection in CHANGE_IMAGES:
        await db.command("collMod", collection, changeStreamPreAndPostImages={"enabled": True})
