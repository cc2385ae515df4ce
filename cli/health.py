"""``setpay health``: ask a server's grpc.health.v1 whether it is SERVING (exit 0) or not."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# A health probe must answer fast; a container runtime treats a hang as unhealthy anyway.
PROBE_DEADLINE_SECONDS = 3.0
# What every PEM certificate holds; a file without it gives gRPC no root to trust.
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser("health", help="check a setpay server's health (exit 0 when SERVING)")
    p.add_argument("--target", required=True, help="HOST:PORT")
    p.add_argument("--service", default="", help="service name (default: the whole server)")
    p.add_argument("--ca", type=Path, help="PEM of the CA that issued the server's TLS cert")
    p.add_argument("--cert", type=Path, help="client certificate PEM (mutual TLS, with --key)")
    p.add_argument("--key", type=Path, help="client key PEM (mutual TLS, with --cert)")
    p.add_argument(
        "--insecure", action="store_true", help="plaintext gRPC (local experiments only)"
    )


def check(target: str, service: str, credentials: grpc.ChannelCredentials | None) -> str:
    """The serving status name of ``service`` at ``target``."""
    channel = (
        grpc.secure_channel(target, credentials)
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=PROBE_DEADLINE_SECONDS
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def run(args: argparse.Namespace) -> int:
    """Print the status; exit 0 only when SERVING (2 for options that do not fit)."""
    credentials = None
    if not args.insecure:
        if args.ca is None:
            print("setpay health: --ca is required unless --insecure", file=sys.stderr)
            return 2
        # gRPC aborts the whole process (a C++ check) on a certificate without its key.
        if (args.cert is None) != (args.key is None):
            print("setpay health: --cert and --key go together (mutual TLS)", file=sys.stderr)
            return 2
        try:
            roots = args.ca.read_bytes()
            if _PEM_CERTIFICATE not in roots:
                # gRPC would take it, fail every handshake and say only UNAVAILABLE.
                print(
                    f"setpay health: --ca {args.ca} holds no PEM certificate (a DER file,"
                    " such as the bank's brand-root.der, is not one): give the PEM of the"
                    " CA that issued the server's TLS certificate (the bank's tls/root.pem)",
                    file=sys.stderr,
                )
                return 2
            credentials = grpc.ssl_channel_credentials(
                root_certificates=roots,
                private_key=args.key.read_bytes() if args.key else None,
                certificate_chain=args.cert.read_bytes() if args.cert else None,
            )
        except OSError as exc:
            print(f"setpay health: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
    try:
        status = check(args.target, args.service, credentials)
    except grpc.RpcError as exc:
        print(f"{args.target}: {exc.code().name}", file=sys.stderr)
        return 1
    print(f"{args.target}: {status}")
    return 0 if status == "SERVING" else 1
