"""Dollars: GPU hours, storage by tier and the vector index."""

from __future__ import annotations

import pytest
from support import make_profile

from sim.base.profile import load_profile
from sim.results.cost import GB, HOURS_PER_MONTH, run_cost, storage_usd

A10G = load_profile("sdxl-a10g")


def test_gpu_hours_busy_and_provisioned():
    c = run_cost(A10G, gpus=4, duration_s=7200.0, gpu_busy_s=3600.0 * 5)
    assert c.gpu_hours_provisioned == pytest.approx(8.0)
    assert c.gpu_hours_busy == pytest.approx(5.0)
    assert c.gpu_provisioned_usd == pytest.approx(8 * 1.006)
    assert c.gpu_busy_usd == pytest.approx(5 * 1.006)
    assert c.storage_usd == 0.0 and c.index_usd == 0.0
    assert c.total_usd == pytest.approx(5 * 1.006)
    assert c.total_provisioned_usd == pytest.approx(8 * 1.006)


def test_storage_is_billed_per_gb_month():
    month_s = HOURS_PER_MONTH * 3600
    # One GiB in EFS ($0.30/GB-month) for a month; S3 for half a month.
    assert storage_usd(A10G, "efs", GB, month_s) == pytest.approx(0.30)
    assert storage_usd(A10G, "s3", GB, month_s / 2) == pytest.approx(0.023 / 2)
    assert storage_usd(A10G, None, GB, month_s) == pytest.approx(0.30)  # the profile's default tier
    assert storage_usd(A10G, "efs", 0.0, month_s) == 0.0


def test_a_hierarchy_bills_each_tier_for_what_it_holds():
    month_s = HOURS_PER_MONTH * 3600
    profile = make_profile(tiers={"nvme": {"capacity_bytes": float(GB)}})
    # 3 GiB: the first in NVMe at $0.08, the other two in EFS at $0.30.
    assert storage_usd(profile, "nvme,efs", 3 * GB, month_s) == pytest.approx(0.08 + 2 * 0.30)
    # Host memory is free but bounded (64 GB here): small caches cost nothing.
    assert storage_usd(profile, "host,efs", GB, month_s) == 0.0


def test_index_cost_only_for_systems_with_a_vector_index():
    with_index = run_cost(A10G, gpus=1, duration_s=3600.0, gpu_busy_s=0.0, uses_index=True)
    without = run_cost(A10G, gpus=1, duration_s=3600.0, gpu_busy_s=0.0)
    assert with_index.index_usd == pytest.approx(0.0416)
    assert without.index_usd == 0.0
    d = with_index.as_dict()
    assert d["total_usd"] == pytest.approx(0.0416)
    assert set(d) >= {"gpu_hours_busy", "storage_usd", "total_provisioned_usd"}


def test_the_a100_profile_prices_a_p4d_gpu():
    a100 = load_profile("sdxl-a100")
    c = run_cost(a100, gpus=8, duration_s=3600.0, gpu_busy_s=0.0)
    assert c.gpu_provisioned_usd == pytest.approx(32.7726, rel=1e-4)
