#!/usr/bin/env python3
"""Where Ferrite's EL2 instructions go, from QEMU's own execution log.

Run QEMU with `-icount shift=0,sleep=off -d in_asm,exec,nochain -dfilter <load>..<load+size>
-D q.log` (one CPU), then:

    tools/el2-profile.py q.log target/boards/qemu-virt-dom0/.../ferrite [--load 0x40080000]
        [--per N] [--from SYMBOL]

It sums the instructions of every executed translation block by the function they belong to
(symbols from the ELF, relocated to the load address) and prints the top ones, divided by
`--per` (e.g. the number of hypercalls the guest made). `--from SYMBOL` starts counting at
the first execution of that function (to skip boot).
"""
import argparse, bisect, collections, re, subprocess, pathlib

ap = argparse.ArgumentParser()
ap.add_argument("log")
ap.add_argument("elf")
ap.add_argument("--load", default="0x40080000")
ap.add_argument("--per", type=float, default=1.0)
ap.add_argument("--from", dest="start", default=None)
ap.add_argument("--top", type=int, default=25)
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

def sym(pc):
    i = bisect.bisect_right(addrs, pc) - 1
    return syms[i][1] if i >= 0 else "?"

blocks, cur, counting = {}, None, a.start is None
total = collections.Counter()
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
        for pc in blocks.get(int(m.group(1), 16), []):
            name = sym(pc)
            counting = counting or a.start in name
            if counting:
                total[name] += 1
for name, n in total.most_common(a.top):
    print(f"{n / a.per:12.1f}  {name[:110]}")
print(f"{sum(total.values()) / a.per:12.1f}  in all")
