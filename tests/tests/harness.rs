//! Checks of the harness itself, with tiny hand-made images (no Ferrite build needed): console
//! reading, exit status, timeouts and killing, the pty target, and the QEMU facts the boot
//! scenarios rely on (dumped DTBs).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrite_systests::{Board, ErrorKind, Exit, Qemu, Result, Serial, dtb, fake};

const T: Duration = Duration::from_secs(20);

fn scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("systests")
}

const BOOT_TEXT: &str = "[    0.000010] cpu0 INFO  memory: 0x40000000-0x7fffffff (1024 MiB)\n\
                         [    0.000020] cpu0 INFO  cpu0 online (mpidr 0x0)\n\
                         ferrite: ready: 1 cpus, 1020 MiB free\n";

fn fake(board: Board, text: &str, exit: Option<u32>) -> PathBuf {
    fake::write_image(&scratch(), board.uart_base(), text, exit).expect("write fake image")
}

/// Whether process `pid` still exists (a reaped process has no /proc entry).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn console_and_exit_status() -> Result<()> {
    let image = fake(Board::Virt, BOOT_TEXT, Some(3));
    let mut run = Qemu::virt()
        .cpus(1)
        .image(&image)
        .label("fake-virt")
        .spawn()?;
    let line = run.expect("ferrite: ready:", T)?;
    assert_eq!(line, "ferrite: ready: 1 cpus, 1020 MiB free");
    let out = run.wait_exit(T)?;
    out.ensure_exit(Exit::Code(3))?;
    assert_eq!(out.console.lines().len(), 3, "{}", out.console);
    assert_eq!(out.console.memory_banks()[0].mib, 1024);
    assert_eq!(
        out.console.online_cpus().into_iter().collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(out.console.ready().map(|r| r.cpus), Some(1));
    Ok(())
}

#[test]
fn expect_is_ordered() -> Result<()> {
    let image = fake(Board::Virt, "one\ntwo\none\nthree\n", Some(0));
    let mut run = Qemu::virt().cpus(1).image(&image).spawn()?;
    run.expect("one", T)?;
    run.expect("two", T)?;
    run.expect("one", T)?;
    let err = run.expect("two", T).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Stopped, "{err}");
    Ok(())
}

#[test]
fn pty_console() -> Result<()> {
    let image = fake(Board::Virt, BOOT_TEXT, Some(0));
    let mut run = Qemu::virt()
        .cpus(2)
        .image(&image)
        .serial(Serial::Pty)
        .label("fake-pty")
        .spawn()?;
    // The first line too: QEMU starts paused until the pty is open.
    run.expect("memory: 0x40000000-0x7fffffff", T)?;
    run.expect("ferrite: ready:", T)?;
    let out = run.wait_exit(T)?;
    out.ensure_exit(Exit::Code(0))?;
    // QEMU exits right after printing: without holding the pty master, the last lines are lost.
    assert!(
        !out.diagnostics.contains("cannot hold the pty master"),
        "{}",
        out.diagnostics
    );
    assert_eq!(out.console.lines().len(), 3, "{}", out.console);
    Ok(())
}

#[test]
fn raspi4b_console() -> Result<()> {
    let image = fake(Board::Raspi4b, BOOT_TEXT, Some(0));
    let run = match Qemu::raspi4b().image(&image).label("fake-rpi4").spawn() {
        Err(e) if e.kind() == ErrorKind::DtbUnavailable => {
            eprintln!("\n!!! SKIPPED raspi4b_console: {e}\n");
            return Ok(());
        }
        run => run?,
    };
    let out = run.wait_exit(T)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(out.console.ready().is_some(), "ready line")?;
    Ok(())
}

#[test]
fn overall_timeout_kills_qemu() {
    let image = fake(Board::Virt, "spinning\n", None);
    let run = Qemu::virt()
        .image(&image)
        .timeout(Duration::from_secs(2))
        .spawn()
        .unwrap();
    let pid = run.pid().unwrap();
    let started = Instant::now();
    let err = run.wait_exit(Duration::from_secs(30)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let text = err.to_string();
    assert!(text.contains("overall timeout"), "{text}");
    assert!(
        text.contains("\nspinning\n"),
        "the transcript is in the error: {text}"
    );
    assert!(
        text.contains("qemu-system-aarch64 -M virt"),
        "the command is in the error: {text}"
    );
    assert!(!alive(pid), "QEMU {pid} is still running");
}

#[test]
fn expect_timeout_reports_console_and_kills_on_drop() {
    let image = fake(Board::Virt, "hello there\n", None);
    let mut run = Qemu::virt().image(&image).spawn().unwrap();
    let pid = run.pid().unwrap();
    let err = run
        .expect("never printed", Duration::from_millis(1500))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let text = format!("{err:?}");
    assert!(
        text.contains("timed out after 1.5s waiting for \"never printed\""),
        "{text}"
    );
    assert!(
        text.contains("--- console (1 lines) ---\nhello there\n"),
        "{text}"
    );
    assert!(alive(pid));
    drop(run);
    assert!(!alive(pid), "QEMU {pid} survived the drop");
}

#[test]
fn panicking_test_kills_qemu() {
    let image = fake(Board::Virt, "x\n", None);
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(|| {
        let run = Qemu::virt().image(&image).spawn().unwrap();
        tx.send(run.pid().unwrap()).unwrap();
        panic!("a failing test");
    });
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(!alive(pid), "QEMU {pid} survived the panic");
}

#[test]
fn wait_exit_timeout_kills() {
    let image = fake(Board::Virt, "", None);
    let run = Qemu::virt().image(&image).spawn().unwrap();
    let pid = run.pid().unwrap();
    let err = run.wait_exit(Duration::from_millis(500)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("did not exit within"), "{err}");
    assert!(!alive(pid));
}

#[test]
fn panic_line_fails_expect() {
    let text = "[    0.1] cpu0 INFO  booting\nferrite: PANIC on cpu0 at src/main.rs:10: boom\n";
    let image = fake(Board::Virt, text, Some(1));
    let mut run = Qemu::virt().image(&image).spawn().unwrap();
    let err = run.expect("ferrite: ready:", T).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    assert!(
        err.to_string()
            .contains("PANIC on cpu0 at src/main.rs:10: boom"),
        "{err}"
    );

    // Expecting the panic itself is fine.
    let image = fake(Board::Virt, text, Some(1));
    let mut run = Qemu::virt().image(&image).spawn().unwrap();
    run.expect("ferrite: PANIC", T).unwrap();
    let out = run.wait_exit(T).unwrap();
    assert_eq!(out.exit, Exit::Code(1));
    let panic = out.console.panic().unwrap();
    assert_eq!(
        (panic.cpu, panic.line, panic.message.as_str()),
        (0, 10, "boom")
    );
}

#[test]
fn missing_image_fails_loudly() {
    let err = Qemu::virt()
        .image("/nonexistent/ferrite.bin")
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ImageMissing);
    assert!(err.to_string().contains("run `make build` first"), "{err}");
}

#[test]
fn qemu_errors_reach_the_message() {
    let image = fake(Board::Virt, "", Some(0));
    let run = Qemu::virt()
        .image(&image)
        .cpu_model("no-such-cpu")
        .spawn()
        .unwrap();
    let out = run.wait_exit(T).unwrap();
    assert_ne!(out.exit, Exit::Code(0));
    let err = out.ensure_exit(Exit::Code(0)).unwrap_err();
    assert!(
        err.to_string()
            .contains("--- diagnostics (QEMU stderr/monitor) ---\nqemu-system-aarch64"),
        "{err}"
    );
}

/// QEMU virt makes one memory node per NUMA node: the two-bank scenario relies on it.
#[test]
fn numa_gives_two_memory_banks() -> Result<()> {
    let facts = dtb::parse(&numa_config().dump_dtb(&scratch())?)?;
    let expected = [
        ferrite_systests::Range::new(0x4000_0000, 0x5fff_ffff),
        ferrite_systests::Range::new(0x6000_0000, 0xbfff_ffff),
    ];
    assert_eq!(facts.memory, expected);
    assert_eq!(facts.cpus, 4);
    assert_eq!(facts.bootargs.as_deref(), Some("loglevel=debug"));
    Ok(())
}

fn numa_config() -> Qemu {
    Qemu::virt()
        .memory("2G")
        .cpus(4)
        .topology("sockets=2,cores=2")
        .bootargs("loglevel=debug")
        .args(["-object", "memory-backend-ram,id=m0,size=512M"])
        .args(["-object", "memory-backend-ram,id=m1,size=1536M"])
        .args([
            "-numa",
            "node,memdev=m0,cpus=0-1",
            "-numa",
            "node,memdev=m1,cpus=2-3",
        ])
}

#[test]
fn virt_memory_above_4g() -> Result<()> {
    let facts = dtb::parse(&Qemu::virt().memory("5G").dump_dtb(&scratch())?)?;
    assert_eq!(
        facts.memory,
        [ferrite_systests::Range::new(0x4000_0000, 0x1_7fff_ffff)]
    );
    Ok(())
}

/// raspi4b puts `-append` in /chosen/bootargs (with Debian's DTB), and QEMU describes only the
/// first 960 MiB of its 2 GiB as /memory (below the VideoCore's share), and its DTB has
/// FDT_NOP tokens.
#[test]
fn raspi4b_honours_append() -> Result<()> {
    let q = Qemu::raspi4b().bootargs("loglevel=debug poweroff semihosting");
    let bytes = match q.dump_dtb(&scratch()) {
        Err(e) if e.kind() == ErrorKind::DtbUnavailable => {
            eprintln!("\n!!! SKIPPED raspi4b_honours_append: {e}\n");
            return Ok(());
        }
        r => r?,
    };
    let facts = dtb::parse(&bytes)?;
    assert_eq!(
        facts.bootargs.as_deref(),
        Some("loglevel=debug poweroff semihosting")
    );
    assert_eq!(facts.cpus, 4);
    assert_eq!(facts.memory, [ferrite_systests::Range::new(0, 0x3bff_ffff)]);
    assert_eq!(facts.memreserve, [ferrite_systests::Range::new(0, 0xfff)]);
    // QEMU nops out the nodes it disables: DT parsers must skip FDT_NOP.
    assert!(facts.nops > 0);
    Ok(())
}
