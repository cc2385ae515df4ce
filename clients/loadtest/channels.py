"""The channels the load travels on: mutual TLS as a merchant, one subchannel pool each.

gRPC normally shares one subchannel (one TCP connection) between channels to the same
target; ``grpc.use_local_subchannel_pool`` gives each channel its own connection, so
that SO_REUSEPORT can hand the connections to different gateway workers (DESIGN.md 5.4:
it balances connections, not calls).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from clients.loadtest.errors import TargetError
from clients.transport import MAX_MESSAGE_BYTES
from setpay.v1 import services_pb2

_GATEWAY = services_pb2.DESCRIPTOR.services_by_name["PaymentGatewayService"].full_name
AUTHORIZE_METHOD = f"/{_GATEWAY}/Authorize"
# Channels are connected (TLS handshake done) before any clock starts; a bank that cannot
# accept a connection in this long is not up.
CONNECT_SECONDS = 15.0
# Most channels the bench opens to one target: each is a TCP connection and a TLS session.
MAX_CHANNELS = 64


@dataclass(frozen=True)
class GatewayAccess:
    """Where a PaymentGateway listens and the TLS material a merchant presents to it."""

    target: str
    root_pem: bytes | None = field(repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)

    @property
    def insecure(self) -> bool:
        """Plaintext gRPC (a bank made with ``--insecure``)."""
        return self.root_pem is None

    def at(self, target: str) -> GatewayAccess:
        """The same credentials for another listener (the ceiling and echo services)."""
        return GatewayAccess(target, self.root_pem, self.client_cert_pem, self.client_key_pem)

    @classmethod
    def from_tls_dir(cls, target: str, tls_dir: Path | None) -> GatewayAccess:
        """The bank's ``tls/`` directory as ``setpay init`` writes it (None: plaintext)."""
        if tls_dir is None:
            return cls(target, None)
        return cls(
            target,
            (tls_dir / "root.pem").read_bytes(),
            (tls_dir / "merchant-client.pem").read_bytes(),
            (tls_dir / "merchant-client.key").read_bytes(),
        )


def open_channel(access: GatewayAccess, *, private_pool: bool = True) -> grpc.aio.Channel:
    """An asyncio channel to ``access.target`` with a connection of its own
    (``private_pool``); made on the event loop that will use it."""
    options: list[tuple[str, int]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if private_pool:
        options.append(("grpc.use_local_subchannel_pool", 1))
    if access.insecure:
        return grpc.aio.insecure_channel(access.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=access.root_pem,
        private_key=access.client_key_pem,
        certificate_chain=access.client_cert_pem,
    )
    return grpc.aio.secure_channel(access.target, credentials, options=options)


async def open_channels(access: GatewayAccess, count: int) -> list[grpc.aio.Channel]:
    """``count`` connected channels (each its own connection); TargetError if the target
    does not accept them within CONNECT_SECONDS."""
    if not 1 <= count <= MAX_CHANNELS:
        raise ValueError(f"channels must be between 1 and {MAX_CHANNELS}")
    channels = [open_channel(access) for _ in range(count)]
    try:
        ready = asyncio.gather(*(channel.channel_ready() for channel in channels))
        await asyncio.wait_for(ready, CONNECT_SECONDS)
    except TimeoutError:
        for channel in channels:
            await channel.close(grace=None)
        raise TargetError(
            f"{access.target} did not accept {count} connections within {CONNECT_SECONDS:.0f} s"
        ) from None
    return channels


def authorize_callable(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
    """Authorize on ``channel``, sending and receiving raw bytes (nothing parsed in the loop)."""
    return channel.unary_unary(
        AUTHORIZE_METHOD, request_serializer=_raw, response_deserializer=_raw
    )


def _raw(data: bytes) -> bytes:
    return data
