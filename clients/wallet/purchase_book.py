"""``purchases.json``: what the wallet keeps of each purchase, read back checked, written
under a lock.

A record holds the transaction ids, the merchant (its ID and brand, whose renewed
certificates answer for it too, and the certificate that signed the PInitRes) and its
target, the amount and the last state the merchant reported; never card data. Every
field is read back of its type, and a damaged file is refused whole, naming it, rather
than half read (``ConfigError``).

Purchases are filed by XID, which the merchant picks: a PInitRes offering the XID of a
purchase the wallet holds (another merchant's, or the same merchant's again) is refused
with ``ProtocolError`` PI_PREVIOUSLY_USED, nothing recorded or sent, rather than have the
new purchase replace the record of one the card may have paid. A ``SHED`` purchase (its
PReq answered, unsigned, as shed unread) refuses another purchase of the same order
(LID-M) at the same merchant until an inquiry settles it, but for one the cardholder
buys all the same, naming it (``refuse_shed``). Two wallet commands at once (a purchase
and an inquiry, say) each update the file under a lock, so neither loses the other's
record, nor records a purchase under an XID the other just recorded; an inquiry saves its
answer only over the record it asked about (``save_unless_changed``). The lock file is
opened only as a plain file (``clients.lock_file``): a symbolic link or a FIFO in its
place is refused (``ConfigError``), naming it, the book left as it was; one found wider
than private is narrowed only when no other file's mode could be changed so (a hard link),
else refused (``_kept_private``), judging the directory it was opened in, by descriptor. A
purchase is named by the shortest start of its XID no other purchase shares
(``short_ids``): an XID that starts as an earlier one's cannot make two look alike.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import grp
import json
import os
import pwd
import stat
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from google.protobuf.message import DecodeError

from clients.errors import ClientError, ConfigError, ShedUnsettled
from clients.identity import write_atomically
from clients.lock_file import NotPlainFile, open_lock_file, why_unusable
from clients.wallet import short_ids
from clients.wallet.merchant_answers import SHED
from setcore.currency import exponent_for
from setcore.errors import ErrorCode, fail
from setcore.purchase import PurchaseState
from setcore.purchase_answer import MerchantIdentity
from setpay.v1 import common_pb2

# The state of a purchase whose PReq left and whose PRes has not been verified yet: the
# wallet's own word, not a CompletionCode (the merchant may or may not have the order).
SENT = "SENT"
# The state of a purchase the merchant refused with its signed Error (the code is kept in
# ``refusal``): the wallet's own word too, since SET's CompletionCode has none for it.
REFUSED = "REFUSED"
# purchases.json is the cardholder's shopping history: readable by its owner only. Its
# lock file holds nothing, but is kept as private as what it guards.
PURCHASES_FILE_MODE = 0o600
LOCK_SUFFIX = ".lock"
# The wallet's directory, when the book is the first to need it: its owner's alone, whatever
# the umask, as a umask of 002 (a group of the user's own) would leave it group-writable.
DIRECTORY_MODE = 0o700
# A directory's access ACL (Linux): present, its group bits are the ACL's mask, under which
# a named user or group may write, whatever group owns the directory.
_ACCESS_ACL = "system.posix_acl_access"


@dataclass(frozen=True)
class PurchaseRecord:
    """What the wallet remembers of one purchase (no card data).

    ``merchant_brand`` and ``merchant_id``: the merchant, whose certificates of that ID
    answer for the purchase; "" in a record a development snapshot wrote, whose answers
    only the certificate ``merchant_thumb`` may sign. ``refusal``: the ErrorCode of the
    merchant's signed Error (completion ``REFUSED`` or ``NOT_BOUGHT``), "" otherwise.
    ``cardholder_thumb``: the certificate that paid (hex), which alone may sign an inquiry
    about the purchase once the card's certificate was renewed; "" in a record written
    before renewal existed (paid with the first). ``signed_error``: the merchant's signed
    Error a ``NOT_BOUGHT`` rests on, as it came (the SetError's signed bytes, base64): its
    statement under its signature that it holds no such purchase, the cardholder's
    evidence should the card statement show a payment all the same; "" for any other
    state, and in a record written before it was kept.
    """

    xid: str
    merchant_target: str
    merchant_thumb: str
    trans_ids: str
    currency: int
    amount: int
    completion: str
    auth_code: str
    auth_amount: int
    captured: int
    credited: int
    merchant_brand: str = ""
    merchant_id: str = ""
    refusal: str = ""
    cardholder_thumb: str = ""
    signed_error: str = ""

    def purchase_state(self) -> PurchaseState:
        """Enough of the purchase to sign an inquiry about it."""
        trans_ids = common_pb2.TransIDs.FromString(base64.b64decode(self.trans_ids, validate=True))
        # The exponent is not recorded: ``Initiation.order`` admits only the currency's
        # own ISO 4217 minor unit (since before 0.1.0's first release; a development
        # snapshot took any), so it is that. No answer may report more than this.
        agreed = common_pb2.CurrencyAmount(
            currency=self.currency, amount=self.amount, exp10=exponent_for(self.currency)
        )
        merchant = None
        if self.merchant_id:
            merchant = MerchantIdentity(self.merchant_brand, self.merchant_id)
        thumb = bytes.fromhex(self.merchant_thumb)
        # No RRPID, challenge or request digest: those are each inquiry's own.
        return PurchaseState(
            rrpid=b"", chall_c=b"", trans_ids=trans_ids, merchant_thumb=thumb, purch_amt=agreed,
            merchant=merchant,
        )  # fmt: skip

    @property
    def short_id(self) -> str:
        """The XID's first 8 hex digits: the id shown for the purchase only while no other
        purchase of its book starts with them; what names it is ``PurchaseBook.short_id``."""
        return self.xid[: short_ids.SHORT_ID_DIGITS]

    @property
    def answered(self) -> bool:
        """False while no answer of the merchant's about the PReq has been verified."""
        return self.completion not in (SENT, SHED)

    def made_at(self, merchant: MerchantIdentity, thumb: bytes) -> bool:
        """Whether the purchase was made with ``merchant`` (its certificate ``thumb`` now):
        by its ID and brand, or, recorded without them, by the certificate it names."""
        if self.merchant_id:
            return MerchantIdentity(self.merchant_brand, self.merchant_id) == merchant
        return bytes.fromhex(self.merchant_thumb) == thumb


_FIELD_TYPES: dict[str, type] = {"int": int, "str": str}


def _record(item: object) -> PurchaseRecord:
    """One purchase as ``purchases.json`` holds it, every field of its type (``TypeError``,
    ``ValueError`` or ``DecodeError`` for one that is not)."""
    if not isinstance(item, dict):
        raise TypeError("a purchase is not a JSON object")
    record = PurchaseRecord(**item)
    for f in fields(record):
        # The annotations are strings here; a field of another type must be added below.
        value, kind = getattr(record, f.name), _FIELD_TYPES[str(f.type)]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"a purchase's {f.name} is not {kind.__name__}")
    if not bytes.fromhex(record.xid) or not bytes.fromhex(record.merchant_thumb):
        raise ValueError("a purchase has no XID or merchant")
    # One spelling of an XID (lower-case hex, nothing between its digits), as the wallet
    # writes it, so that finding, replacing and refusing compare the same text: a
    # hand-edited record in capitals or with spaces is read as the wallet wrote it.
    record = replace(record, xid=bytes.fromhex(record.xid).hex())
    if record.cardholder_thumb and not bytes.fromhex(record.cardholder_thumb):
        raise ValueError("a purchase names an empty paying certificate")
    if bool(record.merchant_id) != bool(record.merchant_brand):
        raise ValueError("a purchase names its merchant's ID or brand without the other")
    try:
        base64.b64decode(record.signed_error, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"a purchase's signed_error is not base64: {exc}") from None
    record.purchase_state()
    return record


def _refuse_known(records: list[PurchaseRecord], xid: str) -> None:
    """Raise if ``records`` hold a purchase of ``xid``, naming it by its short id only."""
    for earlier in records:
        if earlier.xid == xid:
            raise fail(
                ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED,
                f"the merchant offers the XID of earlier purchase "
                f"{short_ids.short_id(xid, (r.xid for r in records))}: "
                "refused, nothing sent, the earlier purchase's record kept",
            )


class PurchaseBook:
    """``purchases.json``: the wallet's purchases, newest last."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = path.with_name(path.name + LOCK_SUFFIX)

    def all(self) -> list[PurchaseRecord]:
        """Every recorded purchase."""
        if not self._path.exists():
            return []
        try:
            raw = json.loads(self._path.read_text())
            return [_record(item) for item in raw]
        except RecursionError:
            raise ConfigError(f"{self._path} is unreadable: nested too deeply") from None
        except (OSError, ValueError, TypeError, DecodeError) as exc:
            raise ConfigError(f"{self._path} is unreadable: {exc}") from exc

    def find(self, prefix: str) -> PurchaseRecord:
        """The purchase the hex ``prefix`` names: its whole XID, or a start of it that no
        other purchase's shares (``UnknownOrder`` otherwise, ``short_ids.resolve``)."""
        records = self.all()
        xid = short_ids.resolve(prefix, [r.xid for r in records])
        return next(r for r in records if r.xid == xid)

    def short_id(self, xid: str) -> str:
        """The id the wallet shows now for the purchase of ``xid`` (hex), which ``find``
        takes back: the shortest start of it, 8 digits at least, that no other purchase
        of the book shares (``short_ids``)."""
        return short_ids.short_id(xid, (r.xid for r in self.all()))

    def refuse_known(self, xid: str) -> None:
        """``ProtocolError`` PI_PREVIOUSLY_USED when the book holds a purchase of ``xid``
        (hex): a merchant offering it would have the new purchase replace that record."""
        _refuse_known(self.all(), xid)

    def add(self, record: PurchaseRecord) -> None:
        """Record a new purchase, refused as ``refuse_known`` says (nothing written) when
        the book holds its XID: checked under the lock, so that no other command records
        that XID between the check and the write."""
        self.add_named(record)

    def add_named(self, record: PurchaseRecord) -> str:
        """``add``, and the new purchase's ``short_id`` in the book it wrote."""
        with self._locked():
            records = self.all()
            _refuse_known(records, record.xid)
            self._write([*records, record])
        return short_ids.short_id(record.xid, (r.xid for r in records))

    def shed_despite(self, prefixes: Collection[str], lid_m: bytes) -> frozenset[str]:
        """The XIDs of the ``SHED`` purchases of order ``lid_m`` that ``prefixes`` name:
        those the cardholder buys that order again despite (``refuse_shed``). Each must
        name one purchase (``UnknownOrder`` otherwise), unsettled, of that order: a
        ``ClientError`` names any other, checked before anything is sent."""
        records = self.all()
        named: set[str] = set()
        for prefix in prefixes:
            xid = short_ids.resolve(prefix, [r.xid for r in records])
            record = next(r for r in records if r.xid == xid)
            shown = short_ids.short_id(xid, (r.xid for r in records))
            if record.completion != SHED:
                raise ClientError(
                    f"purchase {shown} is {record.completion.removeprefix('COMPLETION_CODE_')}"
                    ", not an unsettled (SHED) purchase to buy again despite; nothing sent"
                )
            if record.purchase_state().trans_ids.lid_m != lid_m:
                raise ClientError(
                    f"purchase {shown} is of another order than the one to buy: not one to "
                    "buy this order again despite; nothing sent"
                )
            named.add(xid)
        return frozenset(named)

    def refuse_shed(
        self,
        lid_m: bytes,
        merchant: MerchantIdentity,
        thumb: bytes,
        despite: frozenset[str] = frozenset(),
    ) -> None:
        """``ShedUnsettled`` when the book holds a ``SHED`` purchase of the order ``lid_m``
        made with ``merchant`` (its certificate ``thumb`` now) whose XID ``despite`` does
        not name: no signed answer has said whether the merchant read its PReq. Another
        merchant's order of the same LID-M is another order. ``ClientError`` when
        ``despite`` names a purchase made with another merchant: not this order."""
        records = self.all()
        for record in records:
            if record.xid in despite and not record.made_at(merchant, thumb):
                raise ClientError(
                    f"purchase {short_ids.short_id(record.xid, (r.xid for r in records))} was "
                    f"made with another merchant than {merchant}: not one to buy this order "
                    "again despite; no purchase request sent"
                )
        for record in records:
            if (
                record.completion == SHED
                and record.xid not in despite
                and record.purchase_state().trans_ids.lid_m == lid_m
                and record.made_at(merchant, thumb)
            ):
                raise ShedUnsettled(short_ids.short_id(record.xid, (r.xid for r in records)))

    def save(self, record: PurchaseRecord) -> str:
        """Replace a purchase the wallet holds with what it has since learnt (added if
        gone); a new purchase is ``add``'s, which will not replace another. Its
        ``short_id`` in the book written."""
        with self._locked():
            others = [r for r in self.all() if r.xid != record.xid]
            self._write([*others, record])
        return short_ids.short_id(record.xid, (r.xid for r in others))

    def save_unless_changed(self, read: PurchaseRecord, record: PurchaseRecord) -> PurchaseRecord:
        """``save`` ``record``, what was learnt of the purchase ``read`` since it was read,
        only if the book still holds ``read`` (or no longer holds the purchase at all); the
        record the book holds then. Checked under the lock: an answer asked for before
        another command saved what it learnt (a purchase's PRes, another inquiry's answer)
        does not replace that, which may be the newer."""
        with self._locked():
            records = self.all()
            held = next((r for r in records if r.xid == record.xid), None)
            if held is not None and held != read:
                return held
            self._write([*(r for r in records if r.xid != record.xid), record])
        return record

    def _write(self, records: list[PurchaseRecord]) -> None:
        data = json.dumps([asdict(r) for r in records], indent=1).encode()
        # Private, whatever the umask: what the cardholder bought, where and for how much.
        write_atomically(self._path, data, mode=PURCHASES_FILE_MODE)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The book to this process alone while it reads, changes and writes it back: two
        commands saving at once would each write the list it read, without the other's
        record. Readers need no lock: the file is replaced whole (``write_atomically``)."""
        fd = self._opened()
        try:
            # Blocks without a limit: a holder only reads and writes this one small file.
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _opened(self) -> int:
        """The lock file's descriptor, private (``_kept_private``). The directory is opened
        first (through a link, as every file of the wallet's is reached), and the file in
        it, so that the directory judged is the one the file was found in, not whichever
        the path names a moment later: a writer of that directory who planted a hard link,
        then removed their own name of it, may have pointed the path at one only root
        may write by then. Made when missing, private (``DIRECTORY_MODE``)."""
        self._lock.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        try:
            directory = os.open(self._lock.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise self._unusable_lock(f"its directory: {exc.strerror}", in_the_way=False) from None
        try:
            # Never through a link planted in its place, nor on a FIFO
            # (``clients.lock_file``): refused, naming it, nothing read or written.
            try:
                fd, created = open_lock_file(
                    Path(self._lock.name), PURCHASES_FILE_MODE, dir_fd=directory
                )
            except OSError as exc:
                raise self._unusable_lock(why_unusable(exc), self._in_the_way(exc)) from None
            try:
                if not created:  # one made now is private already: 0600, or less by the umask
                    self._kept_private(fd, directory)
            except BaseException:
                os.close(fd)
                raise
            return fd
        finally:
            os.close(directory)

    def _kept_private(self, fd: int, directory: int) -> None:
        """The lock file found open on ``fd``, in the directory open on ``directory``, left
        private, narrowed to it, or refused.

        Private because a write waits for the lock without a limit: whoever else may open
        the file may hold it, and stall every purchase's record behind it. One private
        already (0600, 0400, 0700) is left as it is: it may be immutable or append-only
        (``chattr +i``, ``+a``), which locks but refuses every mode change. A wider one is
        narrowed only when it is this user's own, with no other name, in a directory no
        other user may write: run as root, the wallet may find there a hard link to a file
        of root's, put by the directory's owner, who may unlink that name once it is open
        (one name left then), and no narrowing is to touch that file
        (``clients.registration_lock`` leaves every file it found as it is, for that
        reason). Any other wider one is refused rather than used as it is:
        ``registering_alone`` only tries its lock, and a stranger holding it is refused at
        once, saying so; this lock is waited for."""
        found = os.fstat(fd)
        mode = stat.S_IMODE(found.st_mode)
        if not mode & 0o077:
            return
        wider = f"it is wider than private ({mode:04o})"
        if found.st_uid != os.geteuid():
            why = f"{wider} and belongs to uid {found.st_uid}"
        elif found.st_nlink != 1:
            why = f"{wider} and has {found.st_nlink} names (a hard link to another file?)"
        elif not _directory_only_mine(directory):
            why = f"{wider} in a directory other users may write"
        else:
            why = ""
        if why:
            # Its mode is not to be set, but the name is this user's to remove.
            raise self._unusable_lock(f"{why}: its mode left as it is", in_the_way=True)
        try:
            os.fchmod(fd, PURCHASES_FILE_MODE)
        except OSError as exc:
            why = f"{wider} and its mode cannot be narrowed ({exc.strerror})"
            if exc.errno == errno.EPERM:
                # This user's own: not its owner's to refuse, but an attribute's, which
                # no rm gets past either.
                why += (
                    ": immutable or append-only? (lsattr shows it; chattr -i or -a, as "
                    "root, clears it, and the next write narrows it)"
                )
            # A file this user may not change is in the way; a read-only file system is
            # not, nor anything else there is nothing to remove for.
            raise self._unusable_lock(why, in_the_way=exc.errno == errno.EACCES) from None

    def _unusable_lock(self, why: str, in_the_way: bool) -> ConfigError:
        """The refusal of a lock file that cannot be used: named, and, when what is under
        its name is what stops it (``in_the_way``), that it is to be removed."""
        advice = "; remove it, with no other wallet command running" if in_the_way else ""
        return ConfigError(
            f"cannot use lock file {self._lock}: {why}{advice}: nothing was written to "
            f"{self._path.name}"
        )

    def _in_the_way(self, exc: OSError) -> bool:
        """Whether what ``open_lock_file`` refused with ``exc`` is something under the lock
        file's name that removing would clear: a link, no plain file, a directory, a file
        this user may not open. Not when there is nothing to remove: a directory this user
        may not write (``EACCES`` with no file there), a full or read-only file system."""
        if isinstance(exc, NotPlainFile) or exc.errno in (errno.ELOOP, errno.EISDIR):
            return True
        if exc.errno != errno.EACCES:
            return False
        try:
            self._lock.lstat()
        except OSError:
            return False  # not there (or not to be seen): nothing to remove
        return True


def _directory_only_mine(directory: int) -> bool:
    """Whether no user but this one (and root) may make names in ``directory`` (open): its
    own, not writable by others, nor by its group unless that group is this user's alone
    (``_group_only_mine``), with no ACL that lets another user or group write."""
    found = os.fstat(directory)
    if found.st_uid != os.geteuid() or found.st_mode & 0o002:
        return False
    if not found.st_mode & 0o020:
        return True  # an ACL's mask shows in the group's bits: none gives write
    try:
        os.getxattr(directory, _ACCESS_ACL)
        return False  # the group's bits are an ACL's mask: some user or group may write
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP):
            return False  # not known: as good as one
    return _group_only_mine(found.st_gid)


def _group_only_mine(gid: int) -> bool:
    """Whether the group ``gid`` holds this user alone: the user-private group that a umask
    of 002 assumes (Debian's, Fedora's), named as the user, the user's own primary group,
    listing no other member, nor any other user's primary group. Users that the system's
    user database does not list (``getpwall``: one that does not enumerate) are not seen."""
    try:
        user = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(gid)
    except KeyError:
        return False
    if group.gr_name != user.pw_name or user.pw_gid != gid:
        return False
    if any(member != user.pw_name for member in group.gr_mem):
        return False
    return not any(o.pw_gid == gid and o.pw_uid != user.pw_uid for o in pwd.getpwall())
