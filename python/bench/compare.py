"""Seal / open (with a replay window) / verify (broker, no group key) in Python, beside the same
operations in TypeScript on @smqtt/core's native backend, measured in the same run.

Run: ``python/bench/compare.sh`` (both, one table), or ``/usr/bin/python3 python/bench/compare.py
--python-only``. Same keys, topic, payload sizes and loop as compare.ts: best of 3 rounds of
COUNT calls, µs per call; TypeScript and Python passes alternate, best of each kept.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "python" / "src"))

import nacl  # noqa: E402

from smqtt.envelope import EnvelopeSigner, EpochKey, StaticKeys, open_envelope, seal_envelope, verify_envelope  # noqa: E402
from smqtt.replay import ReplayWindow  # noqa: E402

TOPIC = "home/hall/thermostat/t-1/temp"
NOW = 1_790_000_000
SIZES = (16, 256, 4096)
ROUNDS = 3


def per_call(run: Callable[[int], object], count: int) -> float:
    best = float("inf")
    for round_ in range(ROUNDS):
        run(0)
        start = time.perf_counter()
        for i in range(1, count + 1):
            run(round_ * count + i)
        best = min(best, (time.perf_counter() - start) / count * 1e6)
    return best


def measure(count: int) -> dict[str, float]:
    key = EpochKey(group=7, epoch=300, suite=1, key=bytes(range(32)))
    signer = EnvelopeSigner(kid=1000, seed=bytes(range(1, 33)))
    keys = StaticKeys([key], {(7, 1000): signer.public_key})
    rows: dict[str, float] = {}
    for size in SIZES:
        payload = bytes(size)
        envelopes = [
            seal_envelope(topic=TOPIC, payload=payload, epoch_key=key, signer=signer, seq=i, sent_at=NOW)
            for i in range(ROUNDS * count + 1)
        ]
        window = ReplayWindow(window_size=4096)
        rows[f"seal {size} B"] = per_call(
            lambda i: seal_envelope(topic=TOPIC, payload=payload, epoch_key=key, signer=signer, seq=i, sent_at=NOW),
            count,
        )
        rows[f"open {size} B"] = per_call(
            lambda i: open_envelope(envelopes[i], TOPIC, keys=keys, now=NOW, replay=window if i else None), count
        )
        rows[f"verify {size} B"] = per_call(
            lambda i: verify_envelope(envelopes[i], TOPIC, writer_key=keys.writer_key), count
        )
    return rows


def typescript(count: int) -> dict[str, object]:
    """One run of compare.ts (native backend) in a Node process of its own."""
    out = subprocess.run(
        ["npx", "tsx", "--conditions=smqtt-source", "python/bench/compare.ts", str(count)],
        cwd=REPOSITORY, check=True, capture_output=True, text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=3, help="alternating TypeScript / Python passes")
    parser.add_argument("--python-only", action="store_true")
    args = parser.parse_args()
    # Alternating passes, best of each: a busy machine slows both sides alike.
    python: dict[str, float] = {}
    ts: dict[str, float] = {}
    backend = ""
    for _ in range(args.passes):
        if not args.python_only:
            run = typescript(args.count)
            backend = str(run["backend"])
            rows = run["rows"]
            assert isinstance(rows, dict)
            for op, us in rows.items():
                ts[op] = min(ts.get(op, float("inf")), float(us))
        for op, us in measure(args.count).items():
            python[op] = min(python.get(op, float("inf")), us)
    print(f"Python {platform.python_version()} + PyNaCl {nacl.__version__}"
          + (f" vs TypeScript ({backend} backend)" if ts else "")
          + f"; best of {args.passes} alternating passes x {ROUNDS} rounds x {args.count} calls")
    print(f"| operation | µs Python |" + (" µs TypeScript | ratio |" if ts else ""))
    print("| --- | ---: |" + (" ---: | ---: |" if ts else ""))
    for op, us in python.items():
        line = f"| {op} | {us:.1f} |"
        if ts:
            line += f" {ts[op]:.1f} | {us / ts[op]:.2f} |"
        print(line)


if __name__ == "__main__":
    main()
