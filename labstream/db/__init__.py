"""The lab database: connections, migrations and the `labstream db` command.

`migrate()` applies `labstream/db/migrations/NNNN_name.sql` in order, each in
its own transaction, and records them in `labstream.schema_migrations`.
`connect()` opens a psycopg 3 connection and turns "cannot connect" into a
`ServiceUnavailable` that names the URL (password masked) and the fix.
"""

from base.db import connect, mask_url
from labstream.db.migrate import migrate, migration_status

__all__ = ["connect", "mask_url", "migrate", "migration_status"]
