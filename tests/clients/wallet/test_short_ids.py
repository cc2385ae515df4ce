"""The ids the wallet names its purchases by: the shortest start of the XID, 8 hex digits
at least, that no other purchase of the book shares, so that a merchant's XID starting as
an earlier purchase's cannot make the two look alike, and every id shown finds its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cli.purchase_lines import record_line, shown_id
from clients.errors import UnknownOrder
from clients.wallet.purchases import PurchaseBook, PurchaseRecord
from clients.wallet.short_ids import CANDIDATES_NAMED
from setcore.errors import ErrorCode, ProtocolError
from tests.clients.wallet.test_purchase_book_add import _with_xid

# Letters in the first 8 digits, so that a case slip would show.
HEAD = "abcdef01"


def _xid(start: str) -> bytes:
    """A 32-byte XID starting with the hex digits ``start``, the rest zeros."""
    return bytes.fromhex(start.ljust(64, "0"))


def _book(tmp_path: Path, *starts: str) -> tuple[PurchaseBook, list[PurchaseRecord]]:
    book = PurchaseBook(tmp_path / "purchases.json")
    records = [_with_xid(_xid(start)) for start in starts]
    for record in records:
        book.add(record)
    return book, records


def test_a_lone_purchase_keeps_8_digits(tmp_path: Path) -> None:
    book = PurchaseBook(tmp_path / "purchases.json")
    record = _with_xid(_xid(HEAD + "23"))
    assert book.add_named(record) == HEAD
    assert book.short_id(record.xid) == HEAD == record.short_id
    assert book.find(HEAD) == record
    # Beside a purchase that shares fewer than 8 digits, still 8.
    other = _with_xid(_xid(HEAD[:7] + "f"))
    assert book.add_named(other) == other.xid[:8]
    assert book.short_id(record.xid) == HEAD


@pytest.mark.parametrize(
    ("first", "second", "digits"),
    [(HEAD + "1", HEAD + "2", 9), (HEAD + "1234c", HEAD + "1234d", 13)],
    ids=["8-shared", "12-shared"],
)
def test_two_purchases_sharing_8_digits_get_distinct_longer_ids_find_takes(
    tmp_path: Path, first: str, second: str, digits: int
) -> None:
    book = PurchaseBook(tmp_path / "purchases.json")
    earlier, later = _with_xid(_xid(first)), _with_xid(_xid(second))
    assert book.add_named(earlier) == HEAD  # alone, when it was made
    # The later purchase is named, as it is added, by an id the earlier one does not share.
    assert book.add_named(later) == later.xid[:digits]
    ids = [book.short_id(r.xid) for r in (earlier, later)]
    assert ids == [earlier.xid[:digits], later.xid[:digits]] and ids[0] != ids[1]
    assert [book.find(i) for i in ids] == [earlier, later]
    assert [book.find(i.upper()) for i in ids] == [earlier, later]
    # What a purchase's line prints is the id find takes, not the shared 8 digits.
    assert record_line(later, shown_id(book, later)).startswith(f"{ids[1]}  SENT  ")
    assert f"`setpay wallet inquire {ids[1]}`" in record_line(later, ids[1])
    # The answer recorded later keeps the longer id.
    assert book.save(later) == ids[1]


def test_an_ambiguous_id_names_each_candidate_by_its_own(tmp_path: Path) -> None:
    book, (one, two, apart) = _book(tmp_path, HEAD + "1", HEAD + "2", "0123456789")
    held = (tmp_path / "purchases.json").read_bytes()
    with pytest.raises(UnknownOrder) as caught:
        book.find(HEAD)
    message = str(caught.value)
    assert message == (
        f"ambiguous purchase id: 2 purchases start with it: {one.xid[:9]}, {two.xid[:9]}; "
        "give one of these ids"
    )
    assert apart.short_id not in message
    assert (tmp_path / "purchases.json").read_bytes() == held
    with pytest.raises(UnknownOrder, match=r"2 purchases start with it: abcdef011, abcdef012;"):
        book.find("ABCD")


def test_many_candidates_are_named_up_to_a_bound(tmp_path: Path) -> None:
    count = CANDIDATES_NAMED + 3
    book, records = _book(tmp_path, *(f"{HEAD}{i:x}" for i in range(count)))
    with pytest.raises(UnknownOrder) as caught:
        book.find(HEAD)
    message = str(caught.value)
    assert f"{count} purchases start with it: " in message
    assert message.endswith(" and 3 more; give one of these ids")
    named = [r.xid[:9] for r in records]
    assert all(n in message for n in named[:CANDIDATES_NAMED])
    assert not any(n in message for n in named[CANDIDATES_NAMED:])


@pytest.mark.parametrize("given", ["", "abcdefg1", " abcdef01", "abcdef01 ", "0x" + HEAD])
def test_an_id_that_is_not_hex_digits_is_refused(tmp_path: Path, given: str) -> None:
    # An empty id used to name a lone purchase (every XID starts with it).
    book, _ = _book(tmp_path, HEAD + "1")
    with pytest.raises(UnknownOrder, match=r"^no such purchase: a purchase id is hex digits"):
        book.find(given)


def test_an_id_no_purchase_starts_with_is_refused(tmp_path: Path) -> None:
    book, _ = _book(tmp_path, HEAD + "1")
    with pytest.raises(UnknownOrder, match=r"^no such purchase$"):
        book.find(HEAD + "2")
    with pytest.raises(UnknownOrder, match=r"^no such purchase$"):
        PurchaseBook(tmp_path / "none.json").find(HEAD)


def test_an_xid_that_starts_another_is_shown_whole_and_found(tmp_path: Path) -> None:
    # Not an XID the protocol lets in (32 bytes each), but a hand-edited book may hold one.
    book = PurchaseBook(tmp_path / "purchases.json")
    short, long = _with_xid(bytes.fromhex(HEAD + "23")), _with_xid(bytes.fromhex(HEAD + "2345"))
    book.add(short)
    assert book.add_named(long) == HEAD + "234"
    assert book.short_id(short.xid) == short.xid == HEAD + "23"
    assert book.find(short.xid) == short
    assert book.find(HEAD + "234") == long
    with pytest.raises(UnknownOrder, match="2 purchases start with it: abcdef0123, abcdef01234;"):
        book.find(HEAD + "2")


def test_an_offered_xid_the_book_holds_is_refused_naming_its_own_id(tmp_path: Path) -> None:
    book, (one, two) = _book(tmp_path, HEAD + "1", HEAD + "2")
    refusals: tuple[Callable[[], object], ...] = (
        lambda: book.refuse_known(two.xid),
        lambda: book.add(two),
        lambda: book.add_named(two),
    )
    for refusing in refusals:
        with pytest.raises(ProtocolError) as caught:
            refusing()
        assert caught.value.code == ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED
        assert f"earlier purchase {two.xid[:9]}: " in caught.value.reason
    assert book.all() == [one, two]


def test_a_line_printed_when_the_book_cannot_be_read_names_the_whole_xid(tmp_path: Path) -> None:
    book, (one, _) = _book(tmp_path, HEAD + "1", HEAD + "2")
    (tmp_path / "purchases.json").write_text("not a book")
    # The purchase was made and recorded: its line names it by the XID find always takes.
    assert shown_id(book, one) == one.xid
    assert record_line(one, shown_id(book, one)).startswith(f"{one.xid}  SENT  ")
