"""Loom's built-in functions, registered under `loom.functions` like any installed package's:
`echo` returns its input, `sleeper` waits while reporting progress, `fail` always fails."""

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from resolvers.functions import FunctionContext, LoomFunction


class EchoInput(BaseModel):
    model_config = ConfigDict(extra="allow")


async def _echo(data: EchoInput, context: FunctionContext) -> dict[str, Any]:
    context.log.info("echoing %d keys", len(data.model_extra or {}))
    return data.model_dump()


class SleeperInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(1.0, ge=0, le=3600)
    steps: int = Field(4, ge=1, le=1000)


async def _sleep(data: SleeperInput, context: FunctionContext) -> dict[str, Any]:
    for step in range(1, data.steps + 1):
        await asyncio.sleep(data.seconds / data.steps)
        await context.progress(step * 100 // data.steps, f"step {step} of {data.steps}")
    return {"slept": data.seconds}


class FailInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field("failed on purpose", max_length=1000)


async def _fail(data: FailInput, context: FunctionContext) -> None:
    context.log.warning("about to fail")
    raise RuntimeError(data.message)


echo = LoomFunction("Return the input as the output.", EchoInput, _echo)
sleeper = LoomFunction("Sleep `seconds`, reporting progress `steps` times.", SleeperInput, _sleep)
fail = LoomFunction("Fail with `message`.", FailInput, _fail)
