"""The OpenPEX eventsourcing Application: every command reads like load, decide, save.

Commands take `now` (the caller's clock) and hand back plain dicts in the paper's names, never
aggregates. The application keeps the projections (and with them the capacity model) in
memory, rebuilt from the notification log when it opens, and applies what it saves. It is
meant to have one writer thread (the ReservationManager actor); the store's optimistic
concurrency refuses a save that raced another process's.

Persistence is chosen by environment, as eventsourcing does: PERSISTENCE_MODULE
(eventsourcing.sqlite or eventsourcing.postgres), SQLITE_DBNAME, POSTGRES_*.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from pex.domain.admission import AdmissionPolicy, Decision, decide
from pex.domain.aggregates import LIVE, Account, Instance, Node, Reservation, Template
from pex.domain.bookings import decide_running_change, replan_lost
from pex.domain.capacity import Allocation, CapacityModel, Share
from pex.domain.clock import DAY, HOUR, MINUTE, Millis, SystemClock
from pex.domain.errors import AlreadyExists, InvalidField, NotFound, ProtocolViolation, StoreUnavailable
from pex.domain.negotiation import AGREED, Action, Limits, Message, Reply, Terms, check_text, rejection_reason
from pex.domain.orders import Operation, VMOrder, domain_name, vm_id_of
from pex.domain.planning import PlannedInstance, plan_instances
from pex.domain.projections import DueTimes, Projections
from pex.domain.quotas import HeldOffers, Quota, QuotaExceeded, TokenBuckets, check_offers, limits_given
from pex.domain.reconciling import MISSING, WHY, Recovery, changed_behind_our_back, recovery_step
from pex.domain.sizes import InstanceType, Resources

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
_USER_MESSAGES = {Message.ACCEPT, Message.COUNTER, Message.CONFIRM, Message.REJECT}


@dataclass(frozen=True)
class Settings:
    offer_ttl: Millis = 5 * MINUTE
    max_hold: Millis | None = None  # how long one negotiation may hold capacity in all (default 3 TTLs)
    quota: Quota = Quota()  # each user's limits unless the admin set others
    limits: Limits = Limits(max_advance=365 * DAY, max_duration=90 * DAY)
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    bucket: Millis = 15 * MINUTE  # width of the capacity index's buckets


class OpenPEX(Application[UUID]):
    env = {"TRANSCODER_TOPIC": "pex.domain.transcoding:MsgpackTranscoder"}

    def __init__(self, env: Mapping[str, str] | None = None, *, settings: Settings | None = None,
                 origin: Millis | None = None) -> None:
        """Open the store and rebuild every projection from it. `origin` is the earliest
        instant decisions will be asked about (default: now)."""
        super().__init__(env)
        self.settings = settings or Settings()
        if origin is None:
            origin = SystemClock().now()
        self._origin = origin
        self._batch: dict[UUID, Any] | None = None  # aggregates changed in the open batch
        self._staged: list[Any] = []  # their events, applied to the view but not yet saved
        self._stale = True
        self._proposals = TokenBuckets()  # in memory: a refusal stores nothing
        self.refusals: Counter[str] = Counter()  # quota refusals per user since start (for operators)
        self._rebuild()

    @property
    def capacity(self) -> CapacityModel:
        return self.view.capacity

    @property
    def negotiation_hold(self) -> Millis:
        return self.settings.max_hold if self.settings.max_hold is not None else 3 * self.settings.offer_ttl

    def _rebuild(self) -> None:
        """Replace the view with one rebuilt from the store. Until that succeeds the old view
        must not be trusted: commands are refused (StoreUnavailable) rather than decided on it."""
        self._stale = True
        view = Projections(CapacityModel(origin=self._origin, bucket=self.settings.bucket))
        view.catch_up(self.recorder, self.mapper)
        self.view, self._stale = view, False

    def _check_view(self) -> None:
        if self._stale:
            try:
                self._rebuild()
            except Exception as error:
                raise StoreUnavailable(f"the event store cannot be read: {error}") from None

    def _commit(self, *aggregates: Any) -> None:
        self._check_view()
        if self._batch is None:
            recordings = self.save(*aggregates)
            self._apply(lambda: self.view.apply_recordings(recordings, self.recorder, self.mapper))
            return
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        for event in events:  # refuse what the store could not encode now, not at the batch's end
            try:
                self.mapper.to_stored_event(event)
            except Exception:
                for aggregate in aggregates:  # changed but never staged: not to be reused
                    self._batch.pop(aggregate.id, None)
                raise
        for aggregate in aggregates:
            self._batch[aggregate.id] = aggregate
        self._apply(lambda: self.view.apply_staged(events))
        self._staged.extend(events)

    def _apply(self, applying: Callable[[], None]) -> None:
        """Apply events to the view; if that fails half-way, the view is not to be trusted
        until it is rebuilt from the store (the next command does so)."""
        try:
            applying()
        except BaseException:
            self._stale = True
            raise

    def _get(self, aggregate_id: UUID) -> Any:
        """An aggregate to change: the one changed earlier in the open batch, or from the store."""
        if self._batch is not None and aggregate_id in self._batch:
            return self._batch[aggregate_id]
        return self.repository.get(aggregate_id)

    # ------------------------------------------------------------------ group commit

    def begin_batch(self) -> None:
        """Stage what the following commands record, and save it all in one transaction at
        `end_batch` (group commit: one fsync for many decisions). Each command still sees
        every decision before it, since staged events are applied to the view at once; the
        caller must not tell anyone an outcome before `end_batch` returns. Commands that rely
        on the store to refuse a taken name (register_*) must not run inside a batch."""
        self._check_view()
        if self._batch is None:
            self._batch, self._staged = {}, []

    def end_batch(self) -> None:
        staged, self._staged, self._batch = self._staged, [], None
        if staged:
            try:
                recordings = self.save(*staged)
            except BaseException:
                self._stale = True  # nothing of the batch was saved: forget it
                self._try_rebuild()
                raise
            if not self.view.confirm_staged(recordings, self.recorder):
                self._stale = True  # another writer's events came in between: take the log's order
        if self._stale:  # (or a command's events failed to apply): the store is the truth
            self._try_rebuild()

    def _try_rebuild(self) -> None:
        try:
            self._rebuild()
        except Exception:
            pass  # the next command tries again, and is refused while it fails

    @property
    def in_batch(self) -> bool:
        return self._batch is not None

    # ------------------------------------------------------------------ catalogue

    def register_account(self, username: Any, password_hash: str, fullname: Any = "", email: Any = "",
                         *, is_admin: bool = False) -> dict[str, Any]:
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
        if self.view.account(username) is not None:
            raise AlreadyExists(f"the username {username!r} is taken")
        account = Account(username, password_hash, fullname, email, is_admin)
        self._commit_new(account, f"the username {username!r} is taken")
        return self.account(username)

    def account(self, username: str) -> dict[str, Any]:
        """The account called `username` (whatever its case) with its password hash: for
        authentication only, never to be shown."""
        account = self._account(username)
        return {"username": account.username, "fullname": account.fullname, "email": account.email,
                "isAdmin": account.is_admin, "passwordHash": account.password_hash}

    def _account(self, username: Any) -> Account:
        account = self.view.account(username) if isinstance(username, str) else None
        if account is None:
            raise NotFound(f"no account {str(username)[:64]!r}")
        return account

    def quota_of(self, username: str) -> Quota:
        account = self.view.account(username)
        return Quota.from_stored(getattr(account, "quota", None), self.settings.quota)

    def account_usage(self, username: str, now: Millis) -> dict[str, Any]:
        """What an operator sees of an account: who, its quota, what it holds now, and how
        many of its requests were refused over quota since the service started."""
        account = self._account(username)
        quota = self.quota_of(account.username)
        held = self.view.offers_held.get(account.username)
        return {"username": account.username, "fullname": account.fullname, "email": account.email,
                "isAdmin": account.is_admin, "quota": quota.to_dict(),
                "usage": {"openOffers": held.count if held else 0,
                          "heldInstanceHours": round(held.instance_ms / HOUR, 3) if held else 0,
                          "proposalsAvailable": self._proposals.available(account.username, quota.proposals_per_minute,
                                                                          now)},
                "refusedOverQuota": self.refusals[account.username]}

    def accounts(self, now: Millis) -> list[dict[str, Any]]:
        return [self.account_usage(name, now) for name in sorted(self.view.accounts)]

    def set_quota(self, username: Any, limits: Any, now: Millis) -> dict[str, Any]:
        """The admin changes a user's limits (those not given are kept)."""
        account = self._get(self._account(username).id)
        # Only the limits the admin gave are the account's own; the others follow the defaults.
        account.set_quota({**(getattr(account, "quota", None) or {}), **limits_given(limits)})
        if account.pending_events:
            self._commit(account)
        return self.account_usage(account.username, now)

    def register_template(self, name: Any, description: Any = "", spec: Any = None) -> dict[str, Any]:
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
        for key, value in spec.items():
            check_text("template field", key, longest=64)
            if isinstance(value, str):
                check_text(key, value, longest=4096)
            elif not (value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**31)):
                raise InvalidField(key, "must be a string, a small integer, true, false or null")
        if spec.get("kind") == "kernel":
            for key in ("kernel", "initrd", "cmdline"):
                if spec.get(key) is not None and not (isinstance(spec[key], str) and spec[key]):
                    raise InvalidField(key, "must be a non-empty string")
            if not spec.get("kernel"):
                raise InvalidField("kernel", "a kernel template needs the path of its kernel")
        if name in self.view.templates:
            raise AlreadyExists(f"a template named {name!r} exists")
        self._commit_new(Template(name, description, dict(spec or {})), f"a template named {name!r} exists")
        return self.template(name)

    def template(self, name: str) -> dict[str, Any]:
        template = self.view.templates.get(name)
        if template is None:
            raise NotFound(f"no template {name!r}")
        return {"name": template.name, "description": template.description, **template.spec}

    def templates(self) -> list[dict[str, Any]]:
        return [self.template(name) for name in sorted(self.view.templates)]

    @staticmethod
    def types() -> list[dict[str, Any]]:
        return [{"type": t.name, "cpus": t.resources.cpus, "memoryMB": t.resources.memory_mb,
                 "diskGB": t.resources.disk_gb} for t in InstanceType]

    def check_new_node(self, name: Any, uri: Any, size: Mapping[str, Any] | None = None) -> None:
        """Refuse a node's name, URI or size before anything connects to it: a well-formed name
        not taken, a libvirt URI of a driver OpenPEX speaks that no other node uses, and sizes
        (cpus, memoryMB, diskGB: those given) that are positive integers below 2**31."""
        for field_name, value in (size or {}).items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
                raise InvalidField(field_name, "must be a positive integer below 2**31")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InvalidField("name", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if not isinstance(uri, str) or len(uri) > 1024 or not URI_PATTERN.fullmatch(uri):
            raise InvalidField("uri", "must be a libvirt URI of the test or qemu driver, such as "
                                      "test:///path/host.xml or qemu:///system, without spaces")
        if name in self.view.nodes:
            raise AlreadyExists(f"a node named {name!r} exists")
        for other in self.view.nodes.values():
            if _host_key(other.uri) == _host_key(uri):  # one host counted twice would be overbooked
                raise AlreadyExists(f"node {other.name} already uses {uri!r}")

    def register_node(self, name: str, uri: str, capacity: Resources, *, reachable: bool = True) -> dict[str, Any]:
        """A new host; one that did not answer is recorded DOWN at once (in the same save), so
        no decision ever counts on it before a poll does."""
        self.check_new_node(name, uri, dict(zip(("cpus", "memoryMB", "diskGB"), capacity.as_tuple())))
        node = Node(name, uri, capacity.cpus, capacity.memory_mb, capacity.disk_gb)
        if not reachable:
            node.go_down()
        self._commit_new(node, f"a node named {name!r} exists")
        return self.node(name)

    def mark_node(self, name: str, status: str) -> dict[str, Any]:
        """Record a node DOWN, UP (back), DRAINED or UNDRAINED (in service again); only UP
        nodes take new allocations."""
        node = self._load_node(name)
        {"DOWN": node.go_down, "UP": node.come_back, "DRAINED": node.drain, "UNDRAINED": node.undrain}[status]()
        self._commit(node)
        return self.node(name)

    def node(self, name: str) -> dict[str, Any]:
        node = self.view.nodes.get(name)
        if node is None:
            raise NotFound(f"no node {name!r}")
        return {"name": node.name, "uri": node.uri, "status": node.status, "cpus": node.cpus,
                "memoryMB": node.memory_mb, "diskGB": node.disk_gb}

    def nodes(self) -> list[dict[str, Any]]:
        return [self.node(name) for name in sorted(self.view.nodes)]

    def _load_node(self, name: str) -> Node:
        if name not in self.view.nodes:
            raise NotFound(f"no node {name!r}")
        return self._get(self.view.nodes[name].id)

    def _commit_new(self, aggregate: Any, taken: str) -> None:
        try:
            self._commit(aggregate)
        except IntegrityError:
            raise AlreadyExists(taken) from None

    # ------------------------------------------------------------------ negotiation

    def propose(self, userid: str, proposal: Any, now: Millis) -> dict[str, Any]:
        """A new proposal (POST /reservations): answered ACCEPT, COUNTER or REJECT."""
        terms = Terms.from_proposal(proposal)
        self.lapse_due(now)
        self._check_quota(userid, terms, now)
        reservation = Reservation(userid, terms.to_dict())
        self._negotiate(reservation, terms, now)
        return self._reply(reservation, Reply(_reply_of(reservation)))

    def respond(self, reservation_id: Any, userid: str, reply: Any, now: Millis,
                proposal: Any = None, *, is_admin: bool = False) -> dict[str, Any]:
        """The user's reply to an offer (PUT /reservations/{id}): ACCEPT, COUNTER, CONFIRM or
        REJECT; COUNTER carries a proposal and also renegotiates agreed terms."""
        message = _message(reply)
        visible = self._visible_reservation(reservation_id, userid, is_admin)
        terms = None
        if message is Message.COUNTER:  # parse before anything is recorded
            terms = Terms.from_proposal(proposal if proposal is not None else {}, defaults=visible.latest_terms)
        self.lapse_due(now)
        reservation = self._get(visible.id)
        action = reservation.action_for(message)
        if action is Action.NEGOTIATE:
            assert terms is not None
            self._check_quota(reservation.userid, terms, now, renegotiating=reservation)
            reservation.propose(terms)
            self._negotiate(reservation, terms, now)
            return self._reply(reservation, Reply(_reply_of(reservation)))
        if action is Action.ACCEPT_COUNTER:
            reservation.accept_counter(now, self._hold_until(reservation, now))
            self._commit(reservation)
            return self._reply(reservation, Reply.CONFIRM_REQUEST)
        if action is Action.CONFIRM:
            reservation.confirm(now)
            self._commit(reservation, *self._plan_instances(reservation))
            return self._reply(reservation, Reply.REQUEST_SUCCESS)
        assert action is Action.WITHDRAW
        withdrawn = reservation.offered_terms
        reservation.withdraw()
        self._commit(reservation)
        return self._reply(reservation, Reply.REQUEST_SUCCESS, withdrawn)

    def _negotiate(self, reservation: Reservation, terms: Terms, now: Millis) -> None:
        limits = self.settings.limits
        agreed = reservation.agreed_terms if reservation.is_agreed else None
        running = agreed is not None and agreed.start <= now
        reason = rejection_reason(terms, now=now, templates=self.view.templates.keys(), limits=limits,
                                  running=running)
        if reason is None and agreed is not None and terms.instance_type != agreed.instance_type:
            # Capacity holds one size per reservation (the old and new terms are held at once).
            reason = f"an agreed reservation keeps its size ({agreed.instance_type}); make a new reservation for another"
        if reason is None and running:
            decision = decide_running_change(reservation.id, agreed, Allocation.from_list(reservation.booking), terms,
                                             self.capacity, {name: node.status for name, node in self.view.nodes.items()})
        elif reason is None:
            with self.capacity.without(reservation.id):
                decision = decide(self.capacity, terms, latest_start=now + limits.max_advance,
                                  policy=self.settings.admission)
        else:
            decision = Decision.reject(reason)
        if decision.offer is None:
            reservation.answer(Reply.REJECT, reason=decision.reason)
        else:
            reservation.answer(
                decision.reply,
                terms=decision.offer.terms,
                allocation=decision.offer.allocation,
                hold_until=self._hold_until(reservation, now),
                alternatives=[alt.terms.to_proposal() for alt in decision.alternatives],
                opened=reservation.negotiation_opened or now,
            )
        self._commit(reservation)

    def _hold_until(self, reservation: Reservation, now: Millis) -> Millis:
        """An offer is held for the offer TTL, but a negotiation never holds capacity longer
        than `negotiation_hold` from its first offer, however often the user counters."""
        opened = reservation.negotiation_opened or now
        return min(now + self.settings.offer_ttl, opened + self.negotiation_hold)

    def _check_quota(self, userid: str, terms: Terms, now: Millis, *, renegotiating: Reservation | None = None) -> None:
        """Refuse (QuotaExceeded: nothing is recorded) a proposal over the user's quota. A
        counter replaces the offer it answers, so that offer does not count against it."""
        quota = self.quota_of(userid)
        mine = self.view.offers_of.get(userid, {})
        held = self.view.offers_held.get(userid, HeldOffers())
        if renegotiating is not None and renegotiating.id in mine:
            held = HeldOffers(held.count - 1, held.instance_ms - mine[renegotiating.id])
        try:
            check_offers(quota, held, terms.count * terms.duration,
                         lambda: min((self.view.reservations[rid].offer["hold_until"] for rid in mine), default=None),
                         now)
            self._proposals.take(userid, quota.proposals_per_minute, now)  # (only what could be decided)
        except QuotaExceeded:
            self.refusals[userid] += 1
            raise

    def _plan_instances(self, reservation: Reservation) -> list[Instance]:
        """Instances to match the agreed terms: planned on confirm, re-planned when a
        renegotiation changes the start, end or nodes."""
        terms = reservation.agreed_terms
        booking = Allocation.from_list(reservation.booking)  # type: ignore[arg-type]
        # The placement in force at the end (earlier shares may be history on a lost node).
        wanted = {s.node: s.count for s in booking.shares if s.end == terms.end} or booking.per_node()
        existing = [self._get(i) for i in self.view.instances_of.get(reservation.id, ())]
        alive = [i for i in existing if i.status != "DELETED"]
        plan = plan_instances(wanted, [PlannedInstance(i.id, i.node, i.status) for i in alive])
        for instance in alive:
            if instance.id in plan.placed:
                instance.reschedule(plan.placed[instance.id], terms.start, terms.end)
            else:
                instance.discard()
        changed: list[Instance] = list(alive)
        for number, node in enumerate(plan.new, start=len(existing) + 1):
            changed.append(Instance(reservation.id, reservation.userid, f"{str(reservation.id)[:8]}-{number}",
                                    node, terms.instance_type, terms.template, terms.start, terms.end))
        return changed

    # ------------------------------------------------------------------ lifecycle

    def activate(self, reservation_id: Any, userid: str, now: Millis, *, is_admin: bool = False) -> dict[str, Any]:
        reservation = self._load_reservation(reservation_id, userid, is_admin)
        reservation.activate()
        self._commit(reservation)
        return self.reservation(reservation.id, userid, is_admin=is_admin)

    def cancel(self, reservation_id: Any, userid: str, now: Millis, *, is_admin: bool = False) -> dict[str, Any]:
        reservation = self._load_reservation(reservation_id, userid, is_admin)
        reservation.cancel()
        instances = [self._get(i) for i in self.view.instances_of.get(reservation.id, ())]
        for instance in instances:
            instance.discard()
        self._commit(reservation, *instances)
        return self.reservation(reservation.id, userid, is_admin=is_admin)

    def lapse_due(self, now: Millis) -> list[UUID]:
        """Let every offer whose hold has run out lapse, freeing its capacity."""
        return [r.id for r in self._due(self.view.offers_due, lambda r: r.lapse(now), now)]

    def expire_due(self, now: Millis) -> list[UUID]:
        """End every agreed reservation whose end has passed, freeing its capacity."""
        return [r.id for r in self._due(self.view.ends_due, lambda r: r.expire(now), now)]

    def launch_due(self, now: Millis) -> list[VMOrder]:
        """Launch every activated reservation whose start has come: its instances boot."""
        launched = self._due(self.view.starts_due, lambda r: r.launch(now), now)
        return [order for r in launched for order in self._orders(r.id, Operation.BOOT, {"PENDING"} | LIVE)]

    def _due(self, due_times: DueTimes, step: Callable[[Reservation], None], now: Millis) -> list[Reservation]:
        """Take `step` on every reservation due by `now` in `due_times`, recorded together."""
        reservations = [self._get(i) for i in due_times.due(now)]
        for reservation in reservations:
            step(reservation)
        if reservations:
            self._commit(*reservations)
        return reservations

    def settle(self, now: Millis) -> list[VMOrder]:
        """Carry out all that has fallen due by `now`, in order: offers lapse, ended
        reservations expire (their VMs are stopped), started ones launch (their VMs boot).
        Returns the orders for the hypervisors; ends come before starts, so a node's VMs
        leave before the next reservation's arrive."""
        self.lapse_due(now)
        stops = [order for rid in self.expire_due(now)
                 for order in self._orders(rid, Operation.END, {"PENDING"} | LIVE)]
        return stops + self.launch_due(now)

    def next_due(self) -> Millis | None:
        """When the next offer lapses, reservation starts or ends (what a timer waits for)."""
        view = self.view
        times = [t for t in (view.offers_due.next(), view.ends_due.next(), view.starts_due.next()) if t is not None]
        return min(times, default=None)

    def recover_node(self, node: str, observed: Mapping[str, str], now: Millis) -> list[VMOrder]:
        """After a restart, for one host and what it runs now (domain name -> state): a VM
        that should run and is gone from the host (the host restarted, or is simulated and
        lost it with the process) boots again; one that is there but stopped while OpenPEX was
        down is recorded so, not restarted; VMs that must not be there are removed. Reservations
        that ended meanwhile are left to `settle`."""
        orders: list[VMOrder] = []
        changed = []
        for instance in self._placed_on(node):
            if not self._should_run(instance):
                continue
            agreed = self.view.reservations[instance.reservation_id].agreed_terms
            if agreed is None or agreed.end <= now:
                continue
            state = observed.get(domain_name(str(instance.id)), MISSING)
            step = recovery_step(instance.status, instance.reason, state)
            if step is Recovery.BOOT:
                orders.append(self._order(instance, Operation.BOOT))
            elif step is Recovery.STOP:
                orders.append(self._order(instance, Operation.STOP))
            elif step is Recovery.RECORD_HALTED:
                changed.append((instance.id, "HALTED", None))
            elif step is Recovery.RECORD_OBSERVED:
                changed.append((instance.id, state, WHY.get(state)))
        self._record_statuses(changed)
        return orders + self.stray_orders(node, observed)

    def _record_statuses(self, changed: list[tuple[UUID, str, str | None]]) -> None:
        loaded = []
        for iid, state, reason in changed:
            instance = self._get(iid)
            instance.record_status(state, reason)
            loaded.append(instance)
        if loaded:
            self._commit(*loaded)

    def stray_orders(self, node: str, observed: Mapping[str, str]) -> list[VMOrder]:
        """Orders to remove the VMs a host has (domain name -> state) that must not be there:
        their instance was deleted or their reservation is over (a stop that failed, or a
        process that died before carrying it out)."""
        orders = []
        for instance in self._instances_on(observed):
            if instance.node != node or not self._should_run(instance):  # (moved away: a stale copy)
                orders.append(replace(self._order(instance, Operation.END), node=node,
                                      report=instance.node == node))
        return orders

    def reconcile(self, node: str, observed: Mapping[str, str], busy: Collection[str] = ()) -> list[VMOrder]:
        """Bring the record in line with what a host reports (domain name -> state, as the
        driver names states): VMs that powered off or died behind OpenPEX's back are recorded
        so, VMs that vanished are recorded CRASHED, and VMs that must not run are to be removed
        (returned as orders). VMs in `busy` (a stop under way) are left to their node."""
        changed = []
        seen = set()
        for instance in self._instances_on(observed):
            if instance.node != node:
                continue
            seen.add(instance.id)
            if domain_name(str(instance.id)) in busy:
                continue
            state = observed[domain_name(str(instance.id))]
            if not self._should_run(instance) or state == MISSING:
                continue
            if changed_behind_our_back(instance.status, state):
                changed.append((instance.id, state, WHY.get(state)))
        for instance in self._placed_on(node):
            if instance.id not in seen and instance.status in LIVE and self._should_run(instance):
                changed.append((instance.id, "CRASHED", "its VM vanished from the host"))
        self._record_statuses(changed)
        return [order for order in self.stray_orders(node, observed) if order.domain not in busy]

    def _instances_on(self, observed: Mapping[str, str]) -> list[Instance]:
        """The instances whose VMs a host reports (not ours, or unknown: left out)."""
        ids = (vm_id_of(domain) for domain in observed)
        return [self.view.instances[i] for i in ids if i is not None and i in self.view.instances]

    def _placed_on(self, node: str) -> list[Instance]:
        return [self.view.instances[i] for i in self.view.instances_on.get(node, ())]

    def _should_run(self, instance: Instance) -> bool:
        reservation = self.view.reservations[instance.reservation_id]
        return (instance.status != "DELETED" and bool(instance.node) and reservation.launched
                and reservation.status in AGREED)

    def cancel_orders(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> list[VMOrder]:
        """What cancelling this reservation must do to its VMs (ask before `cancel`)."""
        reservation = self._visible_reservation(reservation_id, userid, is_admin)
        if not reservation.launched:
            return []
        return self._orders(reservation.id, Operation.DELETE, {"PENDING"} | LIVE | {"HALTED", "CRASHED"})

    def _orders(self, reservation_id: UUID, operation: Operation, statuses: set[str] | frozenset[str]) -> list[VMOrder]:
        return [self._order(self.view.instances[i], operation) for i in self.view.instances_of.get(reservation_id, ())
                if self.view.instances[i].status in statuses and self.view.instances[i].node]

    def _order(self, instance: Instance, operation: Operation) -> VMOrder:
        template = self.view.templates.get(instance.template)
        return VMOrder(operation, str(instance.id), domain_name(str(instance.id)), instance.node,
                       InstanceType[instance.instance_type].resources, dict(template.spec) if template else {})

    # ------------------------------------------------------------------ lost nodes

    def lose_node(self, name: str, now: Millis) -> list[VMOrder]:
        """The node stopped answering: record it DOWN (no new bookings) and re-plan."""
        node = self._load_node(name)
        node.go_down()
        if node.pending_events:
            self._commit(node)
        return self.replan_node(name, now)

    def replan_node(self, name: str, now: Millis) -> list[VMOrder]:
        """The node is DOWN: move what it was to run from `now` on to other nodes where there
        is room (placement as for a new booking), keep its past as it was, and degrade the
        reservations whose instances found no room, with the reason. Returns the BOOT orders
        for moved instances whose reservation has started (they restart elsewhere)."""
        view = self.view
        if name not in view.nodes:
            raise NotFound(f"no node {name!r}")
        if view.nodes[name].status != "DOWN":
            raise ProtocolViolation(f"node {name} is {view.nodes[name].status}: only a node that is down is re-planned")
        orders: list[VMOrder] = []
        self._withdraw_offers_on(name, now)
        for rid in [rid for rid, r in view.reservations.items() if r.status in AGREED and r.booking]:
            booking = Allocation.from_list(view.reservations[rid].booking)  # type: ignore[arg-type]
            lost = [s for s in booking.shares if s.node == name and s.end > now]
            if lost:
                orders += self._replan(rid, booking, lost, name, now)
        return orders

    def _withdraw_offers_on(self, name: str, now: Millis) -> None:
        """Open offers that hold capacity on the lost node are withdrawn (a REJECT with the
        reason): an offer promises placement, and that placement is gone."""
        changed = []
        for rid, r in self.view.reservations.items():
            if r.offer and any(s.node == name and s.end > now
                               for s in Allocation.from_list(r.offer["allocation"]).shares):
                reservation = self._get(rid)
                reservation.answer(Reply.REJECT, reason=f"node {name} was lost after this offer was made; "
                                                        "send the proposal again")
                changed.append(reservation)
        if changed:
            self._commit(*changed)

    def _replan(self, rid: UUID, booking: Allocation, lost: list[Share], name: str, now: Millis) -> list[VMOrder]:
        allocation, moved, unplaced = replan_lost(rid, booking, lost, now, self.capacity,
                                                  self.settings.admission.placement)
        reservation = self._get(rid)
        reservation.replan(allocation, unplaced, name)
        # Instances on the lost node follow the moved shares, as many as found room: running
        # ones first, then those still to boot; stopped ones keep their status on the new node.
        # Those that found none are left without a node, so nothing can ever boot them there.
        targets = [node for share in moved for node in [share.node] * share.count]
        order = {status: rank for rank, status in enumerate(["RUNNING", "PAUSED", "SUSPENDED", "PENDING"])}
        instances = sorted((self._get(i) for i in self.view.instances_of.get(rid, ())
                            if self.view.instances[i].node == name and self.view.instances[i].status != "DELETED"),
                           key=lambda i: order.get(i.status, len(order)))
        boot = []
        for instance, node in zip(instances, targets):
            if reservation.launched and instance.status in LIVE | {"PENDING"}:
                boot.append(instance)
            instance.relocate(node)
        for instance in instances[len(targets):]:
            instance.strand(f"node {name} was lost and no other node has room for it")
        self._commit(reservation, *instances)
        return [self._order(self.view.instances[i.id], Operation.BOOT) for i in boot]

    # ------------------------------------------------------------------ instances

    def instance_order(self, vm_id: Any, userid: str, operation: Operation, *, is_admin: bool = False) -> VMOrder:
        """A user's start, stop, reboot or delete of one VM; delete is recorded at once."""
        instance = self._visible_instance(vm_id, userid, is_admin)
        if instance.status == "DELETED":
            raise ProtocolViolation("the instance was deleted")
        if not instance.node and operation is not Operation.DELETE:
            raise ProtocolViolation(instance.reason or "the instance has no node to run on")
        reservation = self.view.reservations[instance.reservation_id]
        if operation is not Operation.DELETE and not (reservation.launched and reservation.status in AGREED):
            raise ProtocolViolation(
                f"an instance can be started, stopped or rebooted only while its reservation runs "
                f"(the reservation is {reservation.status.value}{'' if reservation.launched else ', not started'})")
        if operation is Operation.DELETE:
            loaded = self._get(instance.id)
            loaded.discard()
            self._commit(loaded)
        return self._order(instance, operation)

    def record_instance_status(self, vm_id: Any, status: str, reason: str | None = None, *,
                               node: str | None = None) -> dict[str, Any]:
        """What the hypervisor reported for a VM. A report from a node the instance has left
        (an order that was already under way when its node was lost) is ignored."""
        instance = self._visible_instance(vm_id, "", True)
        if node is not None and node != instance.node:
            return _instance_dict(instance)
        loaded = self._get(instance.id)
        loaded.record_status(status, reason)
        if loaded.pending_events:
            self._commit(loaded)
        return _instance_dict(self.view.instances[instance.id])

    def instance(self, vm_id: Any, userid: str, *, is_admin: bool = False) -> dict[str, Any]:
        return _instance_dict(self._visible_instance(vm_id, userid, is_admin))

    def _visible_instance(self, vm_id: Any, userid: str, is_admin: bool) -> Instance:
        return _visible(self.view.instances, "instance", vm_id, userid, is_admin)

    # ------------------------------------------------------------------ queries

    def reservation(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> dict[str, Any]:
        return self._reservation_dict(self._visible_reservation(reservation_id, userid, is_admin))

    def reservations(self, userid: str, *, is_admin: bool = False) -> list[dict[str, Any]]:
        ids = self.view.reservations.keys() if is_admin else self.view.reservations_of.get(userid, ())
        return [self._reservation_dict(self.view.reservations[i]) for i in ids]

    def instances(self, userid: str, *, is_admin: bool = False) -> list[dict[str, Any]]:
        return [_instance_dict(i) for i in self.view.instances.values() if is_admin or i.userid == userid]

    def capacity_timeline(self, node: str, start: Millis, end: Millis) -> list[dict[str, int]]:
        return [{"at": t, "cpus": free.cpus, "memoryMB": free.memory_mb, "diskGB": free.disk_gb}
                for t, free in self.capacity.timeline(node, start, end)]

    def _visible_reservation(self, reservation_id: Any, userid: str, is_admin: bool) -> Reservation:
        return _visible(self.view.reservations, "reservation", reservation_id, userid, is_admin)

    def _load_reservation(self, reservation_id: Any, userid: str, is_admin: bool) -> Reservation:
        return self._get(self._visible_reservation(reservation_id, userid, is_admin).id)

    def _reservation_dict(self, reservation: Reservation) -> dict[str, Any]:
        terms = reservation.terms_in_force
        body: dict[str, Any] = {
            "id": str(reservation.id),
            "userid": reservation.userid,
            "status": reservation.status.value,
            "template": terms.template,
            "type": terms.instance_type,
            "numInstancesFixed": terms.fixed,
            "numInstancesOption": terms.optional,
            "startTime": terms.start,
            "endTime": terms.end,
            "duration": terms.duration,
            "instances": [str(i) for i in self.view.instances_of.get(reservation.id, ())
                          if self.view.instances[i].status != "DELETED"],
        }
        if reservation.reason:
            body["reason"] = reservation.reason
        if reservation.offer:
            body["offer"] = {"state": reservation.offer["state"], "holdUntil": reservation.offer["hold_until"],
                             "proposal": Terms.from_dict(reservation.offer["terms"]).to_proposal()}
        return body

    def _reply(self, reservation: Reservation, reply: Reply, terms: Terms | None = None) -> dict[str, Any]:
        terms = terms or reservation.latest_terms
        body: dict[str, Any] = {
            "reply": reply.value,
            "proposal": {**terms.to_proposal(), "id": str(reservation.id), "userid": reservation.userid},
        }
        if reply is Reply.REJECT:
            body["reason"] = reservation.reason
        if reservation.offer and reply in (Reply.ACCEPT, Reply.COUNTER, Reply.CONFIRM_REQUEST):
            body["holdUntil"] = reservation.offer["hold_until"]
            if reservation.offer["alternatives"]:
                body["alternatives"] = reservation.offer["alternatives"]
        return body


def _visible(table: Mapping[UUID, Any], what: str, key: Any, userid: str, is_admin: bool) -> Any:
    """The reservation or instance `key` names, if the caller may see it. Someone else's is
    reported as missing, not forbidden: ids reveal nothing."""
    try:
        found = table.get(key if isinstance(key, UUID) else UUID(str(key)))
    except ValueError:
        found = None
    if found is None or not (is_admin or found.userid == userid):
        raise NotFound(f"no {what} {str(key)[:64]!r}")
    return found


def _host_key(uri: str) -> str:
    """A URI as the host it names: scheme and host name in any case, the path normalised
    ('test:///a/./b.xml' and 'test:///a//b.xml' are one file)."""
    parts = urlsplit(uri)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{posixpath.normpath(parts.path or '/')}"


def _reply_of(reservation: Reservation) -> str:
    """OpenPEX's answer to the proposal just negotiated, read off the recorded outcome."""
    if reservation.offer is None:
        return Reply.REJECT.value
    return Reply.ACCEPT.value if reservation.offer["state"] == "ACCEPTED" else Reply.COUNTER.value


def _message(reply: Any) -> Message:
    try:
        message = Message(reply)
    except ValueError:
        message = None
    if message not in _USER_MESSAGES:
        raise InvalidField("reply", "must be one of ACCEPT, COUNTER, CONFIRM, REJECT")
    return message  # type: ignore[return-value]


def _instance_dict(instance: Instance) -> dict[str, Any]:
    body = {"vmID": str(instance.id), "name": instance.name, "status": instance.status,
            "reservationId": str(instance.reservation_id), "node": instance.node,
            "startTime": instance.start, "endTime": instance.end, "ipAddress": None}
    if instance.reason:
        body["reason"] = instance.reason
    return body
