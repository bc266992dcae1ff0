import pytest

from kwire.controllers.nodeipam import RangeFull, allocate, node_cidrs


def test_lowest_free_subnet():
    assert allocate("10.244.0.0/16", []) == "10.244.0.0/24"
    assert allocate("10.244.0.0/16", ["10.244.0.0/24", "10.244.2.0/24"]) == "10.244.1.0/24"


def test_released_subnet_is_reused_and_full_range_refused():
    assert allocate("10.244.0.0/23", ["10.244.1.0/24"]) == "10.244.0.0/24"
    with pytest.raises(RangeFull, match="no remaining CIDRs of size /24 in 10.244.0.0/23"):
        allocate("10.244.0.0/23", ["10.244.0.0/24", "10.244.1.0/24"])


def test_node_cidrs_reads_either_field():
    assert node_cidrs({"spec": {"podCIDR": "10.244.3.0/24"}}) == ["10.244.3.0/24"]
    assert node_cidrs({"spec": {"podCIDRs": ["10.244.4.0/24"]}}) == ["10.244.4.0/24"]
    assert node_cidrs({"spec": {}}) == []
