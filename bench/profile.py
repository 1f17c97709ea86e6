"""Where does incident-console spend its time at N sessions? py-spy on the real app in a pty.

    python -m bench.profile --sessions 1000 --seconds 20 [--keys] [--out /tmp/ic.svg]

Starts the private cluster and the load like the benchmark, opens the console in a 120x40 pty,
and samples it with py-spy (all threads, idle frames left out); with --keys it presses w / e
(the Postgres panel's filters) every ~0.4 s meanwhile. Prints the functions with the most
samples, self and inclusive, and writes a flame graph (SVG) when --out is given.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench import tools
from bench.backends import Load
from bench.cluster import LOAD_ROLE, BenchCluster
from bench.ptyrun import PtyProcess


def top(raw: Path, limit: int = 60) -> str:
    self_count: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [
            f.split(" (")[0] + " " + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            for f in stack.split(";")[1:]
        ]
        samples += n
        if frames:
            self_count[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    out = [f"{samples} samples", "", "self:"]
    out += [f"{n / samples:6.1%}  {f}" for f, n in self_count.most_common(limit)]
    out += ["", "inclusive:"]
    out += [f"{n / samples:6.1%}  {f}" for f, n in total.most_common(limit)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--keys", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    cluster = BenchCluster(args.sessions + 100).start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="ic-bench-prof-") as temporary,
            Load(cluster.dsn(LOAD_ROLE), args.sessions),
        ):
            workdir = Path(temporary)
            tool = tools.ours(cluster, workdir)
            process = PtyProcess(tool.argv, tool.env).start()
            try:
                process.wait_for(lambda text: tool.ready in text, 60)
                time.sleep(2)
                stop = threading.Event()

                def press() -> None:
                    process.send(b"\t")
                    i = 0
                    while not stop.wait(0.4):
                        process.send(tool.keys[i % 2][0])
                        i += 1

                if args.keys:
                    threading.Thread(target=press, daemon=True).start()
                raw = workdir / "raw.txt"
                spy = [str(tools.BIN / "py-spy"), "record", "--pid", str(process.pid), "--duration", str(args.seconds),
                       "--threads", "--rate", "200", "--nonblocking"]  # fmt: skip
                subprocess.run(
                    [*spy, "--format", "raw", "--output", str(raw)], check=True, capture_output=True
                )
                stop.set()
                print(top(raw))
                if args.out:
                    subprocess.run([*spy[:-4], "--duration", "10", "--output", args.out], capture_output=True)
            finally:
                process.stop(tool.quit_keys)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
