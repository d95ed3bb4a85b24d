"""Time fresh processes: `python bench/cold.py RUNS LABEL -- CMD...` prints a
JSON line with the median wall time (ms, perf_counter around each process)
and the peak RSS (MiB, the largest child's ru_maxrss) of RUNS runs.
The command runs once first, untimed (it must succeed: its error is
printed instead of figures)."""

import json
import os
import resource
import statistics
import subprocess
import sys
import time


def main():
    runs, label = int(sys.argv[1]), sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    first = subprocess.run(cmd, capture_output=True, text=True)
    if first.returncode != 0:
        print(json.dumps({"route": label, "error": first.stderr.strip().splitlines()[-1:]}))
        return
    walls, rss = [], []
    for _ in range(runs):
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execvp(cmd[0], cmd)
        _, status, usage = os.wait4(pid, 0)
        walls.append(time.perf_counter() - t)
        rss.append(usage.ru_maxrss)
        if status != 0:
            print(json.dumps({"route": label, "error": f"exit status {status}"}))
            return
    print(json.dumps({"route": label, "cold_start_ms": round(statistics.median(walls) * 1000, 1),
                      "peak_rss_mib": round(max(rss) / 1024)}))


if __name__ == "__main__":
    main()
