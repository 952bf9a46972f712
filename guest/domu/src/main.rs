//! `ferrite-domu`: Ferrite's test PV domU. One ELF image; the first word of the `StartInfo`
//! command line picks what it does (docs/pv-guest.md lists the modes):
//!
//! `hello`, `ptbuild`, `evil`, `evil-crash`, `hog`, `latency <n>`, `smp [stay]`,
//! `bench-null <iters>`, `bench-mmu <batch> <rounds>`, `balloon`, `psci`,
//! `ring-console <n> [gap_ms]`, `evil-io`, `blk-write <seed>`, `blk-read <seed>`, `blk-evil`,
//! `blk-grants <seed>`, `net-ping <peer> <n>`, `net-pong <n>`, `net-wire <n>`, `net-evil`, `evt-ping <n>`.
//!
//! Every line it prints starts with `domU<id>: `. Every mode ends with `SCHED_OP SHUTDOWN`
//! (poweroff) except those that run forever (`hog`, `smp stay`); an unknown mode or a bad
//! argument is reported and the domain crashes (shutdown reason 3).
//!
//! Built for any target other than `aarch64-unknown-none` the crate is an empty program, so
//! `cargo build --workspace` on the host still works.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std)]
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_main)]

/// Prints one line prefixed `domU<id>: `.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
macro_rules! out {
    ($($arg:tt)*) => {
        ferrite_pv::println!("domU{}: {}", ferrite_pv::rt::domid(), format_args!($($arg)*))
    };
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod args;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bench;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod blk;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod evil;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod front;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hello;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hog;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod io;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod latency;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod life;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod memory;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod net;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod net_evil;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod ptbuild;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod share;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod smp;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod vcpu_tlb;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod wire;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod guest {
    use crate::args::Args;
    use crate::{
        bench, blk, evil, hello, hog, io, latency, life, memory, net, net_evil, ptbuild, share,
        smp, vcpu_tlb, wire,
    };
    use ferrite_pv::StartInfo;
    use ferrite_pv::mm::{Ferrite, FrameMap, Mm};
    use ferrite_pv::rt;
    use ferrite_pv::sync::{SpinGuard, SpinLock};

    ferrite_pv::entry!(main);

    /// The page-table manager, set up from the `StartInfo` before any mode runs.
    static MM: SpinLock<Mm<Ferrite>> = SpinLock::new(Mm::new(Ferrite::new(FrameMap::EMPTY)));

    pub fn mm() -> SpinGuard<'static, Mm<Ferrite>> {
        MM.lock()
    }

    const MODES: &str = "hello, ptbuild, evil, evil-crash, hog, latency <n>, smp [stay], \
                         bench-null <iters>, bench-mmu <batch> <rounds>, balloon, psci, \
                         ring-console <n> [gap_ms], evil-io, blk-write <seed>, blk-read <seed>, \
                         blk-evil, blk-grants <seed>, \
                         blk-loop <seed> <rounds> [gap_ms], blk-bench <MiB> [KiB [depth]], net-ping <peer> <n>, \
                         net-pong <n>, net-wire <n>, net-evil, \
                         net-blast <peer> <n>, net-sink <n>, share-grant <peer>, \
                         share-map <peer>, counter <ms> [fault <n>], evil-ctl, \
                         console-echo <n>, evt-ping <n>, vcpu-tlb <turns>; \
                         any of them after wait <ms>";

    fn main(si: &'static StartInfo) -> ! {
        mm().init_from_start_info(si);
        let cmdline = si.cmd_line().unwrap_or("");
        let mut args = Args::new(cmdline);
        let mut mode = args.word().unwrap_or("hello");
        if mode == "wait" {
            // `wait <ms> <mode ...>`: a pause before the mode starts, in the domain's own time
            // (a save and restore meanwhile does not count), so a test can act on the domain
            // before it touches its devices.
            let ms = args.number("wait", "ms", 1000);
            if let Err(e) = ferrite_pv::time::sleep_us(ms.saturating_mul(1000)) {
                out!("wait: the timer was refused: {e}");
                rt::crash()
            }
            out!("wait: {ms} ms waited");
            mode = args.word().unwrap_or("hello");
        }
        match mode {
            "hello" => hello::run(si, cmdline),
            "ptbuild" => ptbuild::run(),
            "evil" if args.peek() == Some("crash") => evil::crash(),
            "evil" => evil::run(si),
            "evil-crash" => evil::crash(),
            "hog" => hog::run(),
            "counter" => {
                let ms = args.number("counter", "ms", 100);
                let fault =
                    (args.word() == Some("fault")).then(|| args.number("counter", "fault", 10));
                life::counter(ms, fault)
            }
            "evil-ctl" => life::evil_ctl(),
            "console-echo" => life::console_echo(si, args.number("console-echo", "n", 1)),
            "balloon" => memory::balloon(),
            "psci" => memory::psci(),
            "ring-console" => {
                let n = args.number("ring-console", "n", 10);
                let gap = args.number("ring-console", "gap_ms", 0);
                io::ring_console(si, n, gap)
            }
            "evil-io" => io::evil(si),
            "blk-write" => blk::write(args.number("blk-write", "seed", 1)),
            "blk-read" => blk::read(args.number("blk-read", "seed", 1)),
            "blk-evil" => blk::evil(),
            "blk-grants" => blk::grants(args.number("blk-grants", "seed", 1)),
            "blk-loop" => {
                let seed = args.number("blk-loop", "seed", 1);
                let rounds = args.number("blk-loop", "rounds", 10);
                blk::rounds(seed, rounds, args.number("blk-loop", "gap_ms", 100))
            }
            "share-grant" => share::grant_side(args.number("share-grant", "peer", 1) as u16),
            "share-map" => share::map_side(si, args.number("share-map", "peer", 1) as u16),
            "blk-bench" => {
                let mib = args.number("blk-bench", "mib", 4);
                let kib = args.number("blk-bench", "kib", 32);
                blk::bench(mib, kib, args.number("blk-bench", "depth", 32))
            }
            "net-sink" => net::sink(si.domid as u16, args.number("net-sink", "n", 1000)),
            "net-blast" => {
                let peer = args.number("net-blast", "peer", 1) as u16;
                let n = args.number("net-blast", "n", 1000);
                let depth = args.number("net-blast", "depth", net::TX_PAGES as u64);
                net::blast(si.domid as u16, peer, n, depth)
            }
            "net-evil" => net_evil::run(si.domid as u16),
            "net-wire" => wire::run(si.domid as u16, args.number("net-wire", "n", 5)),
            "net-pong" => {
                let n = args.number("net-pong", "n", 10);
                net::pong(si.domid as u16, n, args.number("net-pong", "seconds", 10))
            }
            "net-ping" => {
                let peer = args.number("net-ping", "peer", 1) as u16;
                let n = args.number("net-ping", "n", 10);
                net::ping(
                    si.domid as u16,
                    peer,
                    n,
                    args.number("net-ping", "gap_ms", 0),
                )
            }
            "latency" => latency::run(args.number("latency", "n", 100)),
            "smp" => smp::run(si, args.word() == Some("stay")),
            "vcpu-tlb" => vcpu_tlb::run(args.number("vcpu-tlb", "turns", 200)),
            "evt-ping" => bench::evt_ping(args.number("evt-ping", "n", 100)),
            "bench-null" => bench::null(args.number("bench-null", "iters", 100_000)),
            "bench-mmu" => {
                let batch = args.number("bench-mmu", "batch", 512);
                let rounds = args.number("bench-mmu", "rounds", 1000);
                bench::mmu(batch, rounds)
            }
            other => {
                out!("unknown mode '{other}' (modes: {MODES})");
                rt::crash()
            }
        }
        rt::poweroff()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        rt::panic(info)
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
use guest::mm;

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!(
        "ferrite-domu is a PV guest image: build it with --target aarch64-unknown-none \
         (see docs/pv-guest.md)"
    );
}
