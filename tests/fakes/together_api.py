"""A fake together.ai API: models, hardware, endpoints (listed, read, and updated with
`PATCH /v1/endpoints/{id}`: started, stopped, renamed, scaled), files, batches, fine-tunes,
GPU clusters.

Shapes follow `shared/specs/together-openapi.yaml`: `/models` is a bare JSON array of
`ModelInfo`; `/hardware` and `/endpoints` are `{"object": "list", "data": [...]}` of
`HardwareWithStatus` and `ListEndpoint`; `/endpoints/{id}` is a `DedicatedEndpoint`
(the only one that names the endpoint's `hardware`). `/batches` is a bare array of `BatchJob`
(`POST` answers 201 with `BatchJobWithWarning`); `/files[/{id}]` are `FileList` and
`FileResponse`, `/files/{id}/content` the file's bytes as `text/plain`; `/fine-tunes` is a
`FinetuneTruncatedList`; `/compute/clusters` is `GPUClusters`. A bad key gets the spec's
status: 401 on `/models`, `/batches` (with the spec's `BatchErrorResponse`, `{"error": "..."}`),
`/files`, `/fine-tunes` and `/compute`; 403 on `/hardware` and `/endpoints`.

A `PATCH /endpoints/{id}` body is checked field for field against the spec's request schema
(`display_name` string, `state` STARTED or STOPPED, `autoscaling` {min_replicas, max_replicas}
integers, `inactive_timeout` integer or null; an unknown field or a wrong type is a 400 in the
spec's ErrorData); it changes the endpoint and answers the `DedicatedEndpoint`. A stop takes
effect at once (STOPPED; the real API passes through STOPPING), so a later list shows it stopped.

Uploads: the spec's `POST /files/upload` (multipart with the file) works, and so does the flow
the `together` SDK really uses, which the spec does not describe: `POST /files` (form fields,
no file) answers 302 with `Location` (a storage URL, here this fake's `/_storage/{id}`, which
like a presigned URL needs no key) and `X-Together-File-Id`; the SDK PUTs the bytes there, then
`POST /files/{id}/preprocess` answers the `FileResponse`. A created batch stays IN_PROGRESS
until the test calls `complete_batch()`, which answers each request line of its input file
(usage from `sample_usage()`) in an output file, the way a batch output file is written.

Data is test-settable through the `models`, `hardware`, `endpoints`, `batches`, `fine_tunes`,
`clusters` and `files` attributes. Items are the dataclasses below, or plain dicts served
verbatim (to serve off-spec data). The sample defaults are made-up figures, not Together's
real prices.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

from tests.fakes.http_server import FakeHTTPServer, RecordedRequest, Response, api_error

__all__ = [
    "BatchJob",
    "Endpoint",
    "FakeTogether",
    "FineTune",
    "GpuCluster",
    "Hardware",
    "SAMPLE_ENDPOINTS",
    "SAMPLE_HARDWARE",
    "SAMPLE_MODELS",
    "StoredFile",
    "TogetherModel",
    "batch_output_line",
    "sample_usage",
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


def _iso(moment: datetime | str | None) -> str | None:
    if moment is None or isinstance(moment, str):
        return moment
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class StoredFile:
    """An uploaded or generated file: its bytes in memory, or a file on disk (large downloads)."""

    id: str
    filename: str
    purpose: str
    content: bytes = b""
    path: Path | None = None
    created_at: int = 1_700_000_000
    file_type: str = "jsonl"

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.content)

    def to_json(self) -> dict[str, Any]:
        """A `FileResponse`."""
        return {"id": self.id, "object": "file", "created_at": self.created_at, "filename": self.filename,
                "bytes": self.size, "purpose": self.purpose, "Processed": True, "FileType": self.file_type}


@dataclass
class BatchJob:
    """A `BatchJob`; `completed_at` and the file ids are served only when set."""

    id: str
    status: str = "COMPLETED"
    input_file_id: str = "file-input"
    output_file_id: str | None = None
    error_file_id: str | None = None
    model_id: str | None = None
    endpoint: str = "/v1/chat/completions"
    user_id: str = "user_devuser"
    created_at: datetime | str = "2026-11-19T08:00:00Z"
    completed_at: datetime | str | None = None
    job_deadline: datetime | str | None = None
    progress: float = 100.0
    file_size_bytes: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        job: dict[str, Any] = {
            "id": self.id, "user_id": self.user_id, "input_file_id": self.input_file_id,
            "file_size_bytes": self.file_size_bytes, "status": self.status, "created_at": _iso(self.created_at),
            "endpoint": self.endpoint, "progress": self.progress,
        }
        optional = {"job_deadline": _iso(self.job_deadline), "model_id": self.model_id,
                    "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                    "error": self.error, "completed_at": _iso(self.completed_at)}
        job.update({k: v for k, v in optional.items() if v is not None})
        return job


@dataclass(frozen=True)
class FineTune:
    """A `FinetuneResponseTruncated`; `total_price` is served as given (nano-dollars, as the SDK reads it)."""

    id: str
    model: str = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    status: str = "completed"
    total_price: int | None = 0
    created_at: datetime | str = "2026-11-18T09:00:00Z"
    updated_at: datetime | str = "2026-11-18T12:00:00Z"
    completed_event_at: datetime | str | None = None  # a `job_complete` event at this time
    token_count: int = 1_000_000
    n_epochs: int = 3
    training_file: str = "file-train"
    model_output_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        events = []
        if self.completed_event_at is not None:
            events.append({
                "object": "fine-tune-event", "created_at": _iso(self.completed_event_at), "level": "info",
                "message": "Job finished", "type": "job_complete", "param_count": 0, "token_count": 0,
                "total_steps": 0, "wandb_url": "", "step": 0, "checkpoint_path": "", "model_path": "",
                "training_offset": 0, "hash": "",
            })
        job: dict[str, Any] = {
            "id": self.id, "status": self.status, "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at), "user_id": "user_devuser", "owner_address": "dev@example.com",
            "token_count": self.token_count, "events": events, "model": self.model,
            "model_output_name": self.model_output_name or f"devuser/{self.model.rpartition('/')[2]}-{self.id[-6:]}",
            "n_epochs": self.n_epochs, "training_file": self.training_file,
        }
        if self.total_price is not None:
            job["total_price"] = self.total_price
        return job


@dataclass(frozen=True)
class GpuCluster:
    """A `GPUClusterInfo` (`created_at` served only when set)."""

    cluster_id: str
    gpu_type: str = "H100_SXM"
    num_gpus: int = 8
    status: str = "Ready"
    cluster_name: str | None = None
    region: str = "us-central-8"
    cluster_type: str = "KUBERNETES"
    created_at: datetime | str | None = None

    def to_json(self) -> dict[str, Any]:
        cluster: dict[str, Any] = {
            "cluster_id": self.cluster_id, "cluster_type": self.cluster_type, "region": self.region,
            "gpu_type": self.gpu_type, "cluster_name": self.cluster_name or self.cluster_id, "cuda_version": "12.6",
            "nvidia_driver_version": "560", "volumes": [], "status": self.status,
            "control_plane_nodes": [], "gpu_worker_nodes": [
                {"node_id": f"{self.cluster_id}-n{i}", "node_name": f"gpu-{i}", "status": "Ready",
                 "host_name": f"gpu-{i}.internal", "num_cpu_cores": 96, "num_gpus": 8, "memory_gib": 1024,
                 "networks": ["ib0"]}
                for i in range(max(1, self.num_gpus // 8))
            ],
            "kube_config": "", "num_gpus": self.num_gpus,
        }
        if self.created_at is not None:
            cluster["created_at"] = _iso(self.created_at)
        return cluster


def sample_usage(body: dict[str, Any]) -> tuple[int, int]:
    """The fake's (prompt_tokens, completion_tokens) for a request body: fixed by its text."""
    text = json.dumps(body.get("messages") or body.get("prompt") or "", sort_keys=True)
    prompt = 8 + len(text) // 4
    completion = min(int(body.get("max_tokens") or 256), 16 + len(text) % 97)
    return prompt, completion


def batch_output_line(custom_id: str, model: str, prompt: int, completion: int, created: int,
                      cached: int | None = None) -> dict[str, Any]:
    """One line of a batch output file: the request's id and the completion it got."""
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {
        "id": f"batch_req_{hashlib.sha1(custom_id.encode()).hexdigest()[:20]}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": hashlib.sha1(f"r{custom_id}".encode()).hexdigest()[:24],
            "body": {
                "id": f"chatcmpl-{hashlib.sha1(f'c{custom_id}'.encode()).hexdigest()[:16]}",
                "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "ok"}}],
                "usage": usage,
            },
        },
        "error": None,
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
        batches: Iterable[BatchJob | dict[str, Any]] = (),
        fine_tunes: Iterable[FineTune | dict[str, Any]] = (),
        clusters: Iterable[GpuCluster | dict[str, Any]] = (),
        account: str = "devuser",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.account = account
        self.batches: list[BatchJob | dict[str, Any]] = list(batches)
        self.fine_tunes: list[FineTune | dict[str, Any]] = list(fine_tunes)
        self.clusters: list[GpuCluster | dict[str, Any]] = list(clusters)
        self.files: dict[str, StoredFile] = {}
        self._ids = itertools.count(1)
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

    # -- test helpers --------------------------------------------------------------------

    def add_file(self, content: bytes | Path, *, purpose: str = "batch-generated",
                 filename: str = "output.jsonl") -> StoredFile:
        """Store a file (bytes, or a file on disk streamed when downloaded) and return it."""
        stored = StoredFile(self._new_id("file"), filename, purpose, created_at=int(time.time()),
                            **({"path": content} if isinstance(content, Path) else {"content": content}))
        with self._lock:
            self.files[stored.id] = stored
        return stored

    def complete_batch(self, batch_id: str, *, at: datetime, extra_lines: Iterable[bytes] = ()) -> BatchJob:
        """Run a created batch: answer each request line of its input file in an output file
        (`extra_lines`, e.g. broken ones, appended), and mark it COMPLETED at `at`."""
        with self._lock:
            index, job = next((i, b) for i, b in enumerate(self.batches)
                              if isinstance(b, BatchJob) and b.id == batch_id)
            lines = []
            for raw in self.files[job.input_file_id].content.splitlines():
                if not raw.strip():
                    continue
                request = json.loads(raw)
                body = request.get("body") or {}
                prompt, completion = sample_usage(body)
                model = body.get("model") or job.model_id or "unknown"
                lines.append(json.dumps(batch_output_line(request["custom_id"], model, prompt, completion,
                                                          int(at.timestamp()))).encode())
            output = self.add_file(b"\n".join([*lines, *extra_lines]) + b"\n", filename=f"{batch_id}-output.jsonl")
            done = replace(job, status="COMPLETED", output_file_id=output.id, completed_at=at, progress=100.0)
            self.batches[index] = done
            return done

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{uuid.UUID(int=next(self._ids))}"

    # -- serving ----------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        if request.path.startswith("/_storage/"):
            return self._store_upload(request)
        if request.bearer_token != self.api_key:
            return self._unauthorized(request.path)
        if request.method == "PATCH" and request.path.startswith("/v1/endpoints/"):
            return self._update_endpoint(request.path.removeprefix("/v1/endpoints/"), request.body)
        if request.method == "POST" and request.path == "/v1/batches":
            return self._create_batch(request)
        if request.method == "POST" and request.path == "/v1/files":
            return self._start_upload(request)
        if request.method == "POST" and request.path == "/v1/files/upload":
            return self._upload(request)
        if request.method == "POST" and request.path.startswith("/v1/files/") and request.path.endswith("/preprocess"):
            return self._preprocess(request.path.removeprefix("/v1/files/").removesuffix("/preprocess"))
        if request.method != "GET":
            return Response.json(api_error(405, None, f"Method {request.method} not allowed."), 405)
        if request.path == "/v1/batches":
            return Response.json([b.to_json() if isinstance(b, BatchJob) else b for b in self.batches])
        if request.path.startswith("/v1/batches/"):
            return self._batch(request.path.removeprefix("/v1/batches/"))
        if request.path == "/v1/files":
            return Response.json({"data": [f.to_json() for f in self.files.values()]})
        if request.path.startswith("/v1/files/"):
            return self._file(request.path.removeprefix("/v1/files/"))
        if request.path == "/v1/fine-tunes":
            return Response.json({"data": [f.to_json() if isinstance(f, FineTune) else f for f in self.fine_tunes]})
        if request.path == "/v1/compute/clusters":
            return Response.json({"clusters": [c.to_json() if isinstance(c, GpuCluster) else c
                                               for c in self.clusters]})
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

    def _unauthorized(self, path: str) -> Response:
        message = "Invalid API key provided. You can find your API key in your account settings."
        if path.startswith("/v1/batches"):
            return Response.json({"error": message}, 401)  # BatchErrorResponse
        status = 403 if path.startswith(("/v1/hardware", "/v1/endpoints")) else 401
        return Response.json(api_error(status, "invalid_api_key", message), status)

    def _batch(self, batch_id: str) -> Response:
        for b in self.batches:
            if _field(b, "id") == batch_id:
                return Response.json(b.to_json() if isinstance(b, BatchJob) else b)
        return Response.json({"error": f"batch job {batch_id} not found"}, 404)

    def _create_batch(self, request: RecordedRequest) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response.json({"error": "the body is not JSON"}, 400)
        if not isinstance(body, dict) or not body.get("endpoint") or not body.get("input_file_id"):
            return Response.json({"error": "endpoint and input_file_id are required"}, 400)
        stored = self.files.get(body["input_file_id"])
        if stored is None:
            return Response.json({"error": f"input file {body['input_file_id']} not found"}, 400)
        job = BatchJob(str(uuid.uuid4()), status="IN_PROGRESS", input_file_id=stored.id, model_id=body.get("model_id"),
                       endpoint=body["endpoint"], created_at=datetime.now(timezone.utc), progress=0.0,
                       file_size_bytes=stored.size)
        self.batches.append(job)
        return Response.json({"job": job.to_json()}, 201)

    def _form(self, request: RecordedRequest) -> dict[str, bytes]:
        """The fields of a multipart/form-data body (empty if it is not one)."""
        content_type = request.header("Content-Type") or ""
        if not content_type.startswith("multipart/form-data"):
            return {}
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n"
                                                      + request.body)
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                fields[str(name)] = part.get_payload(decode=True) or b""
        return fields

    def _upload(self, request: RecordedRequest) -> Response:
        """The spec's `POST /files/upload`: purpose, file_name and the file in one multipart body."""
        form = self._form(request)
        if not {"purpose", "file_name", "file"} <= form.keys():
            return Response.json(api_error(400, None, "purpose, file_name and file are required"), 400)
        stored = self.add_file(form["file"], purpose=form["purpose"].decode(), filename=form["file_name"].decode())
        return Response.json(stored.to_json())

    def _start_upload(self, request: RecordedRequest) -> Response:
        """The SDK's `POST /files`: answer with where to PUT the bytes."""
        form = self._form(request)
        if not {"purpose", "file_name"} <= form.keys():
            return Response.json(api_error(400, None, "purpose and file_name are required"), 400)
        stored = self.add_file(b"", purpose=form["purpose"].decode(), filename=form["file_name"].decode())
        return Response(302, b"", {"Location": f"{self.origin}/_storage/{stored.id}?signature=fake",
                                   "X-Together-File-Id": stored.id})

    def _store_upload(self, request: RecordedRequest) -> Response:
        stored = self.files.get(request.path.removeprefix("/_storage/"))
        if request.method != "PUT" or stored is None or request.query_value("signature") != "fake":
            return Response.text("no such upload", 403)
        stored.content = request.body
        return Response.text("")

    def _preprocess(self, file_id: str) -> Response:
        stored = self.files.get(file_id)
        if stored is None:
            return Response.json(api_error(404, None, f"File {file_id} not found"), 404)
        return Response.json(stored.to_json())

    def _file(self, rest: str) -> Response:
        file_id, _, tail = rest.partition("/")
        stored = self.files.get(file_id)
        if stored is None or tail not in ("", "content"):
            return Response.json(api_error(404, None, f"File {file_id} not found"), 404)
        if not tail:
            return Response.json(stored.to_json())
        if stored.path is not None:
            return Response.file(stored.path, "text/plain; charset=utf-8")
        return Response(200, stored.content, {"Content-Type": "text/plain; charset=utf-8"})

    def _endpoint(self, endpoint_id: str) -> Response:
        for e in self.endpoints:
            if _field(e, "id") == endpoint_id:
                return Response.json(e.detail_json() if isinstance(e, Endpoint) else e)
        return Response.json(api_error(404, None, f"Endpoint {endpoint_id} not found"), 404)

    def _update_endpoint(self, endpoint_id: str, body: bytes) -> Response:
        try:
            changes = json.loads(body)
        except ValueError:
            return Response.json(api_error(400, None, "Request body must be JSON."), 400)
        problem = _update_problem(changes)
        if problem:
            return Response.json(api_error(400, None, problem), 400)
        for index, e in enumerate(self.endpoints):
            if _field(e, "id") != endpoint_id:
                continue
            if isinstance(e, dict):
                e.update({k: v for k, v in changes.items() if k in ("display_name", "state")})
                return Response.json(e)
            updated = replace(
                e,
                state=changes.get("state", e.state),
                display_name=changes.get("display_name", e.display_name),
                min_replicas=(changes.get("autoscaling") or {}).get("min_replicas", e.min_replicas),
                max_replicas=(changes.get("autoscaling") or {}).get("max_replicas", e.max_replicas),
            )
            self.endpoints[index] = updated
            return Response.json(updated.detail_json())
        return Response.json(api_error(404, None, f"Endpoint {endpoint_id} not found"), 404)


def _update_problem(changes: Any) -> str | None:
    """What is wrong with a PATCH body by the spec's request schema, or None."""
    if not isinstance(changes, dict):
        return "Request body must be a JSON object."
    for key, value in changes.items():
        if key == "display_name":
            ok = isinstance(value, str)
        elif key == "state":
            ok = value in ("STARTED", "STOPPED")
        elif key == "autoscaling":
            ok = (isinstance(value, dict) and set(value) == {"min_replicas", "max_replicas"}
                  and all(type(v) is int for v in value.values()))
        elif key == "inactive_timeout":
            ok = value is None or type(value) is int
        else:
            return f"Unknown field: {key}"
        if not ok:
            return f"Invalid value for {key}"
    return None


def _field(item: Any, name: str, default: Any = None) -> Any:
    """An attribute of a dataclass item, or a key of a dict item."""
    return item.get(name, default) if isinstance(item, dict) else getattr(item, name, default)
