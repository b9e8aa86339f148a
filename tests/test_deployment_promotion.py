"""Continuous deployment through a real worker: a proposed version, evaluated against the
champion by their committed model runs on a feedback dataset, replaces the champion under
`ifBetter` only when it is better by more than the margin, never under `manual`; the
promotion is a recorded switch that rollback undoes; bad proposals and other tenants are
refused."""

from bson import ObjectId

from tests.datasets_world import CREATE_DATASET, image_bytes, make_world
from tests.test_clone import _finished
from tests.test_model_run_commit import COMMIT, CREATE_MANY, UPLOAD
from tests.test_predictions import CREATE_MODEL, CREATE_RUN, CREATE_VERSION
from tests.workers import worker_processes

CREATE_DEPLOYMENT = """mutation($p: ID!, $input: DeploymentInput!) {
  createDeployment(projectId: $p, input: $input) { id } }"""
ATTACH = """mutation($d: ID!, $ds: ID!) { attachFeedbackDataset(deploymentId: $d, datasetId: $ds) {
  id } }"""
SET_POLICY = """mutation($d: ID!, $input: ContinuousDeploymentInput!) {
  setContinuousDeployment(deploymentId: $d, input: $input) {
    continuousDeployment { policy metric margin } } }"""
PROPOSE = """mutation($d: ID!, $v: ID!) {
  proposeModelVersion(deploymentId: $d, modelVersionId: $v) {
  deployment { championVersionId continuousDeployment { lastDecision { promoted } } }
  decision { versionId policy metric promoted reason evaluation } } }"""
ROLLBACK = """mutation($d: ID!) { rollbackDeployment(deploymentId: $d) { championVersionId } }"""
HISTORY = """query($id: ID!) { deployment(id: $id) { history(first: 10) { nodes {
  role fromVersionId toVersionId rollback } } } }"""
RIGHT = {"left": 10, "top": 10, "right": 60, "bottom": 60}
WRONG = {"left": 100, "top": 100, "right": 150, "bottom": 150}


async def _version_with_run(world, db, model: str, dataset: str, items: list[str], hits: int):
    """A version of the model and its committed run on the dataset: `hits` of the items
    predicted right, the others wrong."""
    client = world.client
    version = (await client.data(CREATE_VERSION, id=model))["createModelVersion"]["id"]
    run = await client.data(
        CREATE_RUN, input={"modelVersionId": version, "datasetId": dataset, "name": version}
    )
    run_id = run["createModelRun"]["id"]
    predictions = [
        {"itemId": item, "type": "BOX", "label": "car", "confidence": 0.9,
         "coordinates": RIGHT if n < hits else WRONG}
        for n, item in enumerate(items)
    ]  # fmt: skip
    await client.data(UPLOAD, run=run_id, p=predictions, update=False)
    command = (await client.data(COMMIT, run=run_id, input=None))["commitModelRun"]
    assert (await _finished(db, ObjectId(command["id"])))["status"] == "success"
    return version


async def test_if_better_promotes_only_a_better_version_and_rollback_restores(member, db, settings):
    world = await make_world(member)
    client = world.client
    feedback = await client.data(CREATE_DATASET, project=world.project, input={"name": "fb"})
    dataset = feedback["createDataset"]["id"]
    items = [
        (await world.upload_to(dataset, f"{n}.png", image_bytes("PNG", 200, 200)))["id"]
        for n in range(4)
    ]
    truths = [{"itemId": i, "type": "BOX", "label": "car", "coordinates": RIGHT} for i in items]
    await client.data(CREATE_MANY, inputs=truths)
    model = (await client.data(CREATE_MODEL, project=world.project, input={"name": "m"}))[
        "createModel"
    ]["id"]
    with worker_processes(settings) as start:
        start()
        champion = await _version_with_run(world, db, model, dataset, items, hits=2)
        worse = await _version_with_run(world, db, model, dataset, items, hits=1)
        slightly = await _version_with_run(world, db, model, dataset, items, hits=2)
        better = await _version_with_run(world, db, model, dataset, items, hits=4)
    untested = (await client.data(CREATE_VERSION, id=model))["createModelVersion"]["id"]
    made = await client.data(
        CREATE_DEPLOYMENT, p=world.project, input={"name": "d", "championVersionId": champion}
    )
    deployment = made["createDeployment"]["id"]
    assert await client.code(PROPOSE, d=deployment, v=better) == "BAD_USER_INPUT"  # no policy
    await client.data(ATTACH, d=deployment, ds=dataset)
    await client.data(SET_POLICY, d=deployment, input={"policy": "MANUAL"})
    manual = (await client.data(PROPOSE, d=deployment, v=better))["proposeModelVersion"]
    assert manual["decision"]["promoted"] is False
    assert "manual" in manual["decision"]["reason"]
    assert manual["deployment"]["championVersionId"] == champion

    policy = {"policy": "IF_BETTER", "metric": "AP50", "margin": 0.1}
    set_up = await client.data(SET_POLICY, d=deployment, input=policy)
    assert set_up["setContinuousDeployment"]["continuousDeployment"] == {
        "policy": "IF_BETTER", "metric": "AP50", "margin": 0.1,
    }  # fmt: skip
    decisions = {}
    for version in (worse, slightly, untested, better):
        answer = (await client.data(PROPOSE, d=deployment, v=version))["proposeModelVersion"]
        decisions[version] = answer["decision"]
    assert [decisions[v]["promoted"] for v in (worse, slightly, untested, better)] == [
        False, False, False, True,
    ]  # fmt: skip
    evaluation = decisions[better]["evaluation"]
    assert evaluation["datasetId"] == dataset
    assert evaluation["candidateValue"] > evaluation["championValue"] + 0.1
    assert decisions[untested]["evaluation"] is None
    history = (await client.data(HISTORY, id=deployment))["deployment"]["history"]["nodes"]
    assert history[0] == {
        "role": "CHAMPION", "fromVersionId": champion, "toVersionId": better, "rollback": False,
    }  # fmt: skip
    restored = (await client.data(ROLLBACK, d=deployment))["rollbackDeployment"]
    assert restored["championVersionId"] == champion

    rival = await make_world(member, org="rival")
    assert await rival.client.code(PROPOSE, d=deployment, v=better) == "NOT_FOUND"
    assert await rival.client.code(SET_POLICY, d=deployment, input=policy) == "NOT_FOUND"
    assert await client.code(PROPOSE, d=deployment, v=champion) == "BAD_USER_INPUT"
    assert await client.code(PROPOSE, d=deployment, v=str(ObjectId())) == "BAD_USER_INPUT"
    bad = {"policy": "IF_BETTER", "metric": "accuracy"}
    assert await client.code(SET_POLICY, d=deployment, input=bad) == "BAD_USER_INPUT"
