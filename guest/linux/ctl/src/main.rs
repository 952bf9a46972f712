//! `ferrite-ctl`: Ferrite's toolstack for Linux dom0 user space, shaped like Xen's `xl`.
//!
//! User space cannot issue `hvc`, so every call goes through dom0's control page
//! (docs/linux-dom0.md): the frame Ferrite describes as `/ferrite-ctrl@<address>` in dom0's
//! device tree and emulates. This program maps it (`/dev/uioN` named `ferrite-ctrl` when the
//! kernel has `uio_pdrv_genirq`, otherwise `/dev/mem` at the node's address), writes a call's
//! x0..x5, writes the doorbell, and reads x0..x3 back. Pointer arguments are this process's
//! own virtual addresses: Ferrite translates them through the address space live at the trap,
//! which is ours. Buffers are touched (written) before a call so their pages are resident and
//! private.
//!
//!     ferrite-ctl list | info | dmesg
//!     ferrite-ctl create <config> [image]      # config: name=web,mem=16M,cmd=counter+100
//!     ferrite-ctl pause|unpause|destroy|shutdown|reboot <domain id or name>
//!     ferrite-ctl save [-c] <domain> <file> | restore [-p] <file>
//!     ferrite-ctl sched-credit [-d <domain> [-w <weight>] [-c <cap>]]
//!     ferrite-ctl vcpu-pin <domain> <vcpu|all> <cpus>
//!     ferrite-ctl blkback <file> [seconds]     # serve domUs' disk= regions from a file
//!     ferrite-ctl netback [-u <ifname>] [seconds]  # switch domUs' frames (and to a NIC)
//!     ferrite-ctl consoled [seconds]           # print every domU's console ring

mod backend;
mod blkback;
mod consoled;
mod netback;
mod sched;
mod store;
mod uplink;

use ferrite_abi::call::{self, domctl};
use ferrite_abi::ctl::{CreateArgs, DomInfo, PhysInfo, state};
use ferrite_abi::errno::{self, Errno};
use std::cell::Cell;
use std::ffi::c_void;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

/// The control page's registers (src/vdev/ctrl.rs).
const REG_X0: usize = 0x00;
const REG_DOORBELL: usize = 0x40;
const REG_R0: usize = 0x80;
const REG_MAGIC: usize = 0xF00;
const REG_VERSION: usize = 0xF04;
const MAGIC: u32 = 0x4652_4354;
const PAGE: usize = 4096;

/// The image `create` loads when none is named.
const DEFAULT_IMAGE: &str = "/domu.elf";

unsafe extern "C" {
    fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64)
    -> *mut c_void;
    fn flock(fd: i32, op: i32) -> i32;
}
const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_SHARED: i32 = 1;
const LOCK_EX: i32 = 2;
const LOCK_UN: i32 = 8;
const O_SYNC: i32 = 0o4010000;

type Res<T> = Result<T, String>;

/// The mapped control page, held with an exclusive lock (one request at a time).
struct Ctrl {
    regs: *mut u8,
    /// What x0..x5 hold now, as this process last wrote them: the registers keep their values
    /// between calls and the lock keeps every other caller out, so a call writes only those
    /// that change (each access is a trap).
    xs: Cell<[Option<u64>; 7]>,
    /// The page's `VERSION`: 2 and later have x6 and r4..r6.
    version: u32,
    _file: File,
}

impl Ctrl {
    fn open() -> Res<Self> {
        let (file, offset, how) = match find_uio() {
            Some(dev) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&dev)
                    .map_err(|e| format!("{dev}: {e}"))?;
                (f, 0, dev)
            }
            None => {
                let addr = find_node()?;
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(O_SYNC)
                    .open("/dev/mem")
                    .map_err(|e| format!("/dev/mem: {e}"))?;
                (f, addr, format!("/dev/mem at {addr:#x}"))
            }
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { flock(file.as_raw_fd(), LOCK_EX) } != 0 {
            return Err(format!("{how}: cannot lock it"));
        }
        // SAFETY: maps one page of the device; the mapping lives as long as `Ctrl` (never
        // unmapped: the process ends first).
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                PAGE,
                PROT_READ | PROT_WRITE,
                MAP_SHARED,
                file.as_raw_fd(),
                offset as i64,
            )
        };
        if p as isize == -1 {
            return Err(format!(
                "{how}: mmap failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        let c = Ctrl {
            regs: p.cast(),
            xs: Cell::new([None; 7]),
            version: 0,
            _file: file,
        };
        let magic = c.read32(REG_MAGIC);
        if magic != MAGIC {
            return Err(format!(
                "{how}: not Ferrite's control page (magic {magic:#x})"
            ));
        }
        let version = c.read32(REG_VERSION);
        Ok(Ctrl { version, ..c })
    }

    /// Takes the page again after [`Self::unlock`]; another process may have changed the
    /// registers meanwhile, so none is taken as known.
    fn lock(&self) -> Res<()> {
        // SAFETY: flock on a descriptor we own.
        if unsafe { flock(self._file.as_raw_fd(), LOCK_EX) } != 0 {
            return Err("cannot lock the control page".into());
        }
        self.xs.set([None; 7]);
        Ok(())
    }

    /// Lets other ferrite-ctl runs use the page (a long-running backend between passes).
    fn unlock(&self) {
        // SAFETY: flock on a descriptor we own.
        unsafe { flock(self._file.as_raw_fd(), LOCK_UN) };
    }

    fn read32(&self, off: usize) -> u32 {
        // SAFETY: `off` is a register inside the mapped page, 4-aligned.
        unsafe { std::ptr::read_volatile(self.regs.add(off).cast::<u32>()) }
    }

    fn read64(&self, off: usize) -> u64 {
        // SAFETY: `off` is a register inside the mapped page, 8-aligned.
        unsafe { std::ptr::read_volatile(self.regs.add(off).cast::<u64>()) }
    }

    fn write64(&self, off: usize, v: u64) {
        // SAFETY: as `read64`. One `str` per register: Ferrite emulates single accesses.
        unsafe { std::ptr::write_volatile(self.regs.add(off).cast::<u64>(), v) }
    }

    /// One call: x0..x5 in (x6 = 0); returns x0 after it (`result` reads x1..x3).
    fn call(&self, x: [u64; 6]) -> u64 {
        self.call7([x[0], x[1], x[2], x[3], x[4], x[5], 0])
    }

    /// One call with x6 too (ignored by a version-1 page, which has no x6: only callers that
    /// checked [`Self::has_x6`] pass a non-zero one).
    fn call7(&self, x: [u64; 7]) -> u64 {
        let words = if self.has_x6() { 7 } else { 6 };
        let mut xs = self.xs.get();
        for (i, v) in x.iter().enumerate().take(words) {
            if xs[i] != Some(*v) {
                self.write64(REG_X0 + 8 * i, *v);
                xs[i] = Some(*v);
            }
        }
        self.xs.set(xs);
        self.write64(REG_DOORBELL, 1);
        self.read64(REG_R0)
    }

    /// x1..x3 after the last call (`n` = 1..=3; up to 6 when [`Self::has_x6`]).
    fn result(&self, n: usize) -> u64 {
        self.read64(REG_R0 + 8 * n)
    }

    /// Whether the page takes x6 and gives r4..r6 (version 2 on).
    fn has_x6(&self) -> bool {
        self.version >= 2
    }

    fn domctl(&self, cmd: u64, dom: u64, a: u64, b: u64) -> Result<u64, Errno> {
        self.domctl5(cmd, dom, a, b, 0)
    }

    /// A `DOMCTL` with x5 too.
    fn domctl5(&self, cmd: u64, dom: u64, a: u64, b: u64, c: u64) -> Result<u64, Errno> {
        errno::result(self.call([call::DOMCTL as u64, cmd, dom, a, b, c]))
    }

    /// A `SCHED_CTL` call: x2 = domain, x3, x4 = the command's arguments.
    fn sched_ctl(&self, cmd: u64, dom: u64, a: u64, b: u64) -> Result<u64, Errno> {
        errno::result(self.call([call::SCHED_CTL as u64, cmd, dom, a, b, 0]))
    }
}

/// `/dev/uioN` whose name is `ferrite-ctrl`, if the kernel offers one.
fn find_uio() -> Option<String> {
    let dir = fs::read_dir("/sys/class/uio").ok()?;
    dir.flatten().find_map(|e| {
        let name = fs::read_to_string(e.path().join("name")).ok()?;
        (name.trim() == "ferrite-ctrl").then(|| format!("/dev/{}", e.file_name().to_string_lossy()))
    })
}

/// The control page's physical address, from `/ferrite-ctrl@<address>` in the device tree.
fn find_node() -> Res<u64> {
    let dir = fs::read_dir("/proc/device-tree")
        .map_err(|e| format!("/proc/device-tree: {e} (is this Linux dom0 on Ferrite?)"))?;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_prefix("ferrite-ctrl@") {
            return u64::from_str_radix(hex, 16).map_err(|_| format!("bad node name {name}"));
        }
    }
    Err(
        "no control page: the device tree has no /ferrite-ctrl@... node (not Ferrite's \
         dom0, or a Ferrite without it)"
            .into(),
    )
}

/// Makes every page of `buf` resident and private (a write to each), so Ferrite can
/// translate it at the trap.
fn touch(buf: &mut [u8]) {
    for i in (0..buf.len()).step_by(PAGE) {
        // SAFETY: `i` is inside `buf`.
        unsafe {
            let p = buf.as_mut_ptr().add(i);
            std::ptr::write_volatile(p, std::ptr::read_volatile(p));
        }
    }
    if let Some(last) = buf.last_mut() {
        // SAFETY: a valid element.
        unsafe { std::ptr::write_volatile(last, std::ptr::read_volatile(last)) };
    }
}

/// A plain-data structure as bytes, for touching.
fn bytes_of<T>(t: &mut T) -> &mut [u8] {
    // SAFETY: only used on the ABI's #[repr(C)] integer structures.
    unsafe { std::slice::from_raw_parts_mut((t as *mut T).cast::<u8>(), size_of::<T>()) }
}

/// A slice of plain-data structures as bytes, for touching.
fn bytes_of_slice<T>(t: &mut [T]) -> &mut [u8] {
    // SAFETY: only used on the ABI's #[repr(C)] integer structures; same memory, same length
    // in bytes.
    unsafe { std::slice::from_raw_parts_mut(t.as_mut_ptr().cast::<u8>(), size_of_val(t)) }
}

fn err_text(e: Errno) -> String {
    let what = match e {
        Errno::NoEnt => "no such domain",
        Errno::Perm => "not allowed",
        Errno::Inval => "invalid in its state",
        Errno::Busy => "busy",
        Errno::NoMem => "out of memory",
        Errno::Fault => "Ferrite could not reach this program's buffer",
        Errno::NoSys => "not supported",
        _ => "refused",
    };
    format!("{what} ({})", e.name())
}

fn get_info(c: &Ctrl, dom: u16) -> Result<DomInfo, Errno> {
    let mut info = Box::new(DomInfo::default());
    touch(bytes_of(&mut *info));
    let va = &mut *info as *mut DomInfo as u64;
    c.domctl(domctl::GET_INFO, dom as u64, va, 0)?;
    Ok(*info)
}

/// Every domain's information, dom0 first.
fn domains(c: &Ctrl) -> Res<Vec<DomInfo>> {
    let mut out = vec![get_info(c, 0).map_err(|e| format!("domain 0: {}", err_text(e)))?];
    let mut at = 0u64;
    loop {
        match c.domctl(domctl::NEXT_DOMAIN, at, 0, 0) {
            Ok(id) => {
                at = id;
                // It may go between the walk and the question.
                if let Ok(i) = get_info(c, id as u16) {
                    out.push(i);
                }
            }
            Err(Errno::NoEnt) => return Ok(out),
            Err(e) => return Err(format!("listing domains: {}", err_text(e))),
        }
    }
}

fn display_name(i: &DomInfo) -> String {
    if i.id == 0 {
        "Domain-0".into()
    } else {
        i.name().into()
    }
}

/// xl's six state columns: r(unning) b(locked) p(aused) s(hutdown) c(rashed) d(ying).
fn state_flags(i: &DomInfo) -> String {
    let mut s = *b"------";
    match i.state {
        state::RUNNING => s[0] = b'r',
        state::PAUSED => s[2] = b'p',
        state::SHUTDOWN => s[3] = b's',
        state::CRASHED => s[4] = b'c',
        state::DYING => s[5] = b'd',
        _ => {}
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn list(c: &Ctrl) -> Res<()> {
    println!("Name                                        ID   Mem VCPUs\tState\tTime(s)");
    for i in domains(c)? {
        println!(
            "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}",
            display_name(&i),
            i.id,
            i.mem_kib / 1024,
            i.vcpus,
            state_flags(&i),
            i.cpu_ns as f64 / 1e9
        );
    }
    Ok(())
}

fn info(c: &Ctrl) -> Res<()> {
    let version = c.call([call::VERSION as u64, 0, 0, 0, 0, 0]);
    let mut p = Box::new(PhysInfo::default());
    touch(bytes_of(&mut *p));
    let va = &mut *p as *mut PhysInfo as u64;
    c.domctl(domctl::PHYSINFO, 0, va, 0)
        .map_err(|e| format!("physinfo: {}", err_text(e)))?;
    let mib = |frames: u64| (frames * 4096) >> 20;
    println!("host                   : ferrite");
    println!("hypervisor             : ferrite");
    println!(
        "abi_version            : {}.{}",
        version >> 16,
        version & 0xffff
    );
    println!("nr_cpus                : {}", p.pcpus);
    println!("total_memory           : {}", mib(p.total_frames));
    println!("free_memory            : {}", mib(p.free_frames));
    println!("nr_domains             : {}", p.domains);
    println!("ferrite_heap_used      : {}", p.heap_used);
    Ok(())
}

/// Ferrite's log ring from byte number `from` (0: all it keeps), as text.
fn log_text(c: &Ctrl, mut from: u64) -> Res<String> {
    let mut buf = vec![0u8; 1024];
    touch(&mut buf);
    let mut out = Vec::new();
    loop {
        let r = c.domctl(
            domctl::DMESG,
            from,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
        );
        let n = r.map_err(|e| format!("dmesg: {}", err_text(e)))? as usize;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n.min(buf.len())]);
        from = c.result(1);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The number of the next byte Ferrite will log (a `log_text` from there gives what follows).
fn log_mark(c: &Ctrl) -> u64 {
    let mut buf = [0u8; 8];
    touch(&mut buf);
    // From past the end: nothing copied, x1 = the end.
    match c.domctl(domctl::DMESG, u64::MAX, buf.as_mut_ptr() as u64, 0) {
        Ok(_) => c.result(1),
        Err(_) => 0,
    }
}

fn dmesg(c: &Ctrl) -> Res<()> {
    print!("{}", log_text(c, 0)?);
    Ok(())
}

fn create(c: &Ctrl, config: &str, image: Option<&str>) -> Res<()> {
    // A file holding the configuration, or the configuration itself (`name=web,mem=16M`).
    let mut cfg = match fs::read_to_string(config) {
        Ok(text) => {
            println!("Parsing config from {config}");
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes()
        }
        Err(_) if config.contains('=') => config.as_bytes().to_vec(),
        Err(e) => return Err(format!("{config}: {e}")),
    };
    let image_path = image.unwrap_or(DEFAULT_IMAGE);
    let mut img = fs::read(image_path).map_err(|e| format!("{image_path}: {e}"))?;
    let mut err = vec![0u8; 256];
    touch(&mut cfg);
    touch(&mut img);
    touch(&mut err);
    let mut args = Box::new(CreateArgs {
        image: img.as_ptr() as u64,
        image_len: img.len() as u64,
        config: cfg.as_ptr() as u64,
        config_len: cfg.len() as u64,
        err: err.as_mut_ptr() as u64,
        err_len: err.len() as u64,
    });
    touch(bytes_of(&mut *args));
    let va = &*args as *const CreateArgs as u64;
    // x2 = the arguments (not a domain id).
    match c.domctl(domctl::CREATE, va, 0, 0) {
        Ok(id) => {
            let name = get_info(c, id as u16).map(|i| i.name().to_string());
            println!(
                "Created domain {} (id {id}) from {image_path}, paused: `ferrite-ctl unpause {id}` starts it",
                name.unwrap_or_default()
            );
            Ok(())
        }
        Err(e) => {
            let n = err.iter().position(|&b| b == 0).unwrap_or(err.len());
            let why = String::from_utf8_lossy(&err[..n]);
            Err(format!(
                "create refused: {}{}",
                err_text(e),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ))
        }
    }
}

/// A domain named by id or by name.
fn resolve(c: &Ctrl, arg: &str) -> Res<DomInfo> {
    if let Ok(id) = arg.parse::<u16>() {
        return get_info(c, id).map_err(|e| format!("domain {id}: {}", err_text(e)));
    }
    domains(c)?
        .into_iter()
        .find(|i| i.name() == arg || (i.id == 0 && arg == "Domain-0"))
        .ok_or_else(|| format!("domain '{arg}': no such domain"))
}

/// `DOMCTL DESTROY`, asked again (up to 1 s) while Ferrite answers `-EBUSY` (a vCPU still
/// leaving its CPU); `-ENOENT` after an `-EBUSY` means it is gone.
fn destroy_id(c: &Ctrl, id: u64) -> Result<(), Errno> {
    let mut busy = 0;
    loop {
        match c.domctl(domctl::DESTROY, id, 0, 0) {
            Ok(_) => return Ok(()),
            Err(Errno::Busy) if busy < 50 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(Errno::NoEnt) if busy > 0 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn lifecycle(c: &Ctrl, verb: &str, arg: &str) -> Res<()> {
    let d = resolve(c, arg)?;
    let (cmd, extra) = match verb {
        "pause" => (domctl::PAUSE, 0),
        "unpause" => (domctl::UNPAUSE, 0),
        "destroy" => (domctl::DESTROY, 0),
        "shutdown" => (domctl::SHUTDOWN, ferrite_abi::sched::SHUTDOWN_POWEROFF),
        _ => (domctl::SHUTDOWN, ferrite_abi::sched::SHUTDOWN_REBOOT),
    };
    let r = if cmd == domctl::DESTROY {
        destroy_id(c, d.id as u64)
    } else {
        c.domctl(cmd, d.id as u64, extra, 0).map(drop)
    };
    if let Err(e) = r {
        return Err(format!(
            "{verb} {} (domain {}): {}",
            display_name(&d),
            d.id,
            err_text(e)
        ));
    }
    let past = match verb {
        "shutdown" | "reboot" => format!("asked to {verb}"),
        "pause" => "paused".into(),
        "unpause" => "unpaused".into(),
        _ => "destroyed".into(),
    };
    println!("Domain {} ({}) {past}", d.id, display_name(&d));
    Ok(())
}

const USAGE: &str = "usage: ferrite-ctl <command>
  list                         the domains, as `xl list`
  info                         the machine, as `xl info`
  dmesg                        Ferrite's log
  create <config> [image]      build a domain, paused; config: a file or key=value,...
                               (name=web,mem=16M,cmd=counter+100); image: a PV ELF (/domu.elf)
  pause|unpause <domain>       stop or let run its vCPUs
  destroy <domain>             release it
  shutdown|reboot <domain>     ask it to power off or reboot
  save [-c] <domain> <file>    write it to a file, then destroy it (-c: keep it, paused)
  restore [-p] <file>          build a saved domain again, unpaused (-p: paused)
  sched-credit [-d <domain> [-w <weight>] [-c <cap>]]
                               show, or set, the credit scheduler's weight and cap
  vcpu-pin <domain> <vcpu|all> <cpus>
                               the pCPUs a vCPU may run on (0-1,3 or all)
  blkback <file> [seconds]     serve every domU's disk= region from <file> (an image or
                               /dev/vda), until killed or for <seconds>
  consoled [seconds]           print every domU's console ring, a line at a time, until
                               killed or for <seconds>
  netback [-u <ifname>] [seconds]
                               switch frames between domUs' netfronts (and to and from the
                               NIC <ifname>), until killed or for <seconds>
<domain> is an id or a name.";

fn run(args: &[String]) -> Res<()> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let check = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!("bad arguments\n{USAGE}"))
        }
    };
    match a.as_slice() {
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            return Ok(());
        }
        [] => return Err(USAGE.into()),
        _ => {}
    }
    let verbs = [
        "list",
        "info",
        "dmesg",
        "create",
        "save",
        "restore",
        "sched-credit",
        "vcpu-pin",
        "pause",
        "unpause",
        "destroy",
        "shutdown",
        "reboot",
        "blkback",
        "netback",
        "consoled",
    ];
    if !verbs.contains(&a[0]) {
        return Err(format!("unknown command '{}'\n{USAGE}", a[0]));
    }
    let c = Ctrl::open()?;
    match a.as_slice() {
        ["list"] => list(&c),
        ["info"] => info(&c),
        ["dmesg"] => dmesg(&c),
        ["create", cfg] => create(&c, cfg, None),
        ["create", cfg, img] => create(&c, cfg, Some(img)),
        ["save", "-c", dom, file] => store::save(&c, true, dom, file),
        ["save", dom, file] => store::save(&c, false, dom, file),
        ["restore", "-p", file] => store::restore(&c, true, file),
        ["restore", file] => store::restore(&c, false, file),
        ["sched-credit", rest @ ..] => sched::sched_credit(&c, rest),
        ["vcpu-pin", dom, vcpu, cpus] => sched::vcpu_pin(&c, dom, vcpu, cpus),
        ["blkback", file] => {
            c.unlock();
            blkback::run(&c, file, None)
        }
        ["blkback", file, secs] => {
            let secs = secs
                .parse()
                .map_err(|_| format!("blkback: '{secs}' is not a number of seconds"))?;
            c.unlock();
            blkback::run(&c, file, Some(secs))
        }
        ["consoled"] => {
            c.unlock();
            consoled::run(&c, None)
        }
        ["consoled", secs] => {
            let secs = secs
                .parse()
                .map_err(|_| format!("consoled: '{secs}' is not a number of seconds"))?;
            c.unlock();
            consoled::run(&c, Some(secs))
        }
        ["netback", rest @ ..] => {
            let (uplink, rest) = match rest {
                ["-u", name, rest @ ..] => (Some(*name), rest),
                _ => (None, rest),
            };
            let secs = match rest {
                [] => None,
                [secs] => Some(secs.parse().map_err(|_| {
                    format!("netback: '{secs}' is not a number of seconds\n{USAGE}")
                })?),
                _ => return check(false),
            };
            c.unlock();
            netback::run(&c, uplink, secs)
        }
        [verb, dom] if verbs[8..13].contains(verb) => lifecycle(&c, verb, dom),
        _ => check(false),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrite-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}
