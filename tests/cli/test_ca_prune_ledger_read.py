"""``setpay ca prune-gateway``: which ledger it reads, whether that ledger is the bank's,
and which of its decisions awaiting their answer can be sealed to a key it deletes.

- ``setpay init`` always makes a SQLite ``ledger.db``. A bank pointed at PostgreSQL by
  ``SETPAY_LEDGER`` in its service's environment, pruned from a shell without it, had the
  pruning read that empty file, find nothing waiting and delete the key-exchange key that
  the PostgreSQL ledger's decision is sealed to: answered UNAVAILABLE for good. The
  ledger read lacks the account of a merchant the bank's Merchant CA certified, so it is
  refused (dry run too), saying to set ``SETPAY_LEDGER`` as the bank has it; the ledger
  read is named on standard error, never with its password.
- A decision checked more than ``SEALED_MARGIN`` after the deleted certificate was
  revoked cannot be sealed to it: not counted, and the pruning goes ahead; one checked
  before the revocation is counted, and the refusal says how many were left out.

Real parts: ``init_bank``, ``renew-gateway``, ``revoke`` and ``prune-gateway`` through the
CLI, a PostgreSQL cluster of the tests' own, a merchant certificate issued by the bank's
Merchant CA and recorded in its ``ca.db`` as a certification records it, with its account
opened in the bank's ledger as the certification opens it.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import gateway_pruning as pruning
from gateway import pruning_ledger
from gateway.bank_pki import GATEWAY_KEX_LABEL, load_bank_pki, open_ca_store
from gateway.ca.publishing import record_certificate
from gateway.config import load
from gateway.provisioning import init_bank
from setcore.freshness import now_ms
from setcore.pki.extensions import MerchantData
from setcore.pki.issuance import issue_merchant
from setcore.pki.roles import CertificateUsage
from tests.cli.test_ca_prune import _ca
from tests.cli.test_ca_prune_unanswered import (  # noqa: F401  (pg: a fixture)
    Renewed,
    _decide_unanswered,
    _ledger,
    _new_schema,
    _renewed,
    _revoke,
    pg,
)
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, MERCHANT, PAN_A
from tests.ports import free_port

# Later than ``SEALED_MARGIN`` after now (checked in the last test): a decision checked
# then cannot be sealed to a certificate revoked now.
PAST_THE_MARGIN_MS = 2 * 24 * 3600 * 1000

# A password the test cluster (trust authentication) never asks for: the URL carries it
# as a bank's would, and nothing the pruning says may show it.
PASSWORD = "pw-never-shown"


def _with_password(url: str) -> str:
    """``url`` (``postgresql://ledger@/...``) with ``PASSWORD`` for its user."""
    return url.replace("postgresql://ledger@", f"postgresql://ledger:{PASSWORD}@", 1)


@pytest.fixture
def renewed_sqlite(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Renewed:
    """A stopped bank on the SQLite ledger ``init_bank`` made, renewed once."""
    return _renewed("sqlite", request, tmp_path / "bank", monkeypatch, capsys)


def _certify_merchant(made: Path, merchant_id: str) -> None:
    """A merchant signature certificate issued by the bank's Merchant CA and recorded in
    its ca.db, as a certification does (its account opened by the caller)."""
    config = load(made)
    pki = load_bank_pki(config, judge_presented=False)
    try:
        issuing = pki.authority_keys().merchant.issuing
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        merchant = MerchantData(merchant_id, "Prune Test Shop", pan_allowed=False)
        der = issue_merchant(issuing, key, CertificateUsage.SIGNATURE, merchant)
        with contextlib.closing(open_ca_store(config)) as store, store.write() as tx:
            record_certificate(tx, der, issuing, datetime.now(UTC))
    finally:
        pki.close()


def test_a_shell_without_the_banks_setpay_ledger_is_refused_and_deletes_nothing(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The reviewer's case. Before: the shell's pruning read init's empty ledger.db, exit
    0, and deleted the revoked key the PostgreSQL ledger's decision is sealed to."""
    monkeypatch.setenv("SETPAY_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("SETPAY_CA_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.delenv("SETPAY_LEDGER", raising=False)
    made = init_bank(tmp_path / "bank", env={})  # ledger.store = "sqlite:ledger.db", made
    assert (made.directory / "ledger.db").is_file()
    bank_ledger = _with_password(_new_schema(request))
    monkeypatch.setenv("SETPAY_LEDGER", bank_ledger)  # the bank's service environment
    with _ledger(made) as ledger:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, 100_000, EUR)
    _certify_merchant(made.config_path, MERCHANT)
    code, _, err = _ca(["renew-gateway", "--config", str(made.config_path)], capsys)
    assert code == 0, err
    renewed = Renewed(made, "postgres")
    _revoke(renewed, renewed.kept.read_bytes(), capsys)
    _decide_unanswered(renewed)  # in PostgreSQL, where the bank decides
    before = renewed.versions()
    assert (GATEWAY_KEX_LABEL, 1) in before

    # The operator's shell: no SETPAY_LEDGER, so init's empty ledger.db is read.
    monkeypatch.delenv("SETPAY_LEDGER")
    sqlite_url = f"sqlite:{made.directory / 'ledger.db'}"
    for yes in (["--yes"], []):
        code, out, err = _ca(["prune-gateway", "--config", renewed.config, *yes], capsys)
        assert (code, out) == (1, ""), err
        assert err.startswith(
            f"setpay ca prune-gateway: the ledger read ({sqlite_url}) holds no settlement"
            " account for 1 of the 1 merchants the bank's Merchant CA certified"
        ), err
        assert "Set SETPAY_LEDGER (or ledger.store) as the bank's service has it" in err
        assert err.rstrip().endswith("again; nothing deleted")
    assert renewed.kept.exists() and renewed.versions() == before

    # With the bank's SETPAY_LEDGER: its ledger is read, named without the password, and
    # its decision holds the key back.
    monkeypatch.setenv("SETPAY_LEDGER", bank_ledger)
    shown = pruning_ledger.shown_ledger(bank_ledger)
    parts = urllib.parse.parse_qs(urllib.parse.urlsplit(bank_ledger).query)
    assert shown.startswith("PostgreSQL user='ledger' host=") and PASSWORD not in shown
    assert parts["options"][0] in shown  # the schema: which ledger of the database
    code, out, err = _ca(["prune-gateway", "--config", renewed.config], capsys)
    assert code == 0 and err == f"ledger read (SETPAY_LEDGER): {shown}\n"
    assert f"the ledger ({shown}) holds 1 decided request" in out
    code, out, err = _ca(["prune-gateway", "--config", renewed.config, "--yes"], capsys)
    assert (code, out) == (1, "") and f"the ledger ({shown}) holds 1 decided request" in err
    assert PASSWORD not in out + err
    assert renewed.kept.exists() and renewed.versions() == before


def test_a_decision_checked_long_after_the_revocation_holds_nothing_back(
    renewed_sqlite: Renewed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked more than SEALED_MARGIN after the certificate was revoked, a decision
    cannot be sealed to its key. Before: counted, and the revoked key kept for good by a
    decision never retried."""
    renewed = renewed_sqlite
    _revoke(renewed, renewed.kept.read_bytes(), capsys)
    later = now_ms() + PAST_THE_MARGIN_MS
    _decide_unanswered(renewed, checked_at_ms=later)

    code, out, err = _ca(["prune-gateway", "--config", renewed.config, "--yes"], capsys)
    assert code == 0, err  # before: 1, refused
    assert err == renewed.ledger_line
    assert out.splitlines() == [
        "deleted certs/gateway-kex.v1.der: its certificate revoked",
        "deleted key gateway-kex v1: its certificate revoked",
    ]
    assert not renewed.kept.exists() and (GATEWAY_KEX_LABEL, 1) not in renewed.versions()


def test_a_decision_checked_before_the_revocation_is_counted_and_a_later_one_is_not(
    renewed_sqlite: Renewed, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal counts what may be sealed to the key, and says how many it left out."""
    renewed = renewed_sqlite
    _decide_unanswered(renewed)  # checked while the kept certificate stood
    _revoke(renewed, renewed.kept.read_bytes(), capsys)
    later = now_ms() + PAST_THE_MARGIN_MS
    _decide_unanswered(renewed, checked_at_ms=later)
    before = renewed.versions()

    code, out, err = _ca(["prune-gateway", "--config", renewed.config, "--yes"], capsys)
    assert (code, out) == (1, ""), err
    assert " holds 1 decided request whose answer was never stored, checked before" in err
    assert f"the ledger ({renewed.ledger}) holds 1 decided request" in err
    assert "min after; 1 checked later not counted)" in err
    assert renewed.kept.exists() and renewed.versions() == before


def test_the_ledger_is_named_without_its_password() -> None:
    """Only the parts that say which ledger; a URL whose password libpq would read as a
    host, a port or a database (an unescaped ``/``) is withheld whole."""
    shown = pruning_ledger.shown_ledger
    url = f"postgresql://bank:{PASSWORD}@db.example:5433/ledger?sslmode=require"
    assert shown(url) == "PostgreSQL user='bank' host='db.example' port='5433' dbname='ledger'"
    url = f"postgresql://bank:{PASSWORD}@db.example/ledger?password=qq-query-pw"
    assert shown(url) == "PostgreSQL user='bank' host='db.example' dbname='ledger'"
    assert shown("postgresql://bank:pw/never@db.example/ledger") == pruning_ledger.URL_WITHHELD
    assert pruning_ledger.shown_ledger("sqlite:/srv/bank/ledger.db") == "sqlite:/srv/bank/ledger.db"


@pytest.mark.parametrize(
    "password", ["Tr0ub@dor\\3x!", "Tr0ub@dor\"3x'!", "my@Secret\tPass"], ids=repr
)
def test_a_password_libpq_splits_is_withheld_however_its_text_would_be_quoted(
    password: str,
) -> None:
    """An unescaped ``@`` makes libpq read what follows as the host: withheld whether or
    not quoting it would escape a backslash, a quote or a tab in it."""
    url = f"postgresql://bank:{password}@db.example/ledger"
    assert pruning_ledger.shown_ledger(url) == pruning_ledger.URL_WITHHELD


def test_a_deleted_key_exchange_key_no_certificate_is_known_for_counts_every_row() -> None:
    """Conservative where the moment cannot be told; else the latest end, plus margin."""
    assert timedelta(milliseconds=PAST_THE_MARGIN_MS) > pruning_ledger.SEALED_MARGIN
    nothing = pruning.Pruning((), (), applied=False)
    ends = datetime(2026, 1, 1, tzinfo=UTC)
    assert pruning._Plan(nothing, (), (), (ends, None)).sealed_before_ms is None
    bounded = pruning._Plan(nothing, (), (), (ends, ends.replace(month=2)))
    assert bounded.sealed_before_ms == int(
        (ends.replace(month=2) + pruning_ledger.SEALED_MARGIN).timestamp() * 1000
    )
