"""``create_service_app``'s upload routers: behind the token like the others, not held to JSON,
with a body limit of their own, and declared in the OpenAPI document as what they answer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.testclient import TestClient
from pydantic import SecretStr

from jobkit.service import create_service_app
from jobkit.settings import ServiceSettings

TOKEN = "service-token"


def app_with_an_upload_route(data_root: Path):
    uploads = APIRouter(prefix="/v1/things")
    json_routes = APIRouter(prefix="/v1/things")

    @uploads.post("/{thing}/upload")
    def upload(thing: str, data: Annotated[UploadFile, File()]) -> dict:
        return {"thing": thing, "bytes": len(data.file.read())}

    @json_routes.post("/{thing}/note")
    async def note(thing: str, body: dict) -> dict:
        return {"thing": thing, "keys": sorted(body)}

    settings = ServiceSettings(data_root=data_root, max_body_bytes=4096, api_token=SecretStr(TOKEN))
    return create_service_app(
        settings=settings,
        get_settings=lambda: settings,
        title="things",
        summary="a test service",
        kind="sample",
        target="tests.jobkit.sample_jobs:succeed",
        routers=[json_routes],
        upload_routers=[uploads],
        upload_limit=lambda s: 10_000,
    )


def test_an_upload_route_takes_other_bodies_up_to_its_own_limit(tmp_path):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    raw = {**auth, "content-type": "application/octet-stream"}
    with TestClient(app_with_an_upload_route(tmp_path)) as client:

        def upload(size: int, headers=auth):
            files = {"data": ("d.bin", b"x" * size, "application/octet-stream")}
            return client.post("/v1/things/a/upload", files=files, headers=headers)

        taken = upload(8000)  # multipart, and more than max_body_bytes
        assert taken.status_code == 200 and taken.json() == {"thing": "a", "bytes": 8000}
        refused = upload(10_000)  # with the multipart framing, over the upload limit
        assert refused.status_code == 413 and "10,000 bytes" in refused.json()["detail"]
        assert upload(10, headers={}).status_code == 401
        # the JSON routes keep theirs: JSON only, max_body_bytes
        assert client.post("/v1/things/a/note", content=b"x" * 100, headers=raw).status_code == 415
        big = client.post("/v1/things/a/note", json={"k": "y" * 8000}, headers=auth)
        assert big.status_code == 413 and "4,096 bytes" in big.json()["detail"]
        assert client.post("/v1/things/a/note", json={"k": 1}, headers=auth).json()["keys"] == ["k"]


def test_the_openapi_document_says_what_each_kind_of_route_answers(tmp_path):
    with TestClient(app_with_an_upload_route(tmp_path)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    upload = paths["/v1/things/{thing}/upload"]["post"]["responses"]
    note = paths["/v1/things/{thing}/note"]["post"]["responses"]
    assert {"400", "401", "413", "422", "503"} <= set(upload)
    assert not {"415", "429", "507"} & set(upload)
    assert {"400", "401", "413", "415", "422", "429", "503", "507"} <= set(note)
