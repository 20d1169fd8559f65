"""The catalogue: accounts (with their quotas), templates and nodes. Each is named, and its
name is its identity: the store refuses a second aggregate with a taken name, even from
another writer, so a check here is only the early, friendly refusal."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pex.domain.aggregates import Account, Node, PriceList, Template
from pex.domain.clock import Millis
from pex.domain.errors import AlreadyExists, InvalidField, NotFound
from pex.domain.negotiation import check_text
from pex.domain.pricing import RATE_PLACES, RateCard, amount_in
from pex.domain.quotas import Quota, limits_given
from pex.domain.read_models import (
    AccountUsage,
    AccountView,
    NodeView,
    PricesView,
    TemplateView,
    account_view,
    node_view,
    template_view,
)
from pex.domain.sizes import InstanceType, Resources

if TYPE_CHECKING:
    from pex.domain.application import OpenPEX

# Names of accounts and nodes: they appear in logs, paths and VM names, so they start with a
# letter or digit (no '.', '..' or hidden names) and hold nothing a log line could be forged with.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Usernames that would pass for the system, its operators or a path (compared casefolded).
RESERVED_USERNAMES = frozenset({
    "admin", "administrator", "root", "system", "openpex", "operator", "support", "security", "superuser",
    "nobody", "anonymous", "guest", "null", "none", "undefined", "daemon", "postgres", "libvirt", "qemu",
    "www-data", "me", "self", "users", "api", "health",
})
# A libvirt URI of a driver OpenPEX speaks: test:// (simulated, a local file: no host) or qemu,
# over a transport or not. No query: its parameters (socket=, keyfile=, pkipath=, ...) would
# name local files and sockets for libvirt to open.
URI_PATTERN = re.compile(r"test:///[!-\"$->@-~]*|qemu(\+(ssh|libssh|libssh2|tcp|tls|unix))?://[!-\"$->@-~]*")
NODE_SIZES = ("cpus", "memory_mb", "disk_gb")  # what a node's size is given in (one of its fields each)
NodeChange = Literal["DOWN", "UP", "DRAINED", "UNDRAINED"]  # what an operator or a monitor records of a node


class Catalogue:
    def __init__(self, app: OpenPEX) -> None:
        self.app = app
        self._hosts = _HostKeys()

    # ------------------------------------------------------------------ accounts

    def register_account(self, username: Any, password_hash: str, fullname: Any = "", email: Any = "",
                         *, is_admin: bool = False) -> AccountView:
        if not isinstance(username, str) or not NAME_PATTERN.fullmatch(username):
            raise InvalidField("username", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if username.casefold() in RESERVED_USERNAMES and not is_admin:  # (the service seeds 'admin')
            raise InvalidField("username", f"{username!r} is reserved")
        for name, value in (("fullname", fullname), ("email", email)):
            if not isinstance(value, str):
                raise InvalidField(name, "must be a string of at most 256 characters")
            check_text(name, value)
        if email and "@" not in email:
            raise InvalidField("email", "must be an e-mail address")
        self.check_username_free(username)
        self.app.commit_new(Account(username, password_hash, fullname, email, is_admin),
                            f"the username {username!r} is taken")
        return self.account(username)

    def check_username_free(self, username: str) -> None:
        """AlreadyExists if an account has this name in any case (before a hash is paid for)."""
        if self.app.view.account(username) is not None:
            raise AlreadyExists(f"the username {username!r} is taken")

    def account(self, username: Any) -> AccountView:
        """The account called `username`, whatever its case."""
        return account_view(self._account(username))

    def password_hash(self, username: Any) -> tuple[AccountView, str]:
        """The account and its password hash: for the authenticator only, never to be shown."""
        account = self._account(username)
        return account_view(account), account.password_hash

    def _account(self, username: Any) -> Account:
        account = self.app.view.account(username) if isinstance(username, str) else None
        if account is None:
            raise NotFound(f"no account {str(username)[:64]!r}")
        return account

    def quota_of(self, username: str) -> Quota:
        account = self.app.view.account(username)
        return Quota.from_stored(getattr(account, "quota", None), self.app.settings.quota)

    def account_usage(self, username: Any, now: Millis) -> AccountUsage:
        account = self._account(username)
        quota = self.quota_of(account.username)
        held = self.app.view.offers_held.get(account.username)
        return AccountUsage(account_view(account), quota, held.count if held else 0, held.instance_ms if held else 0,
                            self.app.proposals.available(account.username, quota.proposals_per_minute, now),
                            self.app.refusals[account.username])

    def accounts(self, now: Millis) -> list[AccountUsage]:
        return [self.account_usage(name, now) for name in sorted(self.app.view.accounts)]

    def set_quota(self, username: Any, limits: Mapping[str, Any], now: Millis) -> AccountUsage:
        """The admin changes a user's limits (those not given are kept; see quotas.limits_given)."""
        account = self.app.load(self._account(username).id)
        # Only the limits the admin gave are the account's own; the others follow the defaults.
        account.set_quota({**(getattr(account, "quota", None) or {}), **limits_given(limits)})
        if account.pending_events:
            self.app.commit(account)
        return self.account_usage(account.username, now)

    # ------------------------------------------------------------------ prices

    def prices(self) -> PricesView:
        card = self.app.view.rate_card
        return PricesView(card.currency, dict(card.rates), self.app.settings.pricing.describe())

    def seed_prices(self) -> None:
        """A first start's rate card (RateCard.default), recorded so that the log says what
        prices were in force from the start."""
        if self.app.view.price_list is None:
            card = RateCard.default()
            self.app.commit(PriceList(card.currency, card.to_stored()))

    def set_prices(self, rates: Mapping[str, Any], currency: Any = None) -> PricesView:
        """The admin changes the rates of the sizes given (the others are kept). The currency
        is the card's for good: agreed prices are in it. Agreed prices never change."""
        card = self.app.view.rate_card
        if currency is not None and currency != card.currency:
            raise InvalidField("currency", f"is {card.currency} for good (agreed prices are in it)")
        if not rates:
            raise InvalidField("rates", f"must give the rate of one or more of {', '.join(InstanceType.__members__)}")
        changed = dict(card.rates)
        for size, rate in rates.items():
            if size not in InstanceType.__members__:
                raise InvalidField(f"rates.{str(size)[:64]}", f"is not a size; sizes are {', '.join(InstanceType.__members__)}",
                                   as_given=True)
            changed[size] = amount_in(rate, f"rates.{size}", places=RATE_PLACES)
        new = RateCard(card.currency, changed)
        price_list = self.app.view.price_list
        if price_list is None:
            self.app.commit(PriceList(new.currency, new.to_stored()))
        else:
            aggregate: PriceList = self.app.load(price_list.id)
            aggregate.change(new.to_stored())
            if aggregate.pending_events:
                self.app.commit(aggregate)
        return self.prices()

    # ------------------------------------------------------------------ templates

    def register_template(self, name: Any, description: Any = "", spec: Any = None) -> TemplateView:
        """A template: a name, a description and a spec of plain values; kind "kernel" boots
        the `kernel` (and `initrd`, `cmdline`) it names, any other kind is a stand-in VM."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidField("name", "must be a non-empty string")
        check_text("name", name, longest=128)
        if not isinstance(description, str):
            raise InvalidField("description", "must be a string")
        check_text("description", description, longest=1024)
        spec = {} if spec is None else spec
        if not isinstance(spec, Mapping):
            raise InvalidField("spec", "must be a JSON object")
        try:
            for key, value in spec.items():
                check_text("template field", key, longest=64)
                if isinstance(value, str):
                    check_text(key, value, longest=4096)
                elif not (value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**31)):
                    raise InvalidField(key, "must be a string, a small integer, true, false or null")
        except InvalidField as refused:  # a template's fields are its author's names
            raise InvalidField(refused.field, refused.reason, as_given=True) from None
        if spec.get("kind") == "kernel":
            for key in ("kernel", "initrd", "cmdline"):
                if spec.get(key) is not None and not (isinstance(spec[key], str) and spec[key]):
                    raise InvalidField(key, "must be a non-empty string")
            if not spec.get("kernel"):
                raise InvalidField("kernel", "a kernel template needs the path of its kernel")
        if name in self.app.view.templates:
            raise AlreadyExists(f"a template named {name!r} exists")
        self.app.commit_new(Template(name, description, dict(spec)), f"a template named {name!r} exists")
        return self.template(name)

    def template(self, name: str) -> TemplateView:
        template = self.app.view.templates.get(name)
        if template is None:
            raise NotFound(f"no template {name!r}")
        return template_view(template)

    def templates(self) -> list[TemplateView]:
        return [self.template(name) for name in sorted(self.app.view.templates)]

    @staticmethod
    def types() -> list[InstanceType]:
        return list(InstanceType)

    # ------------------------------------------------------------------ nodes

    def check_new_node(self, name: Any, uri: Any, size: Mapping[str, Any] | None = None) -> None:
        """Refuse a node's name, URI or size before anything connects to it: a well-formed name
        not taken, a libvirt URI of a driver OpenPEX speaks that no other node uses, and sizes
        (cpus, memory_mb, disk_gb: those given) that are positive integers below 2**31."""
        for field_name, value in (size or {}).items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
                raise InvalidField(field_name, "must be a positive integer below 2**31")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InvalidField("name", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if not isinstance(uri, str) or len(uri) > 1024 or not URI_PATTERN.fullmatch(uri):
            raise InvalidField("uri", "must be a libvirt URI of the test or qemu driver, such as "
                                      "test:///path/host.xml or qemu:///system, without spaces")
        if name in self.app.view.nodes:
            raise AlreadyExists(f"a node named {name!r} exists")
        other = self._hosts.user_of(_host_key(uri), self.app.view.nodes)
        if other is not None:  # one host counted twice would be overbooked
            raise AlreadyExists(f"node {other} already uses {uri!r}")

    def register_node(self, name: str, uri: str, capacity: Resources, *, reachable: bool = True) -> NodeView:
        """A new host; one that did not answer is recorded DOWN at once (in the same save), so
        no decision ever counts on it before a poll does."""
        self.check_new_node(name, uri, dict(zip(NODE_SIZES, capacity.as_tuple())))
        node = Node(name, uri, capacity.cpus, capacity.memory_mb, capacity.disk_gb)
        if not reachable:
            node.go_down()
        self.app.commit_new(node, f"a node named {name!r} exists")
        self._hosts.added(node, self.app.view.nodes)
        return self.node(name)

    def mark_node(self, name: str, change: NodeChange) -> NodeView:
        """Record a node DOWN, UP (back), DRAINED or UNDRAINED (in service again); only UP
        nodes take new allocations."""
        node = self.load_node(name)
        {"DOWN": node.go_down, "UP": node.come_back, "DRAINED": node.drain, "UNDRAINED": node.undrain}[change]()
        self.app.commit(node)
        return self.node(name)

    def node(self, name: str) -> NodeView:
        node = self.app.view.nodes.get(name)
        if node is None:
            raise NotFound(f"no node {name!r}")
        return node_view(node)

    def nodes(self) -> list[NodeView]:
        return [self.node(name) for name in sorted(self.app.view.nodes)]

    def node_statuses(self) -> dict[str, str]:
        """Each node's recorded status, by name in name order: what a monitor's round needs of
        ten thousand nodes, without a view of each."""
        nodes = self.app.view.nodes
        return {name: str(nodes[name].status) for name in sorted(nodes)}

    def load_node(self, name: str) -> Node:
        if name not in self.app.view.nodes:
            raise NotFound(f"no node {name!r}")
        node: Node = self.app.load(self.app.view.nodes[name].id)
        return node


def node_size(given: Mapping[str, int], reported: Resources | None, default: Resources) -> Resources:
    """A new node's size: what the admin gave (cpus, memory_mb, disk_gb), else what the host
    reported of its CPUs and memory (libvirt never reports disk), else `default`. A host that
    did not answer reports nothing, and is registered DOWN (`register_node(reachable=False)`)."""
    cpus, memory_mb = (reported.cpus, reported.memory_mb) if reported else (default.cpus, default.memory_mb)
    return Resources(given.get("cpus", cpus), given.get("memory_mb", memory_mb), given.get("disk_gb", default.disk_gb))


class _HostKeys:
    """Which node uses each host (by `_host_key`), so a registration checks its URI in one
    look-up rather than against every node's (registering ten thousand hosts compared each
    with all before it). Nodes are never removed and never change URI, so the keys are kept
    up to date by taking in the nodes added since the last look-up; a view that is not the one
    they were taken from (rebuilt) is taken in afresh."""

    def __init__(self) -> None:
        self._nodes: Mapping[str, Node] | None = None  # the view's nodes the keys were taken from
        self._taken = 0  # how many of them
        self._users: dict[str, str] = {}  # host key -> node name

    def user_of(self, key: str, nodes: Mapping[str, Node]) -> str | None:
        if nodes is not self._nodes or len(nodes) < self._taken:
            self._nodes, self._taken, self._users = nodes, 0, {}
        if len(nodes) > self._taken:
            # (nodes are kept in the order registered: the new ones are at the end)
            for node in list(nodes.values())[self._taken:]:
                self._users.setdefault(_host_key(node.uri), node.name)
            self._taken = len(nodes)
        return self._users.get(key)

    def added(self, node: Node, nodes: Mapping[str, Node]) -> None:
        """`node` was just registered, the last of `nodes`: taken in without a look at the rest."""
        if nodes is self._nodes and len(nodes) == self._taken + 1 and node.name in nodes:
            self._users.setdefault(_host_key(node.uri), node.name)
            self._taken += 1


def _host_key(uri: str) -> str:
    """A URI as the host it names: scheme and host name in any case, the path normalised
    ('test:///a/./b.xml' and 'test:///a//b.xml' are one file)."""
    parts = urlsplit(uri)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{posixpath.normpath(parts.path or '/')}"
