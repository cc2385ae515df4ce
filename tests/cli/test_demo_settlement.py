"""The demo's end of the day: the batch its capture and refund went into is closed through
the merchant's settlement, its totals checked against the merchant's and the bank's; and
every amount it tells is in one form."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli.main import main
from clients.merchant.batches import Batches
from setpay.v1 import gateway_admin_pb2


def test_the_demo_closes_its_batch_and_the_totals_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--json", "--dir", str(tmp_path / "demo")]) == 0
    document = json.loads(capsys.readouterr().out)
    batch = document["summary"]["batch"]
    assert (batch["captured"], batch["credited"], batch["net"]) == (3000, 1000, 2000)
    texts = [e.get("text", "") for e in document["events"]]
    closed = [t for t in texts if t.startswith(f"batch {batch['id']} closed, signed by the")]
    assert closed and "net 20.00 EUR" in closed[0]
    assert any(t.startswith("ledger: batch closed, ") for t in texts), texts


def test_a_batch_left_open_fails_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = Batches.administer

    def queried(self: Batches, operation: int, batch_id: str = "", **kw: object) -> object:
        # The batch's totals as a query gives them: the batch stays open.
        return real(self, gateway_admin_pb2.BATCH_OPERATION_REQUEST, batch_id)

    monkeypatch.setattr(Batches, "administer", queried)
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("setpay demo: FAILED at 'End of the day"), err
    assert "was not closed" in err


def test_amounts_are_told_in_one_form_and_the_run_ends_on_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    # The parties log minor units and the ISO 4217 number; the story tells "42.50 EUR".
    assert re.findall(r"\b\d+ \(978\)", out) == []
    assert "for 42.50 EUR" in out and "AuthRevReq" in out
    assert "the whole hold of 15.00 EUR is released" in out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("[ok] Every outcome was as it must be: 42.50 EUR authorized, ")
    assert "ok: True" not in last
