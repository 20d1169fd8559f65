"""The read model's tables, written once for both databases.

Each column has a kind; each database names the kinds its own way (SQLite has no uuid, boolean,
JSON or timestamp types, PostgreSQL has them all). Statements are generated from these lists,
so the two databases always hold the same columns in the same order as the row builders
(`rows.py`) produce them. docs/sql-read-model.md says what each column means.
"""

from __future__ import annotations

from dataclasses import dataclass

# kind -> (SQLite type, PostgreSQL type)
KINDS = {
    "id": ("TEXT", "uuid"),
    "text": ("TEXT", "text"),
    "int": ("INTEGER", "bigint"),
    "bool": ("INTEGER", "boolean"),
    "json": ("TEXT", "jsonb"),
    # An exact amount: a decimal string in SQLite (whose NUMERIC would make 0.10 a float), numeric
    # in PostgreSQL. Written as a decimal string ("12.50") to both.
    "decimal": ("TEXT", "numeric"),
}
# An instant, from its epoch-milliseconds column: computed by the database, never written, so
# it costs the projection nothing (ISO 8601 text in UTC in SQLite; timestamptz in PostgreSQL).
_INSTANT = ("TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', {ms} / 1000.0, 'unixepoch')) VIRTUAL",
            "timestamptz GENERATED ALWAYS AS (to_timestamp({ms} / 1000.0)) STORED")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, kind): what the projection writes, in row order
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    instants: tuple[tuple[str, str], ...] = ()  # (name, the *_ms column it reads)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


RESERVATIONS = Table(
    "reservations",
    (("id", "id"), ("userid", "text"), ("status", "text"),
     ("instance_type", "text"), ("template", "text"), ("fixed", "int"), ("optional", "int"),
     ("start_ms", "int"), ("end_ms", "int"), ("duration_ms", "int"),
     ("reason", "text"), ("offer_state", "text"), ("hold_until_ms", "int"),
     ("activated", "bool"), ("launched", "bool"),
     ("price", "decimal"), ("currency", "text"), ("offer_price", "decimal"), ("cancelled_ms", "int"),
     ("version", "int"), ("created_ms", "int"), ("modified_ms", "int")),
    key=("id",),
    indexes=(("userid",),),
    instants=(("start_at", "start_ms"), ("end_at", "end_ms"), ("cancelled_at", "cancelled_ms")),
)

INSTANCES = Table(
    "instances",
    (("vm_id", "id"), ("reservation_id", "id"), ("userid", "text"), ("name", "text"), ("node", "text"),
     ("status", "text"), ("instance_type", "text"), ("template", "text"),
     ("start_ms", "int"), ("end_ms", "int"), ("reason", "text"),
     ("version", "int"), ("created_ms", "int"), ("modified_ms", "int")),
    key=("vm_id",),
    indexes=(("reservation_id",), ("node",)),
    instants=(("start_at", "start_ms"), ("end_at", "end_ms")),
)

NODES = Table(
    "nodes",
    (("name", "text"), ("id", "id"), ("uri", "text"), ("status", "text"),
     ("cpus", "int"), ("memory_mb", "int"), ("disk_gb", "int"), ("drained", "bool"), ("version", "int")),
    key=("name",),
)

BOOKINGS = Table(
    "bookings",
    (("reservation_id", "id"), ("share", "int"), ("node", "text"), ("start_ms", "int"), ("end_ms", "int"),
     ("count", "int"), ("cpus", "int"), ("memory_mb", "int"), ("disk_gb", "int")),
    key=("reservation_id", "share"),
    indexes=(("node", "start_ms"),),
    instants=(("start_at", "start_ms"), ("end_at", "end_ms")),
)

EVENTS = Table(
    "events",
    (("position", "int"), ("originator_id", "id"), ("originator_version", "int"), ("kind", "text"),
     ("timestamp_ms", "int"), ("fields", "json")),
    key=("position",),
    indexes=(("originator_id", "originator_version"),),
    instants=(("timestamp", "timestamp_ms"),),
)

# The rate card: one row per size for each card the admin set (PriceList events), in force from
# when it was recorded until the next one was (NULL: in force).
PRICES = Table(
    "prices",
    (("position", "int"), ("size", "text"), ("rate", "decimal"), ("currency", "text"),
     ("from_ms", "int"), ("until_ms", "int")),
    key=("position", "size"),
    instants=(("from_at", "from_ms"), ("until_at", "until_ms")),
)

# Which event store this read model is of (one row): a second store is refused.
SOURCE = Table(
    "read_model_source",
    (("identity", "text"), ("location", "text"), ("recorded_ms", "int")),
    key=("identity",),
)

TABLES = (RESERVATIONS, INSTANCES, NODES, BOOKINGS, PRICES, EVENTS, SOURCE)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Dialect:
    """How one database spells the statements: its types, parameter marker and table names."""

    postgres: bool
    schema: str = ""

    @property
    def marker(self) -> str:
        return "%s" if self.postgres else "?"

    def table(self, name: str) -> str:
        return f"{quote(self.schema)}.{quote(name)}" if self.postgres else quote(name)

    def create(self, table: Table) -> list[str]:
        columns = ", ".join([*(f"{quote(name)} {KINDS[kind][self.postgres]}" for name, kind in table.columns),
                             *(f"{quote(name)} {_INSTANT[self.postgres].format(ms=quote(ms))}"
                               for name, ms in table.instants)])
        key = ", ".join(quote(name) for name in table.key)
        statements = [f"CREATE TABLE IF NOT EXISTS {self.table(table.name)} ({columns}, PRIMARY KEY ({key}))"]
        for index in table.indexes:
            index_name = quote("_".join((table.name, *index)))
            statements.append(f"CREATE INDEX IF NOT EXISTS {index_name} ON {self.table(table.name)} "
                              f"({', '.join(quote(c) for c in index)})")
        return statements

    def insert(self, table: Table) -> str:
        names = ", ".join(quote(c) for c in table.column_names)
        markers = ", ".join([self.marker] * len(table.columns))
        return f"INSERT INTO {self.table(table.name)} ({names}) VALUES ({markers})"

    def upsert(self, table: Table) -> str:
        """Insert, or replace the row with the same key (a view row follows its aggregate)."""
        changed = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in table.column_names if c not in table.key)
        key = ", ".join(quote(c) for c in table.key)
        return f"{self.insert(table)} ON CONFLICT ({key}) DO UPDATE SET {changed}"

    def close_prices(self) -> str:
        """The card in force ends when the next one comes in."""
        return (f"UPDATE {self.table(PRICES.name)} SET {quote('until_ms')} = {self.marker} "
                f"WHERE {quote('until_ms')} IS NULL")

    def columns_of(self, table: Table) -> tuple[str, tuple[str, ...]]:
        """A query for the names of a table's columns as the database has them (none: no table)."""
        if self.postgres:
            return ("SELECT column_name AS name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s", (self.schema, table.name))
        return "SELECT name FROM pragma_table_info(?)", (table.name,)

    def delete_bookings(self) -> str:
        return f"DELETE FROM {self.table(BOOKINGS.name)} WHERE {quote('reservation_id')} = {self.marker}"
