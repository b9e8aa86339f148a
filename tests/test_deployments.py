"""Deployments: create, read, change, delete; their validation; champion and shadow switches
recorded (who, when, from → to) and rolled back; concurrent switches losing no record; who may
manage them; and tenancy: another organization neither sees nor touches them."""

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from resolvers.access import Action
from tests.datasets_world import CREATE_DATASET, CREATE_PROJECT, World, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_roles import ALL_CASES, Case, _attempt, project_outcome

SWITCH_FIELDS = """role fromVersionId toVersionId rollback rolledBack at by { email }
  fromVersion { id } toVersion { id }"""
FIELDS = """id name description championVersionId shadowVersionId minThreshold
  targetDatasetId active createdAt updatedAt champion { id version } shadow { id version }
  targetDataset { id } project { id } creator { email }"""
CREATE = f"""mutation($p: ID!, $input: DeploymentInput!) {{
  createDeployment(projectId: $p, input: $input) {{ {FIELDS} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: DeploymentChangesInput!) {{
  updateDeployment(id: $id, input: $input) {{ {FIELDS} }} }}"""
DELETE = "mutation($id: ID!) { deleteDeployment(id: $id) }"
SET_CHAMPION = """mutation($d: ID!, $v: ID!) {
  setChampion(deploymentId: $d, modelVersionId: $v) { championVersionId shadowVersionId } }"""
SET_SHADOW = """mutation($d: ID!, $v: ID) {
  setShadow(deploymentId: $d, modelVersionId: $v) { championVersionId shadowVersionId } }"""
ROLLBACK = """mutation($d: ID!) {
  rollbackDeployment(deploymentId: $d) { championVersionId shadowVersionId } }"""
DEPLOYMENT = f"query($id: ID!) {{ deployment(id: $id) {{ {FIELDS} }} }}"
HISTORY = f"""query($id: ID!, $first: Int, $after: String) {{ deployment(id: $id) {{
  history(first: $first, after: $after) {{
    totalCount pageInfo {{ hasNextPage endCursor }} nodes {{ {SWITCH_FIELDS} }} }} }} }}"""
PROJECT_DEPLOYMENTS = """query($p: ID!, $first: Int, $after: String) { project(id: $p) {
  deployments(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } nodes { id name } } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
CREATE_MODEL = """mutation($p: ID!, $input: ModelInput!) {
  createModel(projectId: $p, input: $input) { id } }"""
CREATE_VERSION = "mutation($m: ID!) { createModelVersion(modelId: $m) { id } }"
ADD_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  addProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""


async def _versions(client: GraphQLClient, project: str, n: int, name: str = "m") -> list[str]:
    model = (await client.data(CREATE_MODEL, p=project, input={"name": name}))["createModel"]
    return [
        (await client.data(CREATE_VERSION, m=model["id"]))["createModelVersion"]["id"]
        for _ in range(n)
    ]


@dataclass
class Scene:
    world: World
    versions: list[str]
    other_project: str
    other_version: str
    other_dataset: str

    @property
    def client(self) -> GraphQLClient:
        return self.world.client

    async def deploy(self, **fields: Any) -> dict[str, Any]:
        given = {"name": "prod", "championVersionId": self.versions[0], **fields}
        made = await self.client.data(CREATE, p=self.world.project, input=given)
        return made["createDeployment"]


async def _scene(member) -> Scene:
    world = await make_world(member)
    versions = await _versions(world.client, world.project, 3)
    other = (await world.client.data(CREATE_PROJECT, org=world.org, name="Other"))["createProject"][
        "id"
    ]
    [other_version] = await _versions(world.client, other, 1)
    other_dataset = (
        await world.client.data(CREATE_DATASET, project=other, input={"name": "elsewhere"})
    )["createDataset"]["id"]
    return Scene(world, versions, other, other_version, other_dataset)


@pytest.fixture
async def scene(member) -> Scene:
    return await _scene(member)


# --- CRUD -----------------------------------------------------------------------------------


async def test_a_deployment_is_created_read_listed_changed_and_deleted(scene, db):
    v1, v2, _ = scene.versions
    made = await scene.deploy(
        description="serves cars",
        shadowVersionId=v2,
        minThreshold=0.25,
        targetDatasetId=scene.world.dataset,
    )
    email = (await db.users.find_one({"_id": (await db.deployments.find_one())["creator"]}))[
        "email"
    ]
    assert {k: v for k, v in made.items() if k not in ("id", "createdAt", "updatedAt")} == {
        "name": "prod",
        "description": "serves cars",
        "championVersionId": v1,
        "shadowVersionId": v2,
        "minThreshold": 0.25,
        "targetDatasetId": scene.world.dataset,
        "active": True,
        "champion": {"id": v1, "version": 1},
        "shadow": {"id": v2, "version": 2},
        "targetDataset": {"id": scene.world.dataset},
        "project": {"id": scene.world.project},
        "creator": {"email": email},
    }
    assert (await scene.client.data(DEPLOYMENT, id=made["id"]))["deployment"] == made
    stored = await db.deployments.find_one({"_id": ObjectId(made["id"])})
    assert stored["orgId"] == ObjectId(scene.world.org)
    assert stored["projectId"] == ObjectId(scene.world.project)

    plain = await scene.deploy(name="canary")
    assert (plain["shadowVersionId"], plain["minThreshold"], plain["active"]) == (None, 0.0, True)
    assert (plain["shadow"], plain["targetDataset"], plain["description"]) == (None, None, "")

    listed = await scene.client.data(PROJECT_DEPLOYMENTS, p=scene.world.project, first=1)
    page = listed["project"]["deployments"]
    assert (page["totalCount"], page["nodes"]) == (2, [{"id": plain["id"], "name": "canary"}])
    assert page["pageInfo"]["hasNextPage"]
    rest = await scene.client.data(
        PROJECT_DEPLOYMENTS, p=scene.world.project, after=page["pageInfo"]["endCursor"]
    )
    assert rest["project"]["deployments"]["nodes"] == [{"id": made["id"], "name": "prod"}]

    changed = (
        await scene.client.data(
            UPDATE,
            id=made["id"],
            input={"name": "production", "minThreshold": 0.5, "active": False},
        )
    )["updateDeployment"]
    assert (changed["name"], changed["minThreshold"], changed["active"]) == (
        "production",
        0.5,
        False,
    )
    assert changed["description"] == "serves cars"
    assert changed["targetDatasetId"] == scene.world.dataset
    cleared = await scene.client.data(UPDATE, id=made["id"], input={"targetDatasetId": None})
    assert cleared["updateDeployment"]["targetDatasetId"] is None
    assert changed["updatedAt"] >= made["updatedAt"]

    node = await scene.client.data(NODE, id=made["id"])
    assert node["node"] == {"__typename": "Deployment", "id": made["id"]}

    assert (await scene.client.data(DELETE, id=made["id"]))["deleteDeployment"] is True
    assert await scene.client.code(DEPLOYMENT, id=made["id"]) == "NOT_FOUND"
    assert await db.deployment_switches.count_documents({"deploymentId": stored["_id"]}) == 0
    assert await scene.client.code(DELETE, id=made["id"]) == "NOT_FOUND"


async def test_names_are_unique_per_project(scene, db):
    await scene.deploy()
    before = await snapshot(db)
    error = await scene.client.error(
        CREATE,
        p=scene.world.project,
        input={"name": "prod", "championVersionId": scene.versions[1]},
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("CONFLICT", "name")
    other = (await scene.deploy(name="other"))["id"]
    assert await snapshot(db) != before
    before = await snapshot(db)
    error = await scene.client.error(UPDATE, id=other, input={"name": "prod"})
    assert error["extensions"]["code"] == "CONFLICT"
    assert await snapshot(db) == before
    # Another project may use the name.
    made = await scene.client.data(
        CREATE,
        p=scene.other_project,
        input={"name": "prod", "championVersionId": scene.other_version},
    )
    assert made["createDeployment"]["name"] == "prod"


# --- Validation -----------------------------------------------------------------------------

BAD_CREATES: dict[str, tuple[Callable[[Scene], dict[str, Any]], str]] = {
    "made-up-champion": (lambda s: {"championVersionId": str(ObjectId())}, "championVersionId"),
    "malformed-champion": (lambda s: {"championVersionId": "nope"}, "championVersionId"),
    "champion-of-another-project": (
        lambda s: {"championVersionId": s.other_version},
        "championVersionId",
    ),
    "made-up-shadow": (lambda s: {"shadowVersionId": str(ObjectId())}, "shadowVersionId"),
    "shadow-of-another-project": (
        lambda s: {"shadowVersionId": s.other_version},
        "shadowVersionId",
    ),
    "shadow-equal-to-champion": (lambda s: {"shadowVersionId": s.versions[0]}, "shadowVersionId"),
    "threshold-above-one": (lambda s: {"minThreshold": 1.5}, "minThreshold"),
    "threshold-below-zero": (lambda s: {"minThreshold": -0.1}, "minThreshold"),
    "dataset-of-another-project": (
        lambda s: {"targetDatasetId": s.other_dataset},
        "targetDatasetId",
    ),
    "made-up-dataset": (lambda s: {"targetDatasetId": str(ObjectId())}, "targetDatasetId"),
    "empty-name": (lambda s: {"name": "  "}, "name"),
    "long-description": (lambda s: {"description": "x" * 2001}, "description"),
}


@pytest.mark.parametrize("case", list(BAD_CREATES))
async def test_bad_deployment_input_is_bad_user_input_and_writes_nothing(scene, db, case):
    fields, word = BAD_CREATES[case]
    before = await snapshot(db)
    given = {"name": "prod", "championVersionId": scene.versions[0], **fields(scene)}
    error = await scene.client.error(CREATE, p=scene.world.project, input=given)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert word in error["message"], error
    assert await snapshot(db) == before


async def test_another_projects_version_reads_like_a_made_up_one(scene):
    messages = []
    for version in (scene.other_version, str(ObjectId())):
        error = await scene.client.error(
            CREATE, p=scene.world.project, input={"name": "p", "championVersionId": version}
        )
        messages.append(error["message"])
    assert messages[0] == messages[1]


BAD_UPDATES: dict[str, tuple[Callable[[Scene], dict[str, Any]], str]] = {
    "nothing": (lambda s: {}, "at least one"),
    "threshold": (lambda s: {"minThreshold": 2.0}, "minThreshold"),
    "dataset-of-another-project": (
        lambda s: {"targetDatasetId": s.other_dataset},
        "targetDatasetId",
    ),
    "empty-name": (lambda s: {"name": ""}, "name"),
}


@pytest.mark.parametrize("case", list(BAD_UPDATES))
async def test_bad_changes_are_bad_user_input_and_write_nothing(scene, db, case):
    made = await scene.deploy()
    fields, word = BAD_UPDATES[case]
    before = await snapshot(db)
    error = await scene.client.error(UPDATE, id=made["id"], input=fields(scene))
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert word in error["message"], error
    assert await snapshot(db) == before


async def test_bad_switches_are_bad_user_input_and_write_nothing(scene, db):
    v1, v2, _ = scene.versions
    made = await scene.deploy(shadowVersionId=v2)
    before = await snapshot(db)
    for query, version in (
        (SET_CHAMPION, str(ObjectId())),
        (SET_CHAMPION, scene.other_version),
        (SET_CHAMPION, v2),  # the shadow
        (SET_SHADOW, scene.other_version),
        (SET_SHADOW, v1),  # the champion
        (SET_CHAMPION, "nope"),
    ):
        error = await scene.client.error(query, d=made["id"], v=version)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (query, version, error)
        assert error["extensions"]["field"] == "modelVersionId"
    assert await snapshot(db) == before
    for query in (SET_CHAMPION, SET_SHADOW, ROLLBACK):
        variables = {"d": str(ObjectId())} | ({} if query is ROLLBACK else {"v": v1})
        assert await scene.client.code(query, **variables) == "NOT_FOUND"
    assert await snapshot(db) == before


# --- History and rollback -------------------------------------------------------------------


async def _history(client: GraphQLClient, deployment: str) -> list[dict[str, Any]]:
    found = await client.data(HISTORY, id=deployment, first=100)
    return found["deployment"]["history"]["nodes"]


def _moves(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Oldest first: (role, from, to, rollback, rolledBack)."""
    return [
        (h["role"], h["fromVersionId"], h["toVersionId"], h["rollback"], h["rolledBack"])
        for h in reversed(history)
    ]


async def test_every_switch_is_recorded_with_who_when_from_and_to(scene, member, db):
    v1, v2, v3 = scene.versions
    made = await scene.deploy(shadowVersionId=v2)
    developer, doc = await member("acme", "member", email="dev@acme.io")
    await scene.client.data(
        ADD_PROJECT_MEMBER, project=scene.world.project, user=str(doc["userId"]), role="DEVELOPER"
    )
    assert (await developer.data(SET_CHAMPION, d=made["id"], v=v3))["setChampion"] == {
        "championVersionId": v3,
        "shadowVersionId": v2,
    }
    assert (await scene.client.data(SET_SHADOW, d=made["id"], v=None))["setShadow"] == {
        "championVersionId": v3,
        "shadowVersionId": None,
    }
    await scene.client.data(SET_SHADOW, d=made["id"], v=v1)
    # Setting what the slot already holds changes and records nothing.
    before = await snapshot(db)
    await scene.client.data(SET_CHAMPION, d=made["id"], v=v3)
    await scene.client.data(SET_SHADOW, d=made["id"], v=v1)
    assert await snapshot(db) == before

    history = await _history(scene.client, made["id"])
    assert _moves(history) == [
        ("CHAMPION", None, v1, False, False),
        ("SHADOW", None, v2, False, False),
        ("CHAMPION", v1, v3, False, False),
        ("SHADOW", v2, None, False, False),
        ("SHADOW", None, v1, False, False),
    ]
    owner_email = (await db.users.find_one({"_id": (await db.deployments.find_one())["creator"]}))[
        "email"
    ]
    assert [h["by"]["email"] for h in reversed(history)] == [
        owner_email,
        owner_email,
        "dev@acme.io",
        owner_email,
        owner_email,
    ]
    stamps = [h["at"] for h in history]
    assert stamps == sorted(stamps, reverse=True)
    assert history[2]["fromVersion"] == {"id": v1}
    assert history[2]["toVersion"] == {"id": v3}
    assert history[1]["toVersion"] is None

    stored = await db.deployment_switches.find({"deploymentId": ObjectId(made["id"])}).to_list()
    assert {(s["orgId"], s["projectId"]) for s in stored} == {
        (ObjectId(scene.world.org), ObjectId(scene.world.project))
    }

    # Pages go newest first and continue without repeats.
    first = (await scene.client.data(HISTORY, id=made["id"], first=2))["deployment"]["history"]
    assert first["totalCount"] == 5
    assert first["pageInfo"]["hasNextPage"]
    rest = await scene.client.data(
        HISTORY, id=made["id"], first=10, after=first["pageInfo"]["endCursor"]
    )
    assert first["nodes"] + rest["deployment"]["history"]["nodes"] == history


async def test_rollback_restores_the_previous_champions_and_is_conflict_with_none(scene, db):
    v1, v2, v3 = scene.versions
    made = await scene.deploy()
    before = await snapshot(db)
    error = await scene.client.error(ROLLBACK, d=made["id"])
    assert error["extensions"]["code"] == "CONFLICT"
    assert await snapshot(db) == before

    await scene.client.data(SET_CHAMPION, d=made["id"], v=v2)
    await scene.client.data(SET_CHAMPION, d=made["id"], v=v3)
    rolled = await scene.client.data(ROLLBACK, d=made["id"])
    assert rolled["rollbackDeployment"]["championVersionId"] == v2
    rolled = await scene.client.data(ROLLBACK, d=made["id"])
    assert rolled["rollbackDeployment"]["championVersionId"] == v1
    found = await scene.client.data(DEPLOYMENT, id=made["id"])
    assert found["deployment"]["champion"]["id"] == v1
    assert _moves(await _history(scene.client, made["id"])) == [
        ("CHAMPION", None, v1, False, False),
        ("CHAMPION", v1, v2, False, True),
        ("CHAMPION", v2, v3, False, True),
        ("CHAMPION", v3, v2, True, False),
        ("CHAMPION", v2, v1, True, False),
    ]
    before = await snapshot(db)
    assert await scene.client.code(ROLLBACK, d=made["id"]) == "CONFLICT"
    assert await snapshot(db) == before

    # A new switch after rollbacks is undone by the next rollback.
    await scene.client.data(SET_CHAMPION, d=made["id"], v=v3)
    rolled = await scene.client.data(ROLLBACK, d=made["id"])
    assert rolled["rollbackDeployment"]["championVersionId"] == v1


async def test_rollback_onto_the_shadow_or_a_deleted_version_is_conflict(scene, db):
    v1, v2, v3 = scene.versions
    made = await scene.deploy()
    await scene.client.data(SET_CHAMPION, d=made["id"], v=v2)
    await scene.client.data(SET_SHADOW, d=made["id"], v=v1)
    before = await snapshot(db)
    error = await scene.client.error(ROLLBACK, d=made["id"])
    assert (error["extensions"]["code"], "shadow" in error["message"]) == ("CONFLICT", True)
    assert await snapshot(db) == before
    await scene.client.data(SET_SHADOW, d=made["id"], v=v3)
    await db.model_versions.delete_one({"_id": ObjectId(v1)})
    before = await snapshot(db)
    assert await scene.client.code(ROLLBACK, d=made["id"]) == "CONFLICT"
    assert await snapshot(db) == before


async def test_concurrent_switches_lose_no_record(scene, db):
    versions = scene.versions + await _versions(scene.client, scene.world.project, 5, name="more")
    made = await scene.deploy()
    await asyncio.gather(
        *(scene.client.data(SET_CHAMPION, d=made["id"], v=v) for v in versions[1:])
    )
    moves = _moves(await _history(scene.client, made["id"]))
    assert len(moves) == len(versions)
    # The switches chain: each starts from where the previous one ended.
    assert moves[0][1:3] == (None, versions[0])
    for previous, move in itertools.pairwise(moves):
        assert move[1] == previous[2]
    assert sorted(m[2] for m in moves) == sorted(versions)
    stored = await db.deployments.find_one({"_id": ObjectId(made["id"])})
    assert str(stored["championVersionId"]) == moves[-1][2]


# --- Roles ----------------------------------------------------------------------------------

MANAGES = {
    "org-owner": None,
    "org-admin": None,
    "org-member": "NOT_FOUND",
    "org-worker": "NOT_FOUND",
    "project-owner": None,
    "project-developer": None,
    "project-annotationManager": "FORBIDDEN",
    "project-annotator": "FORBIDDEN",
}
"""Who may manage deployments (MANAGE_MODELS), written out by hand: the policy, not the table."""


def test_the_manage_models_policy_is_the_grant_tables():
    assert {case.id: project_outcome(case, Action.MANAGE_MODELS) for case in ALL_CASES} == MANAGES
    assert [case.id for case in ALL_CASES] == list(MANAGES)


@dataclass
class Caller:
    case: Case
    client: GraphQLClient
    deployment: str


async def test_managing_deployments_follows_the_role_table_and_members_read_them(scene, member, db):
    v1, v2, v3 = scene.versions
    callers = []
    for case in ALL_CASES:
        client, doc = await member("acme", case.org_role.value)
        if case.project_role is not None:
            await scene.client.data(
                ADD_PROJECT_MEMBER,
                project=scene.world.project,
                user=str(doc["userId"]),
                role=case.project_role.name,
            )
        made = await scene.deploy(name=f"for {case.id}")
        await scene.client.data(SET_CHAMPION, d=made["id"], v=v2)
        callers.append(Caller(case, client, made["id"]))

    outcomes: dict[str, dict[str, str | None]] = {}
    for caller in callers:
        client, d, case = caller.client, caller.deployment, caller.case.id
        reads = {
            "deployment": await _attempt(client, DEPLOYMENT, id=d),
            "deployment.history": await _attempt(client, HISTORY, id=d),
            "project.deployments": await _attempt(
                client, PROJECT_DEPLOYMENTS, p=scene.world.project
            ),
        }
        node = (await client.data(NODE, id=d))["node"]
        assert (node is None) == (reads["deployment"] is not None), case
        before = await snapshot(db)
        writes = {
            "create": await _attempt(
                client, CREATE, p=scene.world.project, input={"name": case, "championVersionId": v1}
            ),
            "update": await _attempt(client, UPDATE, id=d, input={"description": "c"}),
            "setChampion": await _attempt(client, SET_CHAMPION, d=d, v=v3),
            "setShadow": await _attempt(client, SET_SHADOW, d=d, v=v1),
            "rollback": await _attempt(client, ROLLBACK, d=d),
        }
        stored = await db.deployments.find_one({"_id": ObjectId(d)})
        if MANAGES[case] is not None:
            assert await snapshot(db) == before, case
        else:
            assert await db.deployments.count_documents({"name": case}) == 1, case
            assert stored["description"] == "c", case
            # v2 → v3 was rolled back to v2; the shadow is v1.
            assert (str(stored["championVersionId"]), str(stored["shadowVersionId"])) == (v2, v1)
        writes["delete"] = await _attempt(client, DELETE, id=d)
        still_there = await db.deployments.count_documents({"_id": ObjectId(d)})
        assert still_there == (MANAGES[case] is not None), case
        outcomes[case] = {**reads, **writes}

    invisible = {"org-member", "org-worker"}
    assert outcomes == {
        case: {
            **dict.fromkeys(
                ("deployment", "deployment.history", "project.deployments"),
                "NOT_FOUND" if case in invisible else None,
            ),
            **dict.fromkeys(
                ("create", "update", "setChampion", "setShadow", "rollback", "delete"), expected
            ),
        }
        for case, expected in MANAGES.items()
    }


# --- Tenancy --------------------------------------------------------------------------------


@dataclass
class Side:
    world: World
    versions: list[str]
    deployment: str

    @property
    def client(self) -> GraphQLClient:
        return self.world.client


async def _side(member, org: str) -> Side:
    world = await make_world(member, org=org)
    versions = await _versions(world.client, world.project, 3, name=f"{org} model")
    made = await world.client.data(
        CREATE,
        p=world.project,
        input={
            "name": f"{org} prod",
            "championVersionId": versions[0],
            "targetDatasetId": world.dataset,
        },
    )
    deployment = made["createDeployment"]["id"]
    await world.client.data(SET_CHAMPION, d=deployment, v=versions[1])
    return Side(world, versions, deployment)


@dataclass
class Tenants:
    a: Side
    b: Side
    dual_b: GraphQLClient  # a user owning both A and B, with its key limited to B

    @property
    def attackers(self) -> list[tuple[str, GraphQLClient]]:
        return [("b-owner", self.b.client), ("same-user-b-key", self.dual_b)]


@pytest.fixture
async def tenants(member) -> Tenants:
    a = await _side(member, "acme")
    b = await _side(member, "beta")
    await member("acme", "owner", email="dual@both.io")
    dual_b, _ = await member("beta", "owner", email="dual@both.io")
    return Tenants(a, b, dual_b)


FIELD_READS = {
    "deployment": "query($id: ID!) { deployment(id: $id) { id name } }",
    "deployment.champion": "query($id: ID!) { deployment(id: $id) { champion { id } } }",
    "deployment.shadow": "query($id: ID!) { deployment(id: $id) { shadow { id } } }",
    "deployment.targetDataset": "query($id: ID!) { deployment(id: $id) { targetDataset { id } } }",
    "deployment.history": "query($id: ID!) { deployment(id: $id) { history { nodes { role } } } }",
    "deployment.project": "query($id: ID!) { deployment(id: $id) { project { id } } }",
    "deployment.creator": "query($id: ID!) { deployment(id: $id) { creator { email } } }",
}


async def test_reading_org_a_deployments_with_an_org_b_key_is_not_found_like_a_missing_id(
    tenants,
):
    reads = {**FIELD_READS, "project.deployments": PROJECT_DEPLOYMENTS}
    for read, query in reads.items():
        is_project = read == "project.deployments"
        a_id = tenants.a.world.project if is_project else tenants.a.deployment
        key = "p" if is_project else "id"
        for name, attacker in tenants.attackers:
            body = await attacker.execute(query, **{key: a_id})
            assert body["data"] is None, (read, name)
            [error] = body["errors"]
            assert error["extensions"]["code"] == "NOT_FOUND", (read, name)
            missing = (await attacker.error(query, **{key: str(ObjectId())}))["message"]
            assert error["message"] == missing, (read, name)
            assert "acme" not in error["message"].lower()
            assert (await attacker.data(NODE, id=tenants.a.deployment))["node"] is None
        assert not (await tenants.a.client.execute(query, **{key: a_id})).get("errors"), read
    listed = await tenants.b.client.data(PROJECT_DEPLOYMENTS, p=tenants.b.world.project)
    assert listed["project"]["deployments"]["nodes"] == [
        {"id": tenants.b.deployment, "name": "beta prod"}
    ]


Variables = Callable[[Tenants], dict[str, Any]]


@dataclass
class ForeignWrite:
    query: str
    variables: Variables
    control_variables: Variables | None = None
    control_by_b: bool = False
    code: str = "NOT_FOUND"

    def control(self, t: Tenants) -> tuple[GraphQLClient, dict[str, Any]]:
        client = t.b.client if self.control_by_b else t.a.client
        return client, (self.control_variables or self.variables)(t)


def _b_create(**fields: Callable[[Tenants], Any]) -> Variables:
    return lambda t: {
        "p": t.b.world.project,
        "input": {
            "name": "planted",
            "championVersionId": t.b.versions[0],
            **{k: v(t) for k, v in fields.items()},
        },
    }


WRITES: dict[str, ForeignWrite] = {
    "createDeployment-in-a-project": ForeignWrite(
        CREATE,
        lambda t: {
            "p": t.a.world.project,
            "input": {"name": "planted", "championVersionId": t.a.versions[0]},
        },
    ),
    "createDeployment-b-project-a-champion": ForeignWrite(
        CREATE,
        _b_create(championVersionId=lambda t: t.a.versions[0]),
        control_variables=_b_create(),
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "createDeployment-b-project-a-shadow": ForeignWrite(
        CREATE,
        _b_create(shadowVersionId=lambda t: t.a.versions[1]),
        control_variables=_b_create(shadowVersionId=lambda t: t.b.versions[1]),
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "createDeployment-b-project-a-dataset": ForeignWrite(
        CREATE,
        _b_create(targetDatasetId=lambda t: t.a.world.dataset),
        control_variables=_b_create(targetDatasetId=lambda t: t.b.world.dataset),
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "updateDeployment": ForeignWrite(
        UPDATE, lambda t: {"id": t.a.deployment, "input": {"description": "pwned"}}
    ),
    "updateDeployment-b-deployment-a-dataset": ForeignWrite(
        UPDATE,
        lambda t: {"id": t.b.deployment, "input": {"targetDatasetId": t.a.world.dataset}},
        control_variables=lambda t: {"id": t.b.deployment, "input": {"targetDatasetId": None}},
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "setChampion": ForeignWrite(
        SET_CHAMPION, lambda t: {"d": t.a.deployment, "v": t.a.versions[2]}
    ),
    "setChampion-b-deployment-a-version": ForeignWrite(
        SET_CHAMPION,
        lambda t: {"d": t.b.deployment, "v": t.a.versions[2]},
        control_variables=lambda t: {"d": t.b.deployment, "v": t.b.versions[2]},
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "setShadow": ForeignWrite(SET_SHADOW, lambda t: {"d": t.a.deployment, "v": t.a.versions[2]}),
    "setShadow-b-deployment-a-version": ForeignWrite(
        SET_SHADOW,
        lambda t: {"d": t.b.deployment, "v": t.a.versions[2]},
        control_variables=lambda t: {"d": t.b.deployment, "v": t.b.versions[2]},
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "rollbackDeployment": ForeignWrite(ROLLBACK, lambda t: {"d": t.a.deployment}),
    "deleteDeployment": ForeignWrite(DELETE, lambda t: {"id": t.a.deployment}),
}


@pytest.mark.parametrize("write", list(WRITES))
async def test_writing_org_a_deployments_with_an_org_b_key_is_refused_and_changes_nothing(
    tenants, db, write
):
    mutation = WRITES[write]
    before = await snapshot(db)
    for name, attacker in tenants.attackers:
        error = await attacker.error(mutation.query, **mutation.variables(tenants))
        assert error["extensions"]["code"] == mutation.code, (name, error)
        assert "acme" not in error["message"].lower()
        assert await snapshot(db) == before, name

    client, variables = mutation.control(tenants)
    await client.data(mutation.query, **variables)
    assert await snapshot(db) != before


async def test_a_forged_org_b_deployment_naming_org_a_versions_shows_none_of_them(tenants, db):
    """B's own deployment, forged to name A's versions and dataset, still reads nothing of A."""
    await db.deployments.update_one(
        {"_id": ObjectId(tenants.b.deployment)},
        {
            "$set": {
                "championVersionId": ObjectId(tenants.a.versions[0]),
                "shadowVersionId": ObjectId(tenants.a.versions[1]),
                "targetDatasetId": ObjectId(tenants.a.world.dataset),
            }
        },
    )
    query = """query($id: ID!) { deployment(id: $id) {
      champion { id } shadow { id } targetDataset { id } } }"""
    for name, attacker in tenants.attackers:
        found = await attacker.data(query, id=tenants.b.deployment)
        assert found["deployment"] == {"champion": None, "shadow": None, "targetDataset": None}, (
            name
        )


DELETE_VERSION = "mutation($id: ID!) { deleteModelVersion(id: $id) }"
DELETE_MODEL = "mutation($id: ID!) { deleteModel(id: $id) }"


async def test_a_served_version_or_its_model_cannot_be_deleted(scene, db):
    v1, v2, _ = scene.versions
    made = await scene.deploy()
    await scene.client.data(SET_SHADOW, d=made["id"], v=v2)
    version = await db.model_versions.find_one({"_id": ObjectId(v1)})
    before = await snapshot(db)
    for mutation, target in (
        (DELETE_VERSION, v1),
        (DELETE_VERSION, v2),
        (DELETE_MODEL, str(version["modelId"])),
    ):
        error = await scene.client.error(mutation, id=target)
        assert error["extensions"]["code"] == "CONFLICT", mutation
        assert "serves" in error["message"]
    assert await snapshot(db) == before
    await scene.client.data(DELETE, id=made["id"])
    assert (await scene.client.data(DELETE_VERSION, id=v2))["deleteModelVersion"] is True


async def test_a_deployment_racing_its_versions_deletion_never_serves_a_deleted_version(scene, db):
    """Both at once: either the deletion wins and the deployment is refused, or the deployment
    wins and the deletion is CONFLICT — never a deployment serving a version that is gone."""
    fresh = await _versions(scene.client, scene.world.project, 4, name="racing")
    for round_, version in enumerate(fresh):
        given = {"name": f"race-{round_}", "championVersionId": version}
        created, deleted = await asyncio.gather(
            scene.client.execute(CREATE, p=scene.world.project, input=given),
            scene.client.execute(DELETE_VERSION, id=version),
        )
        served = await db.deployments.find_one({"championVersionId": ObjectId(version)})
        exists = await db.model_versions.find_one({"_id": ObjectId(version)})
        assert (served is None) or (exists is not None), (created, deleted)
        assert (created.get("errors") is None) != (deleted.get("errors") is None)
