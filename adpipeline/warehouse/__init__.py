"""The Postgres warehouse: embedded server, connections, migrations, bulk loader, ops tables."""
