"""OpenPEX's projections as SQL tables (`openpex project`), for reporting and ad-hoc queries.

The event store stays the truth; these tables are a materialised view of it in a SQLite file
or a PostgreSQL schema, kept by eventsourcing's projection runner with a tracking record
written in the same transaction as each batch of rows (docs/sql-read-model.md).
"""

from pex.sql_read_model.running import Outcome, project
from pex.sql_read_model.targets import ProjectionError

__all__ = ["Outcome", "ProjectionError", "project"]
