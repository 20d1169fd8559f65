"""schemathesis against a real `openpex serve`: every operation the OpenAPI description lists is
fuzzed (examples, coverage and random phases, valid and invalid data) as a normal user and as
the admin, then chained through the description's links; every built-in check runs, with the
one of tests/e2e/schemathesis_hooks.py, and any failure fails the test.

The description is fetched without credentials, as any client would. One server serves the
whole file. Its quotas are lifted for the two accounts so that the run is not spent on 429s; the
login throttle is left as it is, and the fuzzer's attempts with wrong credentials (the
ignored_auth check sends one after each success) come from other loopback addresses under
names of their own, as strangers would: else the throttle would rightly refuse them 429 after a
few, and then everyone behind 127.0.0.1. Registrations come from loopback addresses of their
own too (an address may register 20 accounts an hour). A new node's URI is confined to this
machine (test:///default) before it is sent: the service must never connect elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import tomllib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import schemathesis.transport.requests
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.errors import FlakyStrategyDefinition
from requests.adapters import HTTPAdapter
from schemathesis.transport.requests import SameHostRedirectsSession

from pex.domain.catalogue import URI_PATTERN
from pex.http import openapi
from tests.e2e import schemathesis_hooks  # noqa: F401 (imported for what it does: it registers its check)
from tests.support.server import ADMIN_PASSWORD, Server

CONFIG = Path(__file__).with_name("schemathesis.toml")
USER = ("fuzzer", "correct-horse-battery-9")
ADMIN = ("admin", ADMIN_PASSWORD)
UNLIMITED = {"openOffers": 10**9, "heldInstanceHours": 10**9, "proposalsPerMinute": 10**9}
SAFE_URI = "test:///default"  # libvirt's own simulated host, in the service's memory
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class Loopback(HTTPAdapter):
    """The fuzzer's transport. Requests with our credentials (or none) go as they are. One with
    other Basic credentials is a stranger's: it gets a username no one else tried and comes from
    a loopback address of its own. A registration comes from an address of its own too (an
    address may register 20 accounts an hour). A new node's libvirt URI becomes test:///default."""

    strangers = itertools.count(1)  # one count for every session: no name or address is used twice
    visitors = itertools.count(1)

    def __init__(self, ours: frozenset[str]) -> None:
        super().__init__()
        self.ours = ours
        self.addresses: dict[str, _FromAddress] = {}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        path = (request.path_url or "").rstrip("/")
        if request.method == "POST" and path == "/OpenPEX/nodes":
            _confine_node_uri(request)
        credentials = request.headers.get("Authorization")
        if credentials is not None and credentials not in self.ours and _is_basic(credentials):
            n = next(self.strangers)
            request.headers["Authorization"] = basic(f"stranger-{n}", f"wrong-password-{n}")
            return self._from(f"127.1.{n // 250 % 250}.{n % 250 + 1}").send(request, **kwargs)
        if request.method == "POST" and path == "/OpenPEX/users":
            n = next(self.visitors)
            return self._from(f"127.2.{n // 250 % 250}.{n % 250 + 1}").send(request, **kwargs)
        return super().send(request, **kwargs)

    def _from(self, address: str) -> _FromAddress:
        return self.addresses.get(address) or self.addresses.setdefault(address, _FromAddress(address))

    def close(self) -> None:
        for adapter in self.addresses.values():
            adapter.close()
        super().close()


def _is_basic(credentials: str) -> bool:
    scheme, _, encoded = credentials.partition(" ")
    try:
        return scheme.lower() == "basic" and ":" in base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False


def _confine_node_uri(request: requests.PreparedRequest) -> None:
    """A well-formed libvirt URI in a new node's body becomes test:///default (an ill-formed
    one is refused before anything connects, so it is left for the service to refuse)."""
    body = request.body
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return
    if isinstance(parsed, dict) and isinstance(parsed.get("uri"), str) and URI_PATTERN.fullmatch(parsed["uri"]):
        parsed["uri"] = SAFE_URI
        request.body = json.dumps(parsed).encode()
        request.headers["Content-Length"] = str(len(request.body))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("schemathesis"), "--simulated-nodes", "2")
    try:
        status, body = running.request("POST", "/OpenPEX/users", {"username": USER[0], "password": USER[1],
                                                                  "fullname": "Fuzzer", "email": "fuzzer@example.org"})
        assert status == 201, body
        _restore(running)
        yield running
    finally:
        running.close()
        log = running.log.read_text()
        assert "Traceback" not in log and "unexpected error" not in log, log[-5000:]


OURS = frozenset({basic(*USER), basic(*ADMIN)})


class LoopbackSession(SameHostRedirectsSession):
    def __init__(self) -> None:
        super().__init__()
        self.mount("http://", Loopback(OURS))


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """The session the tests send through; schemathesis sends its probes (the same request
    without or with wrong credentials) through sessions of its own making, so those are made
    loopback sessions too, for the file."""
    with pytest.MonkeyPatch.context() as patch, LoopbackSession() as opened:
        patch.setattr(schemathesis.transport.requests, "SameHostRedirectsSession", LoopbackSession)
        yield opened


@pytest.fixture(scope="module")
def base_url(server: Server) -> str:
    url = f"http://127.0.0.1:{server.port}"
    served = requests.get(f"{url}/OpenPEX/openapi.json", timeout=10)  # without credentials: it is public
    assert served.status_code == 200 and served.json() == openapi.SPEC
    return url


def _schema(username: str, password: str) -> Any:
    """The description as the service serves it (checked above), loaded at collection so that
    each operation is a test of its own, with these credentials (schemathesis itself sends
    them, and leaves them out or spoils them where a check needs it)."""
    with open(CONFIG, "rb") as settings_file:
        config = tomllib.load(settings_file)
    config["auth"] = {"basic": {"username": username, "password": password}}
    config["seed"] = 20091117  # every choice schemathesis makes is this run's, the same each time
    return schemathesis.openapi.from_dict(openapi.SPEC, config=schemathesis.Config.from_dict(config))


as_user = _schema(*USER)
as_admin = _schema(*ADMIN)


def test_chains_of_calls_through_the_links(server: Server, base_url: str, session: requests.Session) -> None:
    """Scenarios that follow the links (a proposal to its reservation, a reservation to its
    instances, a host to drain and undrain, ...). First, while the hosts have room (the
    operations fuzzed one by one below drain and fill them); as the admin, who may follow every
    link (a normal user may not read the account a registration, a public call, just made:
    POST /users -> GET /users/{name} is a 404 by design for anyone but that account and the
    admin, which ensure_resource_availability would take for a resource that vanished)."""
    failures: list[BaseException] = []
    steps = 0
    proposals, replies = itertools.count(), itertools.count()

    class Workflow(as_admin.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": base_url, "session": session, "timeout": 30}

        def before_call(self, case: Any) -> None:
            # Generated terms are nearly always refused (no such template, a start long past),
            # and the links from a refusal lead nowhere: three valid proposals in four ask for
            # what the service can grant, starting in a second, and every other valid reply to
            # an offer confirms it, so that scenarios go on to activate and operate instances.
            meta = case.meta
            if meta is None or not meta.generation.mode.is_positive:
                return
            operation = case.operation.definition.raw.get("operationId")
            if operation == "propose" and next(proposals) % 4 != 3:
                start = datetime.now(timezone.utc) + timedelta(seconds=1)
                case.body = {"type": "SMALL", "template": "debian-12", "numInstancesFixed": 1, "numInstancesOption": 1,
                             "startTime": start.isoformat(timespec="milliseconds"), "duration": 60_000}
            elif operation == "replyToReservation" and next(replies) % 2 == 0:
                case.body = {"reply": "CONFIRM"}

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            nonlocal steps
            steps += 1
            try:
                super().validate_response(response, case, *args, **kwargs)
            except BaseException as failure:
                failures.append(failure)
                raise

    try:
        _explore(Workflow, failures, lambda: steps)
    finally:
        _restore(server)  # the scenarios may have drained the hosts and cut the quotas


def _explore(workflow: Any, failures: list[BaseException], steps: Any) -> None:
    """Run scenarios until 300 calls were made; the first failure fails the test.

    The service keeps what each scenario did, so Hypothesis may find that the same choices led
    elsewhere the second time and stop with FlakyStrategyDefinition (schemathesis' own runner
    starts again then, as here): that is no failure, and a failure is recorded before whatever
    Hypothesis does after it. Generated, not shrunk: a replay could not be the same."""
    for attempt in range(20):
        try:
            seed(attempt)(workflow).run(settings=settings(SETTINGS, max_examples=30, stateful_step_count=10,
                                                          phases=[Phase.generate]))
        except FlakyStrategyDefinition:
            pass
        except BaseException:
            if not failures:
                raise
        if failures:
            raise failures[0]
        if steps() >= 300:
            break
    assert steps() >= 300, f"only {steps()} linked calls were made"


def _restore(server: Server) -> None:
    for name in (USER[0], ADMIN[0]):
        status, body = server.request("PUT", f"/OpenPEX/users/{name}/quota", UNLIMITED, auth=ADMIN)
        assert status == 200, body
    for node in server.request("GET", "/OpenPEX/nodes", auth=ADMIN)[1]:
        server.request("PUT", f"/OpenPEX/nodes/{node['name']}/undrain", auth=ADMIN)


@as_user.parametrize()
@SETTINGS
def test_every_operation_as_a_user(case: Any, base_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=base_url, session=session, timeout=30)


@as_admin.parametrize()
@SETTINGS
def test_every_operation_as_the_admin(case: Any, base_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=base_url, session=session, timeout=30)
