"""``python -m dataset_service``: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

import uvicorn

from dataset_service.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run("dataset_service.main:app", host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
