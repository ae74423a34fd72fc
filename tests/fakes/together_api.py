"""A fake together.ai API: `GET /v1/models`, `/v1/hardware`, `/v1/endpoints[/{id}]`.

Shapes follow `shared/specs/together-openapi.yaml`: `/models` is a bare JSON array of
`ModelInfo`; `/hardware` and `/endpoints` are `{"object": "list", "data": [...]}` of
`HardwareWithStatus` and `ListEndpoint`; `/endpoints/{id}` is a `DedicatedEndpoint`
(the only one that names the endpoint's `hardware`). A bad key gets the spec's status:
401 on `/models`, 403 on `/hardware` and `/endpoints`.

Data is test-settable through the `models`, `hardware` and `endpoints` attributes. Items
are the dataclasses below, or plain dicts served verbatim (to serve off-spec data).
The sample defaults are made-up figures, not Together's real prices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.fakes.http_server import FakeHTTPServer, RecordedRequest, Response, api_error

__all__ = [
    "Endpoint",
    "FakeTogether",
    "Hardware",
    "SAMPLE_ENDPOINTS",
    "SAMPLE_HARDWARE",
    "SAMPLE_MODELS",
    "TogetherModel",
]

Number = int | float | Decimal


@dataclass(frozen=True)
class TogetherModel:
    """A `ModelInfo`; `input`/`output` are USD per 1M tokens.

    `dedicated` is the fake's own flag for the `?dedicated=true` filter; it is not served.
    """

    id: str
    input: Number = 0
    output: Number = 0
    type: str = "chat"
    created: int = 1_700_000_000
    display_name: str | None = None
    organization: str | None = None
    context_length: int | None = None
    license: str | None = None
    link: str | None = None
    hourly: Number = 0
    base: Number = 0
    finetune: Number = 0
    dedicated: bool = False

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {"id": self.id, "object": "model", "created": self.created, "type": self.type}
        for key in ("display_name", "organization", "link", "license", "context_length"):
            if getattr(self, key) is not None:
                info[key] = getattr(self, key)
        info["pricing"] = {
            "hourly": self.hourly,
            "input": self.input,
            "output": self.output,
            "base": self.base,
            "finetune": self.finetune,
        }
        return info


@dataclass(frozen=True)
class Hardware:
    """A `HardwareWithStatus`: a GPU configuration and its price in cents per minute of uptime.

    `availability` is served only when the query names a `model`. `models` is the fake's
    own compatibility list for that filter (None: compatible with every model).
    """

    id: str
    cents_per_minute: Number
    gpu_type: str = "h100-80gb"
    gpu_link: str = "sxm"
    gpu_memory: Number = 80
    gpu_count: int = 1
    updated_at: str = "2025-01-01T00:00:00Z"
    availability: str = "available"
    models: tuple[str, ...] | None = None

    def to_json(self, *, with_availability: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "object": "hardware",
            "id": self.id,
            "pricing": {"cents_per_minute": self.cents_per_minute},
            "specs": {
                "gpu_type": self.gpu_type,
                "gpu_link": self.gpu_link,
                "gpu_memory": self.gpu_memory,
                "gpu_count": self.gpu_count,
            },
            "updated_at": self.updated_at,
        }
        if with_availability:
            item["availability"] = {"status": self.availability}
        return item


@dataclass(frozen=True)
class Endpoint:
    """An endpoint, served as `ListEndpoint` in lists and `DedicatedEndpoint` by id.

    `usage_type` is the fake's own field for the `?usage_type=` filter; it is not served.
    """

    id: str
    model: str
    hardware: str | None = None
    state: str = "STARTED"
    type: str = "dedicated"
    owner: str = "devuser"
    name: str | None = None
    display_name: str | None = None
    created_at: str | datetime = "2025-02-04T10:43:55.405Z"
    min_replicas: int = 1
    max_replicas: int = 1
    usage_type: str = "on-demand"

    def list_json(self) -> dict[str, Any]:
        return {
            "object": "endpoint",
            "id": self.id,
            "name": self.name or f"{self.owner}/{self.model}-{self.id[-8:]}",
            "model": self.model,
            "type": self.type,
            "owner": self.owner,
            "state": self.state,
            "created_at": self.created_at,
        }

    def detail_json(self) -> dict[str, Any]:
        listed = self.list_json()
        return {
            **listed,
            "display_name": self.display_name or listed["name"],
            "hardware": self.hardware,
            "autoscaling": {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas},
        }


SAMPLE_MODELS: tuple[TogetherModel, ...] = (
    TogetherModel(
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        input=Decimal("0.88"),
        output=Decimal("0.88"),
        display_name="Llama 3.3 70B Instruct Turbo",
        organization="Meta",
        context_length=131072,
    ),
    TogetherModel(
        "deepseek-ai/DeepSeek-V3",
        input=Decimal("1.25"),
        output=Decimal("1.25"),
        display_name="DeepSeek V3",
        organization="DeepSeek",
        context_length=131072,
        dedicated=True,
    ),
    TogetherModel(
        "BAAI/bge-large-en-v1.5",
        input=Decimal("0.02"),
        output=0,
        type="embedding",
        display_name="BGE Large EN v1.5",
        organization="BAAI",
        context_length=512,
    ),
)
SAMPLE_HARDWARE: tuple[Hardware, ...] = (
    Hardware("1x_nvidia_h100_80gb_sxm", cents_per_minute=Decimal("5.58")),
    Hardware(
        "8x_nvidia_h200_140gb_sxm",
        cents_per_minute=Decimal("66.67"),
        gpu_type="h200-140gb",
        gpu_memory=140,
        gpu_count=8,
        availability="insufficient",
    ),
)
SAMPLE_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "endpoint-d23901de-ef8f-44bf-b3e7-de9c1ca8f2d7",
        model="deepseek-ai/DeepSeek-V3",
        hardware="8x_nvidia_h200_140gb_sxm",
        state="STARTED",
    ),
    Endpoint(
        "endpoint-5c0c20db-62fe-4f41-8ffc-d9e4ea1a264e",
        model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
        type="serverless",
        owner="together",
        name="meta-llama/Llama-3.3-70B-Instruct-Turbo",
        created_at="2024-02-28T21:34:35.444Z",
    ),
)


class FakeTogether(FakeHTTPServer):
    """Fake together.ai API. `url` is the API base (`http://127.0.0.1:PORT/v1`).

    `api_key`: the bearer token accepted. `models`, `hardware`, `endpoints`: what the
    API lists (None: the samples above); `account`: the owner `?mine=true` selects.
    """

    def __init__(
        self,
        *,
        api_key: str = "together-test-key",
        models: Iterable[TogetherModel | dict[str, Any]] | None = None,
        hardware: Iterable[Hardware | dict[str, Any]] | None = None,
        endpoints: Iterable[Endpoint | dict[str, Any]] | None = None,
        account: str = "devuser",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.account = account
        self.models: list[TogetherModel | dict[str, Any]] = list(
            SAMPLE_MODELS if models is None else models
        )
        self.hardware: list[Hardware | dict[str, Any]] = list(
            SAMPLE_HARDWARE if hardware is None else hardware
        )
        self.endpoints: list[Endpoint | dict[str, Any]] = list(
            SAMPLE_ENDPOINTS if endpoints is None else endpoints
        )

    @property
    def url(self) -> str:
        """The API base URL, `http://127.0.0.1:PORT/v1`."""
        return f"{self.origin}/v1"

    def handle(self, request: RecordedRequest) -> Response:
        if request.bearer_token != self.api_key:
            status = 401 if request.path.startswith("/v1/models") else 403
            message = "Invalid API key provided. You can find your API key in your account settings."
            return Response.json(api_error(status, "invalid_api_key", message), status)
        if request.method != "GET":
            return Response.json(api_error(405, None, f"Method {request.method} not allowed."), 405)
        if request.path == "/v1/models":
            return Response.json(self._models(request))
        if request.path == "/v1/hardware":
            return Response.json({"object": "list", "data": self._hardware(request)})
        if request.path == "/v1/endpoints":
            return Response.json({"object": "list", "data": self._endpoints(request)})
        if request.path.startswith("/v1/endpoints/"):
            return self._endpoint(request.path.removeprefix("/v1/endpoints/"))
        return Response.json(api_error(404, None, f"Not found: {request.path}"), 404)

    def _models(self, request: RecordedRequest) -> list[dict[str, Any]]:
        dedicated_only = (request.query_value("dedicated") or "").lower() == "true"
        return [
            m.to_json() if isinstance(m, TogetherModel) else m
            for m in self.models
            if not dedicated_only or _field(m, "dedicated", False)
        ]

    def _hardware(self, request: RecordedRequest) -> list[dict[str, Any]]:
        model = request.query_value("model")
        served = []
        for item in self.hardware:
            if isinstance(item, dict):
                served.append(item)
            elif model is None:
                served.append(item.to_json(with_availability=False))
            elif item.models is None or model in item.models:
                served.append(item.to_json(with_availability=True))
        return served

    def _endpoints(self, request: RecordedRequest) -> list[dict[str, Any]]:
        wanted_type = request.query_value("type")
        usage_type = request.query_value("usage_type")
        mine = (request.query_value("mine") or "").lower() == "true"
        return [
            e.list_json() if isinstance(e, Endpoint) else e
            for e in self.endpoints
            if (wanted_type is None or _field(e, "type") == wanted_type)
            and (usage_type is None or _field(e, "usage_type", "on-demand") == usage_type)
            and (not mine or _field(e, "owner") == self.account)
        ]

    def _endpoint(self, endpoint_id: str) -> Response:
        for e in self.endpoints:
            if _field(e, "id") == endpoint_id:
                return Response.json(e.detail_json() if isinstance(e, Endpoint) else e)
        return Response.json(api_error(404, None, f"Endpoint {endpoint_id} not found"), 404)


def _field(item: Any, name: str, default: Any = None) -> Any:
    """An attribute of a dataclass item, or a key of a dict item."""
    return item.get(name, default) if isinstance(item, dict) else getattr(item, name, default)
