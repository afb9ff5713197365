"""Client of the Tiny ImageNet services: :class:`DatasetClient`, :class:`TrainerClient`, and the
``tin`` command line built on them (``tin --help``)."""

from tin_client.client import DatasetClient, TrainerClient
from tin_client.errors import ApiError

__all__ = ["ApiError", "DatasetClient", "TrainerClient"]
