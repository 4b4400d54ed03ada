#!/usr/bin/python3
"""Times every workload on both sides seconds apart, in rounds, for benchmarks/compare.sh.

This machine's speed drifts by 10-50% over minutes, so a side timed all at once and then the other can land in different
phases. Here ModelGen (ModelGen.Benchmarks --serve) and PyTorch in its two configurations (torch_peer.py --serve) stay up
and take turns workload by workload, the side going first rotating; each round then also fits the digits on both sides
(scikit-learn and ModelGen's Fit, in alternating order) and measures the FMA peak. Before and after each workload's turns
it measures the cores' round trip and whether they share a physical core (round_trip.c): the host moves the vCPUs within
seconds, changing the trip by 4-6x, and may put them on one core's two hyperthreads, where two threads of multiply-adds
each run at half speed. Where a probe finds the trip above twice its floor on cores of their own (Cores.floor), or the cores
shared, the workload waits for a better placement (probing every second) and, if it was the after-probe, takes its turns
again once, within a patience of waiting seconds for the whole run: so the table states the code, not where the host put
the cores, while the patience lasts. Each side's turn is also watched for CPU time that side did not take (/proc/stat: another
process, the other sides' servers, the kernel, or the host's steal): a side whose turn lost more than Load.Busy of a core to
it had the cores it was timed on shared, and the workload waits for a quiet second and takes its turns again once, as for a
slow trip. After its turn each side is left until its threads stop spinning (Load.idle), so the next starts on idle cores.
Each round's results land in OUT/roundN/ as torch.json, modelgen.json, sklearn.json, digits.json, peak.txt,
round_trip.json, shared_core.json and other_load.json, which make_table.py reads.
Usage: interleave.py OUT ROUNDS MODELGEN_DLL [--peak PEAK_FMA] [--round-trip ROUND_TRIP [--patience SECONDS]]
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import environment  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))


class Server:
    """A harness in --serve mode: one request line in, one JSON line out."""

    def __init__(self, command, env=None):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"{self.process.args[:2]} stopped answering at {line!r}")
        return json.loads(answer)

    def close(self):
        self.process.stdin.write("\n")
        self.process.stdin.close()
        self.process.wait()


def run(command):
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


class Cores:
    """The round-trip probe, the trips it has seen on cores of their own, and the waiting left to spend on a bad placement:
    the vCPUs moved apart (a trip over twice the floor of those), or put on one physical core's two hyperthreads (each
    keeping under SharedCore of its multiply-add rate while the other runs too; their trip is then the fastest of all)."""

    SharedCore = 0.75

    def __init__(self, probe, patience):
        self.probe, self.patience, self.own = probe, patience, []

    @staticmethod
    def floor(trips):
        """The trip the cores take at their fastest on cores of their own: the tenth percentile, not the least, because the
        host can move the vCPUs between the probe's two halves: d2764b0 read 44-48 ns four times beside a share of a core
        of 0.98-1.05 (the hyperthreads' trip, the share taken apart), against 90-95 ns for the next fastest, and twice that
        least marked every row slow and spent the run's patience in its first round. None before any trip."""
        return sorted(trips)[len(trips) // 10] if trips else None

    def trip(self):
        """(round trip in ns, share of a thread's rate kept beside the other's) from round_trip.c; None without a probe or
        with a single CPU (the probe prints nothing)."""
        answer = run([self.probe]).split() if self.probe else []
        if not answer:
            return None
        ns, share = float(answer[0]), float(answer[1])
        if share >= self.SharedCore:
            self.own.append(ns)
        return ns, share

    def slow(self, probe):
        floor = self.floor(self.own)
        return probe is not None and (probe[1] < self.SharedCore or (floor is not None and probe[0] > 2 * floor))

    def settled(self):
        """A probe, taken again every second while it reads slow and patience is left; None without a probe."""
        probe = self.trip()
        while self.slow(probe) and self.patience > 0:
            time.sleep(1)
            self.patience -= 1
            probe = self.trip()
        return probe


class Load:
    """CPU time that a side did not take while it was timed: the machine's busy time (/proc/stat: all but idle and I/O wait,
    so the host's steal counts) less that side's process's and this script's, as a share of one core. Measured on this
    machine: under 0.01 of a core on a quiet second, 1.0 beside a process spinning on one core. The round that missed the
    MLP's batch-1 target (4511eaa) ran its first eleven workloads with every two-thread peer 15-70x and every ModelGen
    workload shared between the cores 1.6-1.9x slower while the round trip read normal: a core taken from both sides."""

    Busy = 0.1
    cpus = os.cpu_count() or 1

    @staticmethod
    def machine():
        """(all ticks, busy ticks) of every CPU so far."""
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in open("/proc/stat").readline().split()[1:9])
        total = user + nice + system + idle + iowait + irq + softirq + steal
        return total, total - idle - iowait

    @staticmethod
    def taken(pid):
        """User and system ticks of a process's threads so far."""
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def start(self, *pids):
        """The counts before a turn of the processes pids (this script's own are always left out)."""
        pids += (os.getpid(),)
        return pids, self.machine(), sum(self.taken(pid) for pid in pids)

    def other(self, start):
        """The share of a core taken by others since start (0 where the turn was too short to count a tick)."""
        pids, (total, busy), own = start
        now_total, now_busy = self.machine()
        if now_total == total:
            return 0.0
        others = (now_busy - busy) - (sum(self.taken(pid) for pid in pids) - own)
        return max(0.0, others) / ((now_total - total) / self.cpus)

    def idle(self, pid, window=0.05, most=0.5):
        """Waits, at most `most` seconds, until the process pid takes no CPU for `window` seconds (five ticks): a server's
        threads spin on after its turn (the default-threads peer's OpenBLAS threads 30-120 ms of a core, measured inside the
        next side's turn), which would otherwise run beside the next side's warm-up and first samples."""
        end, ticks = time.time() + most, self.taken(pid)
        while time.time() < end:
            time.sleep(window)
            now = self.taken(pid)
            if now == ticks:
                return
            ticks = now

    def quiet(self, cores):
        """Waits, a second at a time and within the cores' patience, until a second passes with others taking under Busy."""
        while cores.patience > 0:
            start = self.start()
            time.sleep(1)
            cores.patience -= 1
            if self.other(start) < self.Busy:
                return


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("rounds", type=int)
    parser.add_argument("dll")
    parser.add_argument("--peak")
    parser.add_argument("--round-trip")
    parser.add_argument("--patience", type=int, default=600)
    arguments = parser.parse_args()
    out, rounds, dll, peak = arguments.out, arguments.rounds, arguments.dll, arguments.peak
    cores = Cores(arguments.round_trip, arguments.patience)
    load = Load()
    sides = {"modelgen": Server(["dotnet", dll, "--serve"])}
    for threads in ("1", "default"):
        sides[threads] = Server([sys.executable, os.path.join(here, "torch_peer.py"), "--serve", threads], env=environment(threads))
    try:
        names = {side: server.ask("list") for side, server in sides.items()}
        info = {side: server.ask("info") for side, server in sides.items()}
        order = list(sides)
        for round_number in range(1, rounds + 1):
            print(f"round {round_number} of {rounds}", flush=True)
            times = {side: {} for side in sides}
            trips, shares, others = {}, {}, {}
            for index, name in enumerate(names["modelgen"]):
                turn = (index + round_number) % len(order)
                busy = False
                for attempt in range(2):
                    if busy:
                        load.quiet(cores)
                    before = cores.settled()
                    taken = {}
                    for side in order[turn:] + order[:turn]:
                        if name in names[side]:
                            pid = sides[side].process.pid
                            start = load.start(pid)
                            times[side][name] = sides[side].ask(name)
                            taken[side] = round(load.other(start), 3)
                            load.idle(pid)
                    after = cores.trip()
                    busy = max(taken.values()) > Load.Busy
                    if attempt == 1 or not (cores.slow(after) or busy) or cores.patience <= 0:
                        break
                    print(f"  {name}: its turns again, " + (f"a side lost more than {Load.Busy} of a core to others" if busy else "the cores placed slow"), flush=True)
                others[name] = taken
                if after is not None:
                    trips[name] = [before[0], after[0]]
                    shares[name] = [before[1], after[1]]
            folder = os.path.join(out, f"round{round_number}")
            os.makedirs(folder, exist_ok=True)

            def grouped(side):
                groups = {}
                for name, ms in times[side].items():
                    group, workload = name.split("/", 1)
                    groups.setdefault(group, {})[workload] = ms
                return {**groups, "info": info[side]}
            write(os.path.join(folder, "modelgen.json"), json.dumps(grouped("modelgen"), indent=1))
            write(os.path.join(folder, "torch.json"), json.dumps({threads: grouped(threads) for threads in ("1", "default")}, indent=1))
            write(os.path.join(folder, "other_load.json"), json.dumps(others, indent=1))
            if trips:
                write(os.path.join(folder, "round_trip.json"), json.dumps(trips, indent=1))
                write(os.path.join(folder, "shared_core.json"), json.dumps(shares, indent=1))
                print(f"  patience left: {cores.patience} s", flush=True)

            # The digits fits and the FMA peak, each in a process of its own, the side going first alternating.
            fits = [lambda: run([sys.executable, os.path.join(here, "sklearn_peer.py"), os.path.join(folder, "sklearn.json")]),
                    lambda: write(os.path.join(folder, "digits.json"), run(["dotnet", dll, "--digits"]))]
            for fit in (fits if round_number % 2 else fits[::-1]):
                fit()
            if peak:
                write(os.path.join(folder, "peak.txt"), run([peak]))
    finally:
        for server in sides.values():
            server.close()


if __name__ == "__main__":
    main()
