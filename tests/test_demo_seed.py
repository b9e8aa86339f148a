"""`loom dev --seed-demo`: the demo organization, and one key for it across restarts."""

from gateway import cli
from gateway.bootstrap import DEMO_PROJECT, create_key, seed_demo
from resolvers.access import OrgRole
from resolvers.api_keys import authenticate
from resolvers.timestamps import now


async def test_each_start_shows_the_same_demo_key_kept_in_the_dev_home(settings, db, tmp_path):
    settings = settings.model_copy(update={"home": tmp_path})
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "demo-key").write_text("a stale key, readable by all\n")
    (tmp_path / "dev" / "demo-key").chmod(0o644)
    first, doc = await cli._seed_demo(settings)
    again, _ = await cli._seed_demo(settings)
    assert again == first
    saved = tmp_path / "dev" / "demo-key"
    assert saved.read_text().strip() == first
    assert saved.stat().st_mode & 0o777 == 0o600
    access, _ = await authenticate(db, first)
    assert access.org_roles == {doc["orgId"]: OrgRole.OWNER}
    assert await db.projects.count_documents({"name": DEMO_PROJECT}) == 1
    assert await db.api_keys.count_documents({}) == 1


async def test_a_revoked_or_foreign_saved_key_is_replaced_by_a_fresh_demo_key(db):
    revoked, doc = await seed_demo(db)
    await db.api_keys.update_one({"_id": doc["_id"]}, {"$set": {"revokedAt": now()}})
    fresh, _ = await seed_demo(db, revoked)
    assert fresh != revoked
    foreign, _ = await create_key(db, "Elsewhere", OrgRole.OWNER, "someone@else.io", "cli")
    other, other_doc = await seed_demo(db, foreign)
    assert other not in (foreign, fresh)
    access, _ = await authenticate(db, other)
    assert set(access.org_roles) == {other_doc["orgId"]}
    assert other_doc["orgId"] == doc["orgId"]
