"""A sync commits only while its Dagster run is alive (issue 24, finding 5): a step whose run was failed
meanwhile (run monitoring's max runtime, a killed worker) rolls back instead of committing beside the retry."""


import dagster as dg
import pytest

from adpipeline.warehouse.loader import Table
from adpipeline.warehouse.resource import WarehouseResource


@pytest.fixture
def table(conn, scratch_schema) -> Table:
    spec = Table(scratch_schema, "fenced", {"id": "bigint", "value": "integer"}, ("id",), payload=False)
    conn.execute(spec.create_sql())
    conn.commit()
    return spec


def load_job(table: Table, fail_the_run_meanwhile: bool) -> dg.AssetsDefinition:
    @dg.asset(name="fenced_load")
    def fenced_load(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> None:
        with warehouse.sync(source="t_fence", scope=table.schema, entity="fenced", sync_type="full",
                            run_id=context.run_id) as sync:
            sync.load(table, [{"id": i, "value": i} for i in range(10)])
            if fail_the_run_meanwhile:  # what run monitoring does to a run past its max runtime
                context.instance.report_run_failed(context.dagster_run, "Exceeded maximum runtime of 3600 seconds.")

    return fenced_load


def sync_row(conn, schema: str) -> tuple[str, str | None]:
    return conn.execute("SELECT status, error FROM ops.etl_sync_log WHERE source = 't_fence' AND scope = %s"
                        " ORDER BY id DESC LIMIT 1", (schema,)).fetchone()


@pytest.mark.parametrize("fail_the_run_meanwhile", [False, True])
def test_a_sync_commits_only_while_its_run_is_alive(warehouse_url, conn, table, fail_the_run_meanwhile):
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([load_job(table, fail_the_run_meanwhile)], instance=instance, raise_on_error=False,
                                resources={"warehouse": WarehouseResource(url=warehouse_url)})
    rows = conn.execute(f"SELECT count(*) FROM {table.qualified}").fetchone()[0]
    status, error = sync_row(conn, table.schema)
    if not fail_the_run_meanwhile:
        assert result.success and rows == 10 and status == "success"
    else:
        assert not result.success
        assert rows == 0 and status == "failed"
        assert "not committed" in error and "FAILURE" in error
