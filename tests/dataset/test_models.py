import pytest
from pydantic import ValidationError

from dataset_service.models import PrepareRequest, SyntheticSource, UrlSource, ZipSource
from dataset_service.settings import OFFICIAL_MD5, OFFICIAL_URL


def test_defaults_download_the_official_archive():
    request = PrepareRequest()
    assert request.name == "tiny-imagenet-200"
    assert isinstance(request.source, UrlSource)
    assert str(request.source.url) == OFFICIAL_URL
    assert request.source.md5 == OFFICIAL_MD5
    assert request.shards is None and request.shuffle_seed == 0 and not request.skip_bad_images


def test_source_is_chosen_by_kind():
    request = PrepareRequest.model_validate({"source": {"kind": "zip", "path": "raw/a.zip"}})
    assert isinstance(request.source, ZipSource)
    request = PrepareRequest.model_validate({"source": {"kind": "synthetic", "classes": 3}})
    assert isinstance(request.source, SyntheticSource) and request.source.classes == 3


def test_json_round_trip_is_exact():
    request = PrepareRequest.model_validate(
        {"name": "t", "source": {"kind": "synthetic"}, "shards": {"train": 4}}
    )
    assert PrepareRequest.model_validate(request.model_dump(mode="json")) == request


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": "-x"}, "name"),
        ({"shards": {"train": 0}}, "shards"),
        ({"shards": {"extra": 2}}, "shards"),
        ({"unknown": 1}, "unknown"),
        ({"source": {"kind": "ftp"}}, "source"),
        ({"source": {"kind": "url", "url": "not a url"}}, "source"),
        ({"source": {"kind": "url", "md5": "xyz"}}, "source"),
        ({"source": {"kind": "zip"}}, "source"),
        ({"source": {"kind": "synthetic", "classes": 0}}, "source"),
        ({"shuffle_seed": -1}, "shuffle_seed"),
    ],
)
def test_invalid_fields_are_named(body, field):
    with pytest.raises(ValidationError) as info:
        PrepareRequest.model_validate(body)
    assert info.value.errors()[0]["loc"][0] == field
