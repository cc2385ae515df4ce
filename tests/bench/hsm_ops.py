"""Key-backend throughput: private-key operations per second, software vs SoftHSM.

Not a test: a script that prints figures. For each operation (ECDSA P-256 and RSA-2048
PSS signatures, P-256 ECDH and RSA-2048 OAEP decapsulation), each backend (software
keys in memory, SoftHSM through PKCS#11) and 1 and 2 threads, it runs the operation
for a fixed time and reports the median of several runs.

    .venv/bin/python tests/bench/hsm_ops.py [--seconds 0.5] [--runs 3]

It makes its own SoftHSM configuration and token in a temporary directory (never the
system token directory) and removes them afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
BENCH_PIN = "bench-pin-2468"
MESSAGE = bytes(range(256))

#: Pre-made inputs per thread: enough that no run wraps around at SoftHSM speeds.
INPUTS_PER_THREAD = 64

Operation = Callable[[int], None]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    options = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="setpay-bench-"))
    try:
        backends = {"software": _software(), "softhsm": _softhsm(work)}
        print(f"{'operation':<22}{'backend':<10}{'threads':>8}{'ops/s':>12}")
        for op_name, make in OPERATIONS.items():
            for backend_name, backend in backends.items():
                for threads in (1, 2):
                    figures = [
                        _throughput(make(backend, threads), threads, options.seconds)
                        for _ in range(options.runs)
                    ]
                    median = statistics.median(figures)
                    print(f"{op_name:<22}{backend_name:<10}{threads:>8}{median:>12,.0f}")
        for backend in backends.values():
            backend.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _software() -> KeyBackend:
    from hsm.software import SoftwareBackend

    return SoftwareBackend.ephemeral()


def _softhsm(work: Path) -> KeyBackend:
    tokens = work / "tokens"
    tokens.mkdir()
    conf = work / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "setpay-bench",
         "--so-pin", "bench-so-1357", "--pin", BENCH_PIN],
        check=True, capture_output=True,
    )  # fmt: skip
    pin_file = work / "pin"
    pin_file.write_text(BENCH_PIN)
    pin_file.chmod(0o600)
    from hsm.uri import open_backend

    return open_backend(
        f"pkcs11:module={SOFTHSM_MODULE};token=setpay-bench;pin-source=file:{pin_file}"
    )


def _sign(algorithm: KeyAlgorithm) -> Callable[[KeyBackend, int], Operation]:
    def make(backend: KeyBackend, threads: int) -> Operation:
        key = _key(backend, f"bench-sig-{algorithm.value}", KeyUsage.SIGNATURE, algorithm)
        return lambda _index: _discard(backend.sign(key, MESSAGE))

    return make


def _decapsulate(algorithm: KeyAlgorithm) -> Callable[[KeyBackend, int], Operation]:
    def make(backend: KeyBackend, threads: int) -> Operation:
        key = _key(backend, f"bench-kex-{algorithm.value}", KeyUsage.KEY_EXCHANGE, algorithm)
        assert key.kem is not None
        kem = key.kem
        inputs = [_encapsulate(key, kem) for _ in range(INPUTS_PER_THREAD * threads)]
        return lambda index: _discard(backend.decapsulate(key, kem, inputs[index % len(inputs)]))

    return make


def _key(backend: KeyBackend, label: str, usage: KeyUsage, algorithm: KeyAlgorithm) -> KeyHandle:
    existing = [key for key in backend.list_keys() if key.label == label]
    return existing[0] if existing else backend.generate(label, usage, algorithm)


def _encapsulate(key: KeyHandle, kem: KemAlgorithm) -> bytes:
    public_key = key.public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
    assert isinstance(public_key, rsa.RSAPublicKey)
    digest: hashes.HashAlgorithm = (
        hashes.SHA1() if kem is KemAlgorithm.RSA_OAEP_SHA1 else hashes.SHA256()
    )
    return public_key.encrypt(bytes(32), padding.OAEP(padding.MGF1(digest), digest, None))


def _discard(_: bytes) -> None:
    return None


def _throughput(operation: Operation, threads: int, seconds: float) -> float:
    """Operations per second with ``threads`` threads running ``operation`` flat out."""
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def worker(slot: int) -> None:
        start.wait()
        done = 0
        while not stop.is_set():
            operation(slot * INPUTS_PER_THREAD + done)
            done += 1
        counts[slot] = done

    pool = [threading.Thread(target=worker, args=(slot,)) for slot in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


OPERATIONS: dict[str, Callable[[KeyBackend, int], Operation]] = {
    "sign ecdsa-p256": _sign(KeyAlgorithm.EC_P256),
    "sign rsa-2048 pss": _sign(KeyAlgorithm.RSA_2048),
    "decap p256 ecdh": _decapsulate(KeyAlgorithm.EC_P256),
    "decap rsa-2048 oaep": _decapsulate(KeyAlgorithm.RSA_2048),
}


if __name__ == "__main__":
    sys.exit(main())
