"""What a trigger runs when it fires: its operation.

An operation is checked once, when the trigger is saved (`checked`), and turned into an
execution document each time the trigger fires (`execution_for`). The one kind today is
`function`: a function of a service in the trigger's own project, with a fixed input; the
function gets the resource and the event as its context. Webhooks will be a second kind with the
same two steps.
"""

from typing import Any, Literal

from bson import ObjectId
from pydantic import Field

from resolvers import functions
from resolvers.access import Access
from resolvers.errors import BadUserInput
from resolvers.executions import new_execution
from resolvers.inputs import Input, object_id, parse
from resolvers.services import get_service


class FunctionOperation(Input):
    type: Literal["function"] = "function"
    service_id: str
    function_name: str
    input: dict[str, Any] = Field(default_factory=dict)


class WebhookOperation(Input):
    type: Literal["webhook"]
    webhook_id: str


KINDS: dict[str, type[Input]] = {"function": FunctionOperation, "webhook": WebhookOperation}


async def checked(access: Access, project: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The operation as stored: its kind known, its service in the project, its function one
    the service has, its input one the function accepts (BAD_USER_INPUT otherwise)."""
    kind = data.get("type", "function")
    if kind not in KINDS:
        raise BadUserInput(
            f"operation.type must be one of {', '.join(KINDS)}, not {kind!r}",
            field="operation.type",
        )
    if kind == "webhook":
        return await _checked_webhook(access, project, parse(WebhookOperation, data, "operation"))
    operation = parse(FunctionOperation, data, "operation")
    service_id = object_id(operation.service_id, "operation.serviceId")
    service = await get_service(access, service_id)
    if service["projectId"] != project["_id"]:
        raise BadUserInput(
            "operation.serviceId names a service of another project", field="operation.serviceId"
        )
    if operation.function_name not in service["functions"]:
        raise BadUserInput(
            f"Service {service['name']!r} has no function {operation.function_name!r}",
            field="operation.functionName",
        )
    return {
        "type": kind,
        "serviceId": service_id,
        "functionName": operation.function_name,
        "input": functions.validate_input(operation.function_name, operation.input),
    }


async def _checked_webhook(
    access: Access, project: dict[str, Any], operation: WebhookOperation
) -> dict[str, Any]:
    webhook_id = object_id(operation.webhook_id, "operation.webhookId")
    webhook = await access.find_visible("webhooks", webhook_id)
    if webhook is None:
        raise BadUserInput("operation.webhookId names no webhook", field="operation.webhookId")
    if webhook["projectId"] != project["_id"]:
        raise BadUserInput(
            "operation.webhookId names a webhook of another project", field="operation.webhookId"
        )
    return {"type": "webhook", "webhookId": webhook_id}


def execution_for(
    trigger: dict[str, Any],
    service: dict[str, Any],
    resource: dict[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    """A new execution of the trigger's function, created on behalf of its creator."""
    operation = trigger["operation"]
    creator: ObjectId | None = trigger.get("creator")
    return new_execution(
        creator,
        service,
        operation["functionName"],
        operation["input"],
        resource,
        triggerId=trigger["_id"],
        **extra,
    )
