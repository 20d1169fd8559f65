"""A host counted twice would be overbooked: a node's URI is refused while another node uses
the same host, however it is spelt. The check keeps the hosts in use (issue 13: compared with
every node's URI, registering ten thousand hosts was quadratic), so it must hold for nodes
registered here, nodes read from the store, and after the view is rebuilt."""

from __future__ import annotations

import pytest

from pex.domain.errors import AlreadyExists
from pex.domain.sizes import Resources

from tests.integration.test_application import NOW
from tests.support.apps import opener

SIZE = Resources(8, 16384, 200)


@pytest.fixture
def store(durable_store_env):
    yield from opener(durable_store_env, origin=NOW)


def test_a_host_in_use_is_refused_however_its_uri_is_spelt(store):
    app = store()
    for i in range(5):
        app.catalogue.register_node(f"n{i}", f"test:///hosts/n{i}.xml", SIZE)
    with pytest.raises(AlreadyExists, match="node n3 already uses"):
        app.catalogue.register_node("other", "test:///hosts/./n3.xml", SIZE)
    with pytest.raises(AlreadyExists, match="node n0 already uses"):
        app.catalogue.check_new_node("other", "test:///hosts//n0.xml")
    app.catalogue.register_node("n5", "test:///hosts/n5.xml", SIZE)
    with pytest.raises(AlreadyExists, match="node n5 already uses"):
        app.catalogue.check_new_node("other", "test:///hosts/n5.xml")


def test_hosts_registered_by_an_earlier_process_and_after_a_rebuild_are_still_in_use(store):
    first = store()
    first.catalogue.register_node("a", "test:///hosts/a.xml", SIZE)
    first.close()
    app = store()
    with pytest.raises(AlreadyExists, match="node a already uses"):
        app.catalogue.check_new_node("b", "test:///hosts/a.xml")
    app.catalogue.register_node("b", "test:///hosts/b.xml", SIZE)
    app._rebuild()  # (a new view, as after a failed batch)
    for uri, user in (("test:///hosts/a.xml", "a"), ("test:///hosts/b.xml", "b")):
        with pytest.raises(AlreadyExists, match=f"node {user} already uses"):
            app.catalogue.check_new_node("c", uri)
    app.catalogue.check_new_node("c", "test:///hosts/c.xml")
