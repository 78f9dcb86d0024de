"""Benchmark DKIM signing: what it costs composing, and what it costs sending.

    python bench/signing.py            # 288 messages composed x 5 rounds; 6,000 emails sent x 3 runs
    python bench/signing.py --smoke    # 18 messages, 60 emails, one run

Composing, on one core: drip's composing alone, then composing and signing in
the same thread with an RSA-2048 key and with an Ed25519 key, and, to choose
the signer, RSA-2048 signing by dkimpy on the same messages.

Sending: ``drip run --once`` of the same cohort to Postfix's smtp-sink, with
and without an RSA-2048 key, alternating, on every core. Signing happens in
the sending threads, and OpenSSL lets go of the interpreter lock while it
signs, so there it overlaps composing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from compose import WHEN, workload  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402
from dispatch import Measured, drip_runs, free_port, prepare, sink_on  # noqa: E402
from figures import Figure, add_option, save  # noqa: E402
from machine import describe  # noqa: E402

from drip.core.message import build  # noqa: E402
from drip.sending.dkim import Signer  # noqa: E402


def composed(view, templates, items, sign=None) -> float:
    """Compose (and sign) every item; return the seconds it took."""
    started = time.perf_counter()
    for n, (recipient, links, step) in enumerate(items):
        data = build(
            templates, view, recipient, step, when=WHEN, delivery_id=str(n), instance="ab12", links=links
        ).as_bytes()
        if sign is not None:
            sign(data)
    return time.perf_counter() - started


def rates(view, templates, items, signs: dict[str, object], rounds: int) -> dict[str, float]:
    """Return the median messages per second of each way, the rounds of all ways interleaved."""
    for sign in signs.values():
        composed(view, templates, items[:18], sign)  # warm up
    seconds: dict[str, list[float]] = {name: [] for name in signs}
    for _ in range(rounds):
        for name, sign in signs.items():
            seconds[name].append(composed(view, templates, items, sign))
    return {name: len(items) / statistics.median(values) for name, values in seconds.items()}


def dkimpy_signer(key: rsa.RSAPrivateKey):
    import dkim

    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    names = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]

    def sign(data: bytes) -> bytes:
        return dkim.sign(data, b"drip", b"example.com", pem, canonicalize=(b"relaxed", b"relaxed"),
                         include_headers=names) + data  # fmt: skip

    return sign


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--emails", type=int, default=6000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    add_option(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.emails, args.runs = 1, 60, 1
    rsa_key = rsa.generate_private_key(65537, 2048)
    ours_rsa, ours_ed = Signer(rsa_key, "drip"), Signer(ed25519.Ed25519PrivateKey.generate(), "drip")

    every_core = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {sorted(every_core)[0]})
    view, templates, items = workload(18 if args.smoke else None)
    compose = rates(
        view, templates, items,
        {"none": None, "rsa": ours_rsa.sign, "ed25519": ours_ed.sign, "dkimpy": dkimpy_signer(rsa_key)},
        args.rounds,
    )  # fmt: skip
    os.sched_setaffinity(0, every_core)

    sent: dict[str, list[Measured]] = {"none": [], "rsa": []}
    port = free_port()
    with sink_on(port, args.smoke), tempfile.TemporaryDirectory(prefix="drip-signing-") as tmp:
        folder = Path(tmp)
        key_file = folder / "dkim.pem"
        key_file.write_bytes(
            rsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        for run in range(args.runs):
            for name in sent:
                url = prepare(folder, args.emails, f"{name}{run}")
                settings = {"DRIP_DKIM_SELECTOR": "drip", "DRIP_DKIM_KEY_FILE": str(key_file)}
                sent[name].append(
                    drip_runs(
                        [url], f"smtp://127.0.0.1:{port}", folder, **(settings if name == "rsa" else {})
                    )
                )

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(m, field) for m in sent[name])

    print(f"Composing {len(items)} messages, one core, median of {args.rounds} interleaved rounds\n")
    print("| signing | messages/s | of composing alone |")
    print("| --- | ---: | ---: |")
    labels = {
        "none": "none",
        "rsa": "drip, RSA-2048",
        "ed25519": "drip, Ed25519",
        "dkimpy": "dkimpy, RSA-2048",
    }
    for name, label in labels.items():
        print(f"| {label} | {compose[name]:,.0f} | {compose[name] / compose['none']:.0%} |")
    print(
        f"\n`drip run --once`, {args.emails:,} emails to smtp-sink, every core, median of {args.runs} runs\n"
    )
    print("| signing | emails/s | CPU µs/email |")
    print("| --- | ---: | ---: |")
    for name, label in (("none", "none"), ("rsa", "RSA-2048")):
        print(f"| {label} | {median(name, 'rate'):,.0f} | {median(name, 'cpu_us'):,.0f} |")
    print(describe())

    rsa_share = compose["rsa"] / compose["none"]
    sending_share = median("rsa", "rate") / median("none", "rate")
    figures = [
        Figure(
            "DKIM signing (RSA-2048) while composing, one core",
            f"{compose['rsa']:,.0f} messages/s ({rsa_share:.0%} of composing alone)",
            f"composing alone {compose['none']:,.0f}/s; Ed25519 {compose['ed25519']:,.0f}/s; "
            f"dkimpy RSA {compose['dkimpy']:,.0f}/s",
            ">= 90% of composing alone",
            rsa_share >= 0.9,
        ),
        Figure(
            "DKIM signing (RSA-2048) while sending, drip run",
            f"{median('rsa', 'rate'):,.0f} emails/s ({sending_share:.0%} of unsigned)",
            f"unsigned {median('none', 'rate'):,.0f}/s",
            ">= 90% of unsigned",
            sending_share >= 0.9,
        ),
    ]
    save(args.json, figures, args.smoke)


if __name__ == "__main__":
    main()
