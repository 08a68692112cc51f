"""What the payload codec costs per payload, and what compression saves, on real Olist orders.

For a typical order (the sample's median line count), the sample's largest and a 200-line order:
bytes as JSON, bytes as stored (compressed when it pays, then AES-256-GCM), and CPU per encode and
decode, against the same run's baseline of turning the order into JSON (pydantic). Figures only.
`python -m bench.codec [--repeat N]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from temporalio.contrib.pydantic import pydantic_data_converter

from bench.throughput import load_sample
from encryption.codec import COMPRESSION, EncryptionCodec
from encryption.keys import KeyRing
from models.orders import OrderInput


def per_call_us(fn: Callable[[], object], repeat: int) -> float:
    began = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - began) / repeat * 1e6


def measure(name: str, order: OrderInput, codec: EncryptionCodec, repeat: int) -> str:
    convert = pydantic_data_converter.payload_converter
    (plain,) = convert.to_payloads([order])
    sealed = codec.encrypt(plain)
    json_us = per_call_us(lambda: convert.to_payloads([order]), repeat)
    encrypt_us = per_call_us(lambda: codec.encrypt(plain), repeat)
    decrypt_us = per_call_us(lambda: codec.decrypt(sealed), repeat)
    zipped = "zlib" if COMPRESSION in sealed.metadata else "no"
    return (
        f"{name:<22} {len(order.lines):>5} lines  json {len(plain.data):>7} B  stored {len(sealed.data):>7} B"
        f" ({zipped:>4} compression, {len(sealed.data) / len(plain.data):4.2f}x)"
        f"  encode {encrypt_us:7.1f} us  decode {decrypt_us:7.1f} us"
        f"  (pydantic to JSON: {json_us:7.1f} us, codec / JSON {(encrypt_us + decrypt_us) / json_us:4.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=2000, help="calls per figure (default 2000)")
    parser.add_argument("--orders", type=int, default=2000, help="Olist orders to choose from (default 2000)")
    args = parser.parse_args()
    orders = load_sample(args.orders).orders
    by_size = sorted(orders, key=lambda o: len(o.lines))
    median = by_size[len(by_size) // 2]
    # a large order made of real lines: the first line of 200 different sample orders
    big = median.model_copy(update={"lines": [o.lines[0] for o in orders[:200]]})
    codec = EncryptionCodec(KeyRing((("bench", os.urandom(32)),)))
    print(f"median order of {len(orders)}: {statistics.median(len(o.lines) for o in orders):.0f} line(s)")
    for name, order in (
        ("typical (median)", median),
        ("largest in sample", by_size[-1]),
        ("200-line order", big),
    ):
        print(measure(name, order, codec, args.repeat))


if __name__ == "__main__":
    main()
