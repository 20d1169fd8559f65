"""Quotas as pure rules, and the local files admin input may name: no store, no server."""

from __future__ import annotations

import pytest

from pex.domain.aggregates import Account, Node
from pex.domain.clock import HOUR, MINUTE, SECOND
from pex.domain.errors import InvalidField
from pex.domain.quotas import HeldOffers, Quota, QuotaExceeded, TokenBuckets, check_offers
from pex.drivers.local_files import LocalFiles


def test_a_quota_change_keeps_the_limits_it_does_not_name():
    assert Quota().changed({"open_offers": 3}) == Quota(open_offers=3)


@pytest.mark.parametrize("body", [{}, {"open_offers": -1}, {"open_offers": 1.5}, {"open_offers": False},
                                  {"openOffers": 3}, {"open_offers": 10**10}])
def test_a_bad_quota_is_refused_naming_the_field(body):
    with pytest.raises(InvalidField):
        Quota().changed(body)


def test_the_open_offer_count_and_the_held_instance_hours_are_each_a_limit():
    quota = Quota(open_offers=2, held_instance_hours=10)
    check_offers(quota, HeldOffers(1, 5 * HOUR), 5 * HOUR, lambda: None, 0)  # exactly at the limit: allowed
    with pytest.raises(QuotaExceeded) as full:
        check_offers(quota, HeldOffers(2, 0), HOUR, lambda: 90 * SECOND, 0)
    assert full.value.retry_after == 90 * SECOND, "room again when the first open offer lapses"
    with pytest.raises(QuotaExceeded, match="instance-hours"):
        check_offers(quota, HeldOffers(1, 5 * HOUR), 5 * HOUR + 1, lambda: None, 0)


def test_proposals_come_in_a_burst_up_to_the_limit_then_refill_evenly():
    rate = TokenBuckets()
    for _ in range(6):
        rate.take("alice", 6, 0)
    with pytest.raises(QuotaExceeded) as refused:
        rate.take("alice", 6, 0)
    assert refused.value.retry_after == 10 * SECOND
    rate.take("bob", 6, 0)  # one user's burst is not another's
    rate.take("alice", 6, 10 * SECOND)
    with pytest.raises(QuotaExceeded):
        rate.take("alice", 6, 10 * SECOND)
    assert rate.available("alice", 6, 10 * SECOND) == 0
    assert rate.available("alice", 6, 20 * SECOND) == 1
    assert rate.available("alice", 6, 10 * SECOND + MINUTE) == 6 and rate.available("carol", 6, 0) == 6


def test_a_limit_of_zero_refuses_every_proposal():
    with pytest.raises(QuotaExceeded):
        TokenBuckets().take("alice", 0, 0)


def test_a_quota_is_recorded_on_the_account_only_when_it_changes():
    account = Account("alice", "hash", "Alice", "a@example.org", False)
    account.collect_events()
    account.set_quota({"open_offers": 3, "held_instance_hours": 10, "proposals_per_minute": 60})
    account.set_quota({"open_offers": 3, "held_instance_hours": 10, "proposals_per_minute": 60})
    assert [type(e).__name__ for e in account.collect_events()] == ["QuotaSet"]


def test_accounts_differing_only_in_case_have_one_id():
    assert Account.create_id("Alice") == Account.create_id("alice")


def test_an_undrained_node_takes_bookings_again_unless_it_is_down():
    node = Node("n1", "test:///default", 4, 4096, 10)
    node.drain()
    node.undrain()
    assert node.status == "UP"
    node.drain()
    node.go_down()
    node.undrain()
    assert node.status == "DOWN"
    node.come_back()
    assert node.status == "UP", "undrained while down: back in service when it answers"


def test_only_files_inside_the_image_and_hosts_directories_may_be_named(tmp_path):
    images, hosts = tmp_path / "images", tmp_path / "hosts"
    images.mkdir()
    hosts.mkdir()
    (images / "vmlinuz").write_bytes(b"k")
    (hosts / "h.xml").write_text("<node/>")
    (images / "out").symlink_to(tmp_path / "secret")
    (tmp_path / "secret").write_text("x")
    files = LocalFiles(images=images, hosts=hosts)
    assert files.image("kernel", "vmlinuz") == str((images / "vmlinuz").resolve())
    for bad in ("/etc/passwd", "../secret", "out", ".", str(images)):
        with pytest.raises(InvalidField):
            files.image("kernel", bad)
    real = f"test://{(hosts / 'h.xml').resolve()}"
    assert files.host_uri(f"test://{hosts / 'h.xml'}") == real
    assert files.host_uri(f"test://{hosts}/./h.xml") == real, "one file, one URI"
    (hosts / "alias.xml").symlink_to(hosts / "h.xml")
    assert files.host_uri(f"test://{hosts / 'alias.xml'}") == real
    assert files.host_uri("test:///default") == "test:///default"
    assert files.host_uri("qemu:///system") == "qemu:///system"
    for bad in ("test:///etc/passwd", f"test://{images / 'vmlinuz'}", f"test://{hosts}/../images/vmlinuz"):
        with pytest.raises(InvalidField):
            files.host_uri(bad)
