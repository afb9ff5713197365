"""``python -m trainer_service``: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

import uvicorn

from trainer_service.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run("trainer_service.main:app", host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
