"""The throwaway PostgreSQL cluster of the ledger tests keeps to its private directory."""

from __future__ import annotations

import psycopg

from tests.gateway.ledger.ledger_support import PgCluster


def test_the_cluster_binds_no_tcp_port_only_its_private_socket(pg_cluster: PgCluster) -> None:
    # What lets every session use the same CLUSTER_PORT without a race: with a TCP
    # listener, it would collide with another cluster or a system PostgreSQL.
    with psycopg.connect(pg_cluster.conninfo("postgres")) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
    assert (pg_cluster.root / f".s.PGSQL.{pg_cluster.port}").is_socket()
