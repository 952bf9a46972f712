//! A domain destroyed while its frontends are connected: its devices read as closed on the
//! device bus, dom0's backends let go of its rings (destruction waits for every mapping of its
//! pages to end), and destruction completes without anyone closing anything by hand.

use std::time::Duration;

use ferrite_systests::paths::dom0_image;
use ferrite_systests::{Exit, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn destroying_a_domu_mid_io_disconnects_its_backend_and_frees_it() -> Result<()> {
    let disk = std::env::temp_dir().join(format!("ferrite-teardown-{}.img", std::process::id()));
    std::fs::File::create(&disk)?.set_len(80 << 20)?;
    let out = Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label("teardown")
        .image(dom0_image("qemu-virt"))
        .bootargs(
            "semihosting dom0_vcpus=1 \
             domu=name=reader,mem=8M,disk=1M:64M,cmd=blk-bench+64 \
             -- dom0.exec=\"sleep 150;destroy reader;list\" poweroff",
        )
        .virtio_disk(&disk)
        .spawn()?
        .wait_exit(TIMEOUT);
    let _ = std::fs::remove_file(&disk);
    let out = out?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    let c = &out.console;
    out.ensure(
        c.contains("dom0: blk: dom1: connected"),
        "the domU's disk was connected",
    )?;
    out.ensure(
        !c.contains("blk-bench: read"),
        "the domU was destroyed mid-benchmark (it finished first: make it longer)",
    )?;
    out.ensure(
        c.contains("dom0: blk: dom1: the frontend closed: disconnected"),
        "dom0's block backend saw the dying domain's disk close and let go of its ring",
    )?;
    out.ensure(
        c.contains("reader: domain 1 destroyed;") && c.contains("destroyed reader (dom1)"),
        "destruction completed and the toolstack's destroy returned",
    )?;
    out.ensure(
        c.contains("dom0: exec: done"),
        "dom0 ran its script to the end",
    )?;
    Ok(())
}
