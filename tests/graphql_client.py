"""A small GraphQL client for tests: raw responses, or data with errors turned into failures."""

import json
from typing import Any

import httpx


class GraphQLError(AssertionError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @property
    def codes(self) -> list[str]:
        return [e.get("extensions", {}).get("code") for e in self.errors]


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient, key: str | None) -> None:
        self.http = http
        self.key = key

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def upload(
        self, query: str, files: dict[str, tuple[str, bytes, str]], **variables: Any
    ) -> dict[str, Any]:
        """A GraphQL multipart request: `files` maps variable names to (name, bytes, type)."""
        operations = {"query": query, "variables": {**variables, **dict.fromkeys(files)}}
        mapping = {str(i): [f"variables.{name}"] for i, name in enumerate(files)}
        parts = {str(i): content for i, content in enumerate(files.values())}
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        response = await self.http.post(
            "/graphql",
            data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
            files=parts,
            headers=headers,
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.execute(query, **variables)
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        return body["data"]

    async def error(self, query: str, **variables: Any) -> dict[str, Any]:
        """The single error a query must fail with."""
        body = await self.execute(query, **variables)
        errors = body.get("errors") or []
        assert len(errors) == 1, body
        return errors[0]

    async def code(self, query: str, **variables: Any) -> str:
        return (await self.error(query, **variables))["extensions"]["code"]
