"""Finding paths are built from the model's own field names: a name the model lacks is refused."""

from __future__ import annotations

import pytest

from aifactory.model import field_path


def test_paths_name_fields_and_indexes_of_the_model():
    assert field_path("pools", 0, "sku") == "pools[0].sku"
    assert field_path("storage", "object_store", "buckets", 1, "replication", "endpoint") == (
        "storage.object_store.buckets[1].replication.endpoint"
    )
    assert field_path("jurisdiction", "in_country", "networks", 3) == "jurisdiction.in_country.networks[3]"


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        (("gpu_stack", "drivr"), "gpu_stack has no field 'drivr'"),
        (("pools", "sku"), "pools has no field 'sku'"),  # a list needs its index first
        (("gpu_stack", 0), "gpu_stack is not a list"),
        (("network", "dns", 0, "country"), "network.dns[0] has no field 'country'"),  # an address has no fields
    ],
)
def test_a_path_the_model_does_not_have_is_refused(parts, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        field_path(*parts)
