#!/usr/bin/env python3
"""Where Ferrite's EL2 instructions go, from QEMU's own execution log.

Run QEMU with `-icount shift=0,sleep=off -d in_asm,exec,nochain -dfilter <load>..<load+size>
-D q.log` (one CPU), then:

    tools/el2-profile.py q.log target/boards/qemu-virt-dom0/.../ferrite [--load 0x40080000]
        [--per N] [--from SYMBOL]

It sums the instructions of every executed translation block by the function they belong to
(symbols from the ELF, relocated to the load address) and prints the top ones, divided by
`--per` (e.g. the number of hypercalls the guest made). `--from SYMBOL` starts counting at
the first execution of that function (to skip boot). `--calls` adds how many times each
function was entered (a block starting at its first instruction): a small function entered
dozens of times per operation is worth inlining. `--callers SYMBOL` prints instead which
functions' blocks ran just before each entry to SYMBOL (e.g. `memcpy`: who copies what).

Boot is easiest removed by difference: profile a run of N operations and one of n, subtract,
divide by N - n.
"""
import argparse, bisect, collections, re, subprocess, pathlib

ap = argparse.ArgumentParser()
ap.add_argument("log")
ap.add_argument("elf")
ap.add_argument("--load", default="0x40080000")
ap.add_argument("--per", type=float, default=1.0)
ap.add_argument("--from", dest="start", default=None)
ap.add_argument("--top", type=int, default=25)
ap.add_argument("--calls", action="store_true")
ap.add_argument("--callers", default=None)
a = ap.parse_args()
load = int(a.load, 16)

nm = next(pathlib.Path.home().glob(".rustup/toolchains/*/lib/rustlib/*/bin/llvm-nm"))
syms = []
for l in subprocess.run([nm, "--demangle", "-n", a.elf], capture_output=True, text=True).stdout.splitlines():
    p = l.split(" ", 2)
    if len(p) == 3 and p[1] in "tT":
        syms.append((int(p[0], 16) + load, re.sub(r"::h[0-9a-f]{16}$", "", p[2])))
syms.sort()
addrs = [s for s, _ in syms]
starts = {s: n for s, n in syms}

def sym(pc):
    i = bisect.bisect_right(addrs, pc) - 1
    return syms[i][1] if i >= 0 else "?"

blocks, cur, counting = {}, None, a.start is None
total, entries, callers = collections.Counter(), collections.Counter(), collections.Counter()
last = None
for line in open(a.log, errors="ignore"):
    if line.startswith("IN:"):
        cur = None
        continue
    m = re.match(r"^0x([0-9a-f]+):", line)
    if m:
        pc = int(m.group(1), 16)
        if cur is None:
            cur, blocks[pc] = pc, []
        blocks[cur].append(pc)
        continue
    if line.startswith("Trace"):
        cur = None
        m = re.search(r"/([0-9a-f]{16})/", line)
        if not m:
            continue
        tb = int(m.group(1), 16)
        for pc in blocks.get(tb, []):
            name = sym(pc)
            counting = counting or a.start in name
            if counting:
                total[name] += 1
        if counting and tb in starts:
            entries[starts[tb]] += 1
            if starts[tb] == a.callers and last is not None:
                callers[last] += 1
        if tb in blocks:
            last = sym(tb)
if a.callers:
    for name, n in callers.most_common(a.top):
        print(f"{n / a.per:12.2f}  {name[:110]}")
    raise SystemExit
for name, n in total.most_common(a.top):
    calls = f"{entries[name] / a.per:8.2f} calls  " if a.calls else ""
    print(f"{n / a.per:12.1f}  {calls}{name[:110]}")
print(f"{sum(total.values()) / a.per:12.1f}  in all")
