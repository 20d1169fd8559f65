"""`openpex serve`: the composition root. Chooses the store, opens the application, seeds a
first start (admin account, templates, simulated hosts), starts the actors and serves HTTP.

SIGTERM and SIGINT stop it cleanly: the HTTP server first, then the actors in reverse order,
the store last. Nothing needs a clean stop to be safe: every confirmed reservation is in the
store the moment it is answered, and every timer is derived from the store at the next start.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import secrets
import signal
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from argon2 import PasswordHasher
from aiohttp import web

from pex.actors.calls import ask_sync
from pex.actors.notary import Notarising
from pex import snapshots
from pex.following import LogListener
from pex.actors.system import System
from pex.audit.ledger import LedgerError
from pex.audit.signing import KEY_FILE, SigningKeyError, signing_key
from pex.domain.pricing import DemandPricing, PricingPolicy
from pex.domain.application import OpenPEX, Settings
from pex.domain.catalogue import node_size
from pex.domain.clock import SECOND, Clock, SystemClock
from pex.domain.errors import DomainError, NotFound, one_line
from pex.domain.quotas import Quota
from pex.domain.sizes import DEFAULT_NODE, Resources
from pex.drivers.base import Driver, DriverError
from pex.drivers.libvirt import LibvirtDriver
from pex.drivers.local_files import LocalFiles
from pex.drivers.simulated import host_path, write_host
from pex.fencing import RECORDER_TOPIC, RENEW_EVERY, Lease, LeaseKeeper, StoreInUse, StoreLock
from pex.http.app import create_app
from pex.http.portal.sessions import session_key as portal_session_key
from pex.http.auth import PasswordCheck
from pex.logs import LogFormat, configure as configure_logging
from pex.stores import is_postgres, location, writer_env

log = logging.getLogger("openpex")

GUEST_DIR = Path(__file__).resolve().parents[1] / "var" / "guest"
GUEST_TEMPLATE = "tiny-linux"

TEMPLATES = (
    ("debian-12", "Debian 12 (bookworm), simulated"),
    ("ubuntu-24.04", "Ubuntu 24.04 LTS, simulated"),
    ("alpine-3.20", "Alpine Linux 3.20, simulated"),
)


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("var")
    simulated_nodes: int = 4
    node_spec: Resources = DEFAULT_NODE
    nodes: list[tuple[str, str]] = field(default_factory=list)  # (name, libvirt URI) of real hosts
    database: str | None = None  # a SQLite path or postgresql://user:password@host:port/db
    offer_ttl: float = 300.0  # seconds
    grace: float = 30.0  # seconds between a graceful shutdown and a forced one
    monitor_interval: float = 5.0  # seconds between polls of the node and VM monitors
    guest_dir: Path = GUEST_DIR  # the tiny real guest (scripts/build-guest.sh), offered if built
    image_dir: Path | None = None  # where template files may be (default: the data dir's images/)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API
    quota: Quota = Quota()  # each user's limits unless the admin sets others
    signing_key: Path | None = None  # the tree heads' Ed25519 key (default: made in the data dir)
    head_interval: float = 1.0  # seconds between signed tree heads; 0: none
    snapshot_every: int = 20_000  # events the log grows by between snapshots of the view; 0: none
    tls_cert: Path | None = None  # serve HTTPS with this certificate (PEM); the portal's cookies are then Secure
    tls_key: Path | None = None  # its private key, if not in the certificate's file
    pricing: PricingPolicy = field(default_factory=DemandPricing)  # how demand moves the rate card's prices

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def images(self) -> Path:
        return self.image_dir if self.image_dir is not None else self.data_dir / "images"


def store_env(database: str | None, data_dir: Path) -> dict[str, str]:
    """eventsourcing's settings for a SQLite file (default: events.db in the data directory)
    or a PostgreSQL URL (its appends fenced by the writer's lease)."""
    store = store_of(database, data_dir)
    env = writer_env(store)
    if is_postgres(store):
        env["APPLICATION_RECORDER_TOPIC"] = RECORDER_TOPIC
        # An append cut off mid-transaction holds the lease row: the server drops it after this.
        env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] = "2"
    return env


def store_of(database: str | None, data_dir: Path) -> str:
    return database or str(data_dir / "events.db")


def notarising(config: Config) -> Notarising | None:
    """The store and the key the tree heads are signed with: --signing-key, else the data
    dir's own (made 0600 on the first start, its public half beside it). None with
    --head-interval 0: no tree heads (benchmarks measure what they cost)."""
    if config.head_interval == 0:
        return None
    path = config.signing_key or config.data_dir / KEY_FILE
    key = signing_key(path, create=config.signing_key is None)
    return Notarising(store_of(config.database, config.data_dir), key, config.head_interval, path)


def parse_node_spec(text: str) -> Resources:
    """'cpus=8,memory=16384,disk=200' (memory in MB, disk in GB); what is not given is the
    default host's."""
    values = dict(zip(("cpus", "memory", "disk"), DEFAULT_NODE.as_tuple()))
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in values or not value.isdigit() or int(value) <= 0:
            raise ValueError(f"--node-spec: {part!r} is not cpus=N, memory=MB or disk=GB with N > 0")
        values[key] = int(value)
    return Resources(values["cpus"], values["memory"], values["disk"])


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def keep_private(data_dir: Path, database: str | None) -> None:
    """The store holds every account's password hash and e-mail address: the data dir is 0700
    and its files 0600 from the start (the SQLite file is created so before the store opens it;
    SQLite gives its WAL the same mode), and what an older version left readable is tightened."""
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    paths = [data_dir, *data_dir.rglob("*")]
    sqlite = None if database and database.startswith(("postgres://", "postgresql://")) else \
        Path(database) if database else data_dir / "events.db"
    if sqlite is not None:
        if not sqlite.exists():
            os.close(os.open(sqlite, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
        paths += [path for path in (sqlite, Path(f"{sqlite}-wal"), Path(f"{sqlite}-shm")) if path.exists()]
    tightened = []
    for path in dict.fromkeys(paths):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(mode & 0o700)  # the owner keeps what it had; nobody else keeps anything
            tightened.append(path.name)
    if tightened:
        log.warning("made %d files in %s private to their owner (were readable by others): %s",
                    len(tightened), data_dir, ", ".join(sorted(tightened)[:10]))


class Writer:
    """This process's right to write its store: the SQLite file's lock (StoreInUse if another
    process holds it), or the PostgreSQL lease, renewed by a LeaseKeeper from the moment it is
    taken (a rebuild may take seconds). A process that finds the lease held is a standby until
    it can take it (`wait_for_lease`)."""

    def __init__(self, config: Config) -> None:
        self.store = store_of(config.database, config.data_dir)
        self.lost: str | None = None  # why the lease was lost, if it was
        self.on_lost: Callable[[str], None] = lambda why: None  # told once serving (before: `lost` is read)
        self._lock: StoreLock | None = None
        self._lease: Lease | None = None
        self.keeper: LeaseKeeper | None = None
        self._stopping = threading.Event()
        self._waiter: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the store: True if this process is its writer now, False if the PostgreSQL
        lease is another's (after waiting out a writer killed a moment ago, whose lease lasts
        up to LEASE_SECONDS): a standby."""
        if not is_postgres(self.store):
            self._lock = StoreLock(Path(self.store))
            self._lock.acquire()
            return True
        self._lease = lease = Lease(writer_env(self.store))
        try:
            lease.create()
            give_up = time.monotonic() + lease.seconds + 2 * RENEW_EVERY
            while not self._try_lease() and time.monotonic() < give_up:
                time.sleep(RENEW_EVERY / 5)
        except Exception:
            lease.close()
            raise
        if self.keeper is None:
            log.info("standby of %s: its writer is %s", location(self.store), lease.held_by())
        return self.keeper is not None

    def _try_lease(self) -> bool:
        assert self._lease is not None
        sent = time.monotonic()
        token = self._lease.acquire()
        if token is None:
            return False
        self.keeper = LeaseKeeper(self._lease, self._lose, since=sent)
        self.keeper.start()
        log.info("writer of %s (lease token %d)", location(self.store), token)
        return True

    def wait_for_lease(self, take_over: Callable[[], None], every: float = RENEW_EVERY / 2) -> None:
        """A standby's watch: try for the lease every `every` seconds (it lapses LEASE_SECONDS
        after its writer's last renewal); once taken, `take_over` (in this thread)."""
        def watch() -> None:
            while not self._stopping.wait(every):
                try:
                    if self._try_lease():
                        break
                except psycopg.Error as error:
                    log.warning("standby: cannot reach the store to try for the lease: %s", one_line(error))
                    if self._lease is not None:
                        self._lease.close()
            else:
                return
            try:
                take_over()
            except Exception:
                log.exception("taking over as the writer failed: stopping")
                self._lose("taking over failed")

        self._waiter = threading.Thread(target=watch, name="standby-watch", daemon=True)
        self._waiter.start()

    def _lose(self, why: str) -> None:
        self.lost = why
        log.error("lost the writer's lease of %s (%s): recording nothing more and stopping", location(self.store), why)
        self.on_lost(why)

    def fence(self, app: OpenPEX) -> None:
        """Hand the lease to the store's recorder: it appends only while the lease holds (a
        standby's recorder, with none, appends nothing)."""
        if self._lease is not None:
            app.recorder.fence = self.keeper  # type: ignore[attr-defined]

    def token(self) -> int | None:
        """The lease's token while this process surely holds it (else None)."""
        keeper = self.keeper
        return keeper.token if keeper is not None and keeper.holds() else None

    def fencing(self, notarising: Notarising | None) -> Notarising | None:
        """The Notary's settings, its heads fenced by the lease (on PostgreSQL)."""
        if notarising is None or not is_postgres(self.store):
            return notarising
        return replace(notarising, fence=self.token)

    def check(self) -> None:
        if self.lost is not None:
            raise StoreInUse(f"lost the writer's lease of {location(self.store)} while starting: {self.lost}")

    def stop_watching(self) -> None:
        self._stopping.set()
        if self._waiter is not None and self._waiter is not threading.current_thread():
            self._waiter.join(timeout=30)

    def release(self) -> None:
        self.stop_watching()
        if self.keeper is not None:
            self.keeper.stop()
        if self._lease is not None:
            if self.lost is None:
                self._lease.release()
            self._lease.close()
        if self._lock is not None:
            self._lock.release()


WRITER = web.AppKey("writer", Writer)  # the service's right to write (its lock or lease)


def open_app(config: Config, clock: Clock) -> OpenPEX:
    config.images.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    settings = Settings(offer_ttl=int(config.offer_ttl * SECOND), quota=config.quota, pricing=config.pricing)
    store = store_of(config.database, config.data_dir)
    return OpenPEX(store_env(config.database, config.data_dir), settings=settings, origin=clock.now(),
                   opening=snapshots.opening(config.data_dir / snapshots.FILE_NAME, store))


def seed(app: OpenPEX, config: Config, hasher: PasswordHasher) -> str | None:
    """What a first start needs (and later starts may add): the admin account, the templates,
    the simulated hosts and the configured real ones. Returns a generated admin password."""
    generated = None
    try:
        app.catalogue.account("admin")
    except NotFound:
        password = os.environ.get("OPENPEX_ADMIN_PASSWORD") or ""
        if not password:
            password = generated = secrets.token_urlsafe(12)
        app.catalogue.register_account("admin", hasher.hash(password), "Administrator", "", is_admin=True)
    if not app.catalogue.templates():
        for name, description in TEMPLATES:
            app.catalogue.register_template(name, description, {"kind": "simulated"})
    if GUEST_TEMPLATE not in {t.name for t in app.catalogue.templates()}:
        guest = config.guest_dir / "guest.json"
        if guest.is_file():
            spec = {"kind": "kernel", **json.loads(guest.read_text()),
                    "console_dir": str((config.data_dir / "consoles").resolve())}
            app.catalogue.register_template(GUEST_TEMPLATE, "A Linux kernel and a busybox userspace that powers off on the "
                                  "ACPI button (boots on QEMU hosts; a stand-in VM on simulated ones)", spec)
    known = {node.name for node in app.catalogue.nodes()}
    size = config.node_spec
    for i in range(1, config.simulated_nodes + 1):
        name = f"sim{i:02d}"
        uri = write_host(host_path(config.data_dir, name), name, size.cpus, size.memory_mb)
        if name not in known:
            app.catalogue.register_node(name, uri, size)
    for name, uri in config.nodes:
        if name not in known:
            app.catalogue.check_new_node(name, uri)  # before anything connects to it
            reported: Resources | None = None
            try:
                with LibvirtDriver(uri) as driver:
                    info = driver.node_info()
                reported = Resources(info.cpus, info.memory_mb, 0)
            except DriverError as error:  # registered all the same, DOWN, until it answers
                log.warning("node %s (%s) cannot be reached: %s; registered DOWN", name, uri, error)
            app.catalogue.register_node(name, uri, node_size({}, reported, size), reachable=reported is not None)
    app.catalogue.seed_prices()
    return generated


def build(config: Config, clock: Clock | None = None, passwords: PasswordCheck | None = None,
          connect: Callable[[str], Driver] = LibvirtDriver,
          on_lost: Callable[[str], None] | None = None,
          ) -> tuple[web.Application, System, str | None]:
    """Take the store (StoreInUse if another process writes a SQLite store; a standby if
    another holds the PostgreSQL lease), open it, seed it, start the actors; returns the HTTP
    app (whose cleanup stops the actors and lets the store go), the system and a generated
    admin password (None unless one was made now). `on_lost` is told if the PostgreSQL lease
    is lost (by default the process stops: see `stop_for_good`)."""
    clock = clock or SystemClock()
    passwords = passwords or PasswordCheck()
    keep_private(config.data_dir, config.database)
    writer = Writer(config)
    writing = writer.acquire()
    try:
        app = open_app(config, clock)
    except BaseException:
        writer.release()
        raise
    generated = None
    try:
        writer.fence(app)
        if writing:
            generated = seed(app, config, passwords.hasher)
        cookie_key = portal_session_key(config.data_dir)
        system = System(app, clock, connect, grace=int(config.grace * SECOND),
                        monitor_interval=config.monitor_interval, default_node=config.node_spec,
                        files=LocalFiles(images=config.images, hosts=config.data_dir / "hosts"),
                        notarising=writer.fencing(notarising(config)))
        writer.check()
    except BaseException:
        app.close()
        writer.release()
        raise
    if writing:
        system.start()
    else:
        env = store_env(config.database, config.data_dir)
        channel = getattr(app.recorder, "channel_name", None)  # (PostgreSQL's: a standby's store)
        system.start_reading(follow=FOLLOW_EVERY, listen=None if channel is None else (
            lambda read_on: LogListener(env, channel, read_on, fallback=LISTEN_FALLBACK).start()))

        def take_over() -> None:
            started = time.monotonic()
            writer.fence(app)
            system.catch_up()  # (before seeding: what the writer registered is there)
            ask_sync(system.allocator, lambda allocator: seed(allocator.app, config, passwords.hasher), alone=True)
            system.take_over()
            log.info("took over as the writer of %s in %.2f s from the lease", location(writer.store),
                     time.monotonic() - started)

        writer.wait_for_lease(take_over)
    writer.on_lost = on_lost or stop_for_good
    if writer.lost is not None:  # (lost in the moment between)
        system.stop()
        writer.release()
        writer.check()
    http = create_app(system, passwords, cors_origins=config.cors_origins,
                      session_key=cookie_key, secure_cookies=config.tls_cert is not None, data_dir=config.data_dir)
    snapshotter = None
    if config.snapshot_every:  # (a standby keeps its own: it starts from it if it restarts)
        snapshotter = snapshots.Snapshotter(lambda: system.app.view.position, config.data_dir / snapshots.FILE_NAME,
                                            store_of(config.database, config.data_dir),
                                            every=config.snapshot_every).start()

    async def stop_actors(_: web.Application) -> None:
        writer.stop_watching()  # (a standby takes over no more)
        if snapshotter is not None:
            snapshotter.stop()
        system.stop()
        writer.release()  # (after the last append: a standby may take over at once)
        log.info("stopped")

    http.on_cleanup.append(stop_actors)
    http[WRITER] = writer
    return http, system, generated


FOLLOW_EVERY = 0.1  # seconds between a standby's reads of the log, if it cannot listen for appends
LISTEN_FALLBACK = 1.0  # seconds a listening standby waits for a notification before reading on all the same
LOST_EXIT_AFTER = 5.0  # seconds a writer that lost its lease has to stop cleanly


def stop_for_good(why: str) -> None:
    """The lease is lost: stop as SIGTERM would, and if a thread stuck on the database (a frozen
    server answers nothing) keeps that from ending within LOST_EXIT_AFTER, exit all the same.
    Nothing is lost either way: this process can append nothing more (the fence)."""
    os.kill(os.getpid(), signal.SIGTERM)
    timer = threading.Timer(LOST_EXIT_AFTER, lambda: os._exit(3))
    timer.daemon = True
    timer.start()


FREEZE_EVERY = 1.0  # seconds between collect-and-freeze steps
FULL_EVERY = 600.0  # seconds between full collections of the whole heap


async def heap_keeper(_: web.Application) -> AsyncIterator[None]:
    """Keep the cyclic garbage collector's pauses short. The projections hold a large, growing
    heap of long-lived objects; a full collection rescans all of it (tens to hundreds of ms at
    tens of thousands of reservations, stalling every request queued behind the Allocator).
    So every second what survived a collection is frozen, and later collections scan only what
    is newer. Cycles that were alive when frozen and died later are reclaimed by a full
    collection of the unfrozen heap every ten minutes: one long pause instead of many."""
    gc.collect()
    gc.freeze()

    async def keep() -> None:
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        while True:
            await asyncio.sleep(FREEZE_EVERY)
            if loop.time() - last_full >= FULL_EVERY:
                gc.unfreeze()
                last_full = loop.time()
            gc.collect()
            gc.freeze()

    task = asyncio.create_task(keep())
    yield
    task.cancel()


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context, if it serves HTTPS (ValueError: the files cannot be used)."""
    if config.tls_cert is None:
        if config.tls_key is not None:
            raise ValueError("--tls-key needs --tls-cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"--tls-cert/--tls-key cannot be used: {error}") from None
    return context


# A thread that gave up the GIL (the Allocator between SQLite calls, the HTTP loop between
# requests, a node worker in a libvirt call) waits up to this long to take it back from busy
# ones. Python's 5 ms let the node workers of a boot storm starve the Allocator that records
# what they report: at 10,000 hosts all RUNNING took 3.2-5.4 s at 5 ms, 2.6-4.1 s at 1 ms, for
# about 4 % fewer negotiations/s on one core (benchmarks/README.md).
SWITCH_INTERVAL = 0.001


def serve(config: Config, log_format: LogFormat = "text") -> int:
    configure_logging(log_format)
    os.umask(0o077)  # everything this process creates (store, keys, host files) is its owner's alone
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        tls = tls_context(config)
        http, _, generated = build(config)
    except (DriverError, ValueError, DomainError, SigningKeyError, LedgerError, StoreInUse) as error:  # e.g. a bad --node name
        log.error("cannot start: %s", error)
        return 1
    except psycopg.Error as error:
        log.error("cannot start: the store's database failed: %s", one_line(error))
        return 1
    if generated:
        print(f"openpex: created the account 'admin' with the password {generated} "
              "(shown once; set OPENPEX_ADMIN_PASSWORD to choose it)", flush=True)

    async def announce(_: web.Application) -> None:
        print(f"openpex: serving {config.scheme}://{config.host}:{config.port}/OpenPEX and the portal at "
              f"{config.scheme}://{config.host}:{config.port}/ (data in {config.data_dir})", flush=True)

    http.on_startup.append(announce)
    http.cleanup_ctx.append(heap_keeper)
    web.run_app(http, host=config.host, port=config.port, print=None, access_log=None, ssl_context=tls)
    if http[WRITER].lost is not None:
        return 3  # stopped because another process took the store over
    return 0
