"""How fast `salescast replay` runs a year of a 1,000-SKU shop, against parsing the same file alone.

    python bench/replay.py [--skus 1000] [--days 365] [--users 5000] [--runs 3]

The baseline is the floor any replay pays: reading the file and parsing every line with orjson.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast import replay  # noqa: E402
from salescast.sim.generator import Shop, ShopConfig  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="salescast-replay-")) / "events.jsonl"
    started = time.perf_counter()
    count = 0
    with open(path, "wb") as out:
        for topic, record in Shop(ShopConfig(skus=args.skus, days=args.days, users=args.users)).events():
            out.write(orjson.dumps({**record, "topic": topic}) + b"\n")
            count += 1
    generate_s = time.perf_counter() - started
    settings = Settings.from_env({})
    parse, full, outputs = [], [], 0
    for _ in range(args.runs):
        started = time.perf_counter()
        with open(path, "rb") as source:
            for line in source:
                orjson.loads(line)
        parse.append(time.perf_counter() - started)
        started = time.perf_counter()
        with open(path, "rb") as source:
            outputs = sum(1 for _ in replay.replay(source, settings))
        full.append(time.perf_counter() - started)
    print(json.dumps({
        "events": count, "skus": args.skus, "days": args.days, "outputs": outputs,
        "generate_s": round(generate_s, 1),
        "parse_only_s_median": round(statistics.median(parse), 2),
        "replay_s_median": round(statistics.median(full), 2),
        "replay_events_per_s": round(count / statistics.median(full)),
        "replay_over_parse_time": round(statistics.median(full) / statistics.median(parse), 2),
    }, indent=2))
    path.unlink()


if __name__ == "__main__":
    main()
