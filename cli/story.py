"""How ``setpay demo`` tells the story: numbered steps, the parties' own log lines beneath
each, and what each party could and could not see. Text for people, JSON for machines."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

# The ten steps of the SET story (DESIGN.md section 1), as the demo prints them.
STEPS: dict[int, str] = {
    1: "The bank sets up its CAs and gateway, and opens a card account for the customer",
    2: "The wallet registers with the Cardholder CA and receives a signature certificate",
    3: "The merchant registers with the Merchant CA (the gateway holds its pair already)",
    4: "The customer places an order",
    5: "The wallet starts the purchase (PInit) and checks the merchant and the gateway key",
    6: "The wallet sends the purchase request: OI for the merchant, PI sealed to the gateway",
    7: "The merchant verifies the dual signature and the cardholder's certificate chain",
    8: "The merchant forwards the still-sealed PI to the gateway in a signed, sealed AuthReq",
    9: "The gateway opens the PI and checks everything against the cardholder certificate",
    10: "The gateway signs the authorization (AuthRes, capture token only it can open)",
}

# Log lines that mark a step as begun: (logger name prefix, message prefix) -> step.
_MARKERS: tuple[tuple[str, str, int], ...] = (
    ("setpay.merchant", "PInit:", 5),
    ("setpay.wallet", "PReq ", 6),
    ("setpay.merchant", "Purchase ", 7),
    ("setpay.merchant", "order ", 8),
    ("setpay.gateway", "AuthReq ", 9),
    ("setpay.gateway", "AuthRes ", 10),
)
# The parties the story speaks for; its column is as wide as the widest name.
PARTIES: tuple[str, ...] = (
    "customer", "wallet", "merchant", "gateway", "CA", "bank", "issuer", "demo"
)  # fmt: skip
_WIDTH = max(len(party) for party in PARTIES)
# Which party a logger speaks for. A logger not named here is plumbing, not the story:
# the transport and the revocation feed serve the wallet and the merchant alike, so their
# lines cannot say whose they are, and the servers' health is for load balancers. Their
# lines go to the ordinary log, at the level asked for (--log-level; WARNING by default).
_PARTIES: tuple[tuple[str, str], ...] = (
    ("setpay.merchant", "merchant"),
    ("setpay.wallet", "wallet"),
    ("setpay.gateway", "gateway"),
    ("setpay.ca", "CA"),
    ("setpay.bank", "bank"),
    ("setpay.provisioning", "bank"),
    ("setpay.issuer", "issuer"),
    ("setpay.ledger", "issuer"),
)


# The currencies the story tells amounts in: ISO 4217 number -> code and minor-unit digits.
CURRENCIES: dict[int, tuple[str, int]] = {978: ("EUR", 2)}
# How the parties log an amount: minor units, then the ISO 4217 number in parentheses
# ("4250 (978)"). The story tells it as people read it ("42.50 EUR"), as the demo's own
# lines do; a currency not in CURRENCIES is left as logged.
_LOGGED_AMOUNT = re.compile(r"(?<![\w.-])(\d+) \((\d{3})\)")


def money(amount: int, currency: int) -> str:
    """``amount`` minor units of ``currency`` as people read it: ``42.50 EUR``."""
    code, digits = CURRENCIES[currency]
    units, minor = divmod(amount, 10**digits)
    return f"{units}.{minor:0{digits}d} {code}" if digits else f"{units} {code}"


def _readable_amounts(message: str) -> str:
    def one(found: re.Match[str]) -> str:
        currency = int(found.group(2))
        if currency not in CURRENCIES:
            return found.group(0)
        return money(int(found.group(1)), currency)

    return _LOGGED_AMOUNT.sub(one, message)


def party_of(logger: str) -> str | None:
    """The party a logger name speaks for; None for one of the plumbing's loggers."""
    for name, party in _PARTIES:
        if logger == name or logger.startswith(name + "."):
            return party
    return None


@dataclass
class Story:
    """Collects and prints the demo's events."""

    json_mode: bool = False
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    current: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    current_section: str = ""
    sections: int = 0  # begun so far

    def step(self, number: int) -> None:
        """Begin step ``number`` (and any skipped before it)."""
        while self.current < number:
            self.current += 1
            self.events.append({"step": self.current, "title": STEPS[self.current]})
            if not self.json_mode:
                print(f"\n[{self.current:2d}] {STEPS[self.current]}", file=self.out)

    def section(self, title: str) -> None:
        """A part of the demo after the ten steps (capture, refund, decline, ...), numbered
        on from them: headed "[--]", seven sections after "[10]" read as a story cut off."""
        self.sections += 1
        number = len(STEPS) + self.sections
        self.events.append({"section": title, "number": number})
        self.current_section = title
        if not self.json_mode:
            print(f"\n[{number:2d}] {title}", file=self.out)

    def say(self, party: str, text: str) -> None:
        """One thing a party did or learned."""
        self.events.append({"party": party, "text": text})
        if not self.json_mode:
            print(f"     {party:>{_WIDTH}}: {text}", file=self.out, flush=True)

    def sees(self, party: str, saw: str, not_seen: str) -> None:
        """What a party could and could not see at this step."""
        self.events.append({"party": party, "sees": saw, "does_not_see": not_seen})
        if not self.json_mode:
            print(f"     {party:>{_WIDTH}} sees {saw}; does NOT see {not_seen}", file=self.out)

    def where(self) -> str:
        """Where the story is: its latest step or section, for a failure message."""
        if self.current_section:
            return f"'{self.current_section}'"
        if self.current:
            return f"step {self.current} ({STEPS[self.current]})"
        return "the start"

    def finish(self, summary: dict[str, Any], sentence: str = "") -> None:
        """Print the JSON document (JSON mode) or the closing ``sentence``."""
        if self.json_mode:
            json.dump({"events": self.events, "summary": summary}, self.out, indent=2)
            print(file=self.out)
            return
        if summary.get("ok") is False:
            print(f"\n[FAILED] {summary.get('failure', '')}", file=self.out)
            return
        print(f"\n[ok] {sentence or 'the story went as it must'}", file=self.out)


class StoryHandler(logging.Handler):
    """Tells the parties' log lines in the story, advancing steps on markers; passes the
    plumbing's lines, and any below INFO, on to the ordinary log at the level asked for."""

    def __init__(self, story: Story, asked: int) -> None:
        super().__init__(logging.NOTSET)
        self._story = story
        self._asked = asked

    def emit(self, record: logging.LogRecord) -> None:
        party = party_of(record.name)
        if party is None or record.levelno < logging.INFO:
            if record.levelno >= self._asked:
                logging.getLogger().handle(record)
            return
        message = _readable_amounts(record.getMessage())
        for prefix, start, number in _MARKERS:
            if record.name.startswith(prefix) and message.startswith(start):
                if number > self._story.current:
                    self._story.step(number)
                break
        self._story.say(party, message)


@contextmanager
def story_logging(story: Story) -> Iterator[None]:
    """Tell the ``setpay`` loggers' lines in ``story`` (``StoryHandler``) while it runs."""
    logger = logging.getLogger("setpay")
    old_level, old_propagate = logger.level, logger.propagate
    asked = logger.getEffectiveLevel()
    handler = StoryHandler(story, asked)
    logger.addHandler(handler)
    # The story needs INFO; a caller that asked for DEBUG keeps it.
    logger.setLevel(min(asked, logging.INFO))
    logger.propagate = False  # the handler tells or passes on each line itself
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
