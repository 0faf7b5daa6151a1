"""serve's admin endpoint (what `pixeltrack query` and `forget` use while serve owns the chDB folder)."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from pixeltrack.serve_admin import ADMIN_HEADER, admin_app
from processors.writer import ClickHouseWriter
from tests.plugins.clickhouse import ClickHouseDb


async def test_the_admin_endpoint_reads_only_and_answers_bad_input_with_400(clickhouse: ClickHouseDb,
                                                                            tmp_path: Path) -> None:
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    auth = {ADMIN_HEADER: "t0ken"}
    target = tmp_path / "out.txt"
    try:
        async with TestClient(TestServer(admin_app(writer, "t0ken"), host="127.0.0.1")) as client:
            assert (await client.post("/query", json={"sql": "SELECT 1"})).status == 401
            ok = await client.post("/query", headers=auth, json={"sql": "SELECT count() AS n FROM sends"})
            assert (await ok.json()) == {"columns": ["n"], "rows": [[0]]}
            for sql in (f"SELECT 1 INTO OUTFILE '{target}'", "INSERT INTO erasures (tenant) VALUES ('x')",
                        "KILL QUERY WHERE 1"):
                assert (await client.post("/query", headers=auth, json={"sql": sql})).status == 400, sql
            for body in ([1, 2], {"recipient": ["a"]}, {"recipient": "r", "tenant": 7}):
                assert (await client.post("/forget", headers=auth, json=body)).status == 400, body
            bad_json = await client.post("/forget", headers=auth, data=b"{not json")
            assert bad_json.status == 400
    finally:
        await writer.close()
    assert not target.exists()
    assert clickhouse.rows("SELECT count() FROM erasures") == [(0,)]
