//! The network backend: domUs reach QEMU's user-mode network through dom0's switch and dom0's
//! virtio-net NIC (the uplink), and its answers come back to the right domU by MAC address; a
//! hostile netfront's bad requests are refused while two honest domUs keep exchanging frames;
//! a restored domU connects again under the MAC address it had.

use std::time::Duration;

use ferrite_systests::paths::dom0_image;
use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Boots dom0 (one vCPU of two CPUs, GICv3, `-icount`) with `bootargs` and checks it powered
/// off cleanly.
fn boot(label: &str, bootargs: &str) -> Result<Outcome> {
    let out = Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label(label)
        .image(dom0_image("qemu-virt"))
        .bootargs(bootargs)
        .spawn()?
        .wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    Ok(out)
}

#[test]
fn two_domus_ping_the_wire_through_dom0s_nic() -> Result<()> {
    // Real time, not -icount: the far end (QEMU's user-mode network) answers in host time.
    let out = Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .icount(false)
        .timeout(TIMEOUT)
        .label("net-wire")
        .image(dom0_image("qemu-virt"))
        .bootargs(
            "semihosting dom0_vcpus=1 \
             domu=name=a,mem=8M,on_poweroff=preserve,cmd=net-wire+5 \
             domu=name=b,mem=8M,on_poweroff=preserve,cmd=net-wire+5 \
             -- dom0.sched.report=6000 poweroff",
        )
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-device,netdev=n0",
        ])
        .spawn()?
        .wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    let c = &out.console;
    out.ensure(
        c.contains("dom0: net: uplink: the NIC 52:54:00:12:34:56 carries the domUs' frames"),
        "dom0 kept its NIC as the switch's uplink after its own check",
    )?;
    for d in [1, 2] {
        out.ensure(
            c.contains(&format!(
                "domU{d}: net-wire: ARP: 10.0.2.2 is at 52:55:0a:00:02:02"
            )),
            format!("dom{d}'s ARP request went out and the gateway's reply came back to it"),
        )?;
        out.ensure(
            c.contains(&format!(
                "domU{d}: net-wire: 5/5 pings to 10.0.2.2 answered, payloads ok"
            )),
            format!("dom{d}'s pings left through the NIC and every reply came back intact"),
        )?;
        let line = c
            .lines()
            .iter()
            .find(|l| l.contains(&format!("dom0: net: dom{d}: the frontend closed")))
            .cloned()
            .unwrap_or_default();
        // At least its ARP request and 5 pings out, their answers back; no line counts 0.
        let count = |key: &str| -> u64 {
            line.split(key)
                .next()
                .and_then(|h| h.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        out.ensure(
            count(" to the wire") >= 6 && count(" from it") >= 6,
            format!("dom0 counted dom{d}'s frames to and from the wire: {line}"),
        )?;
    }
    Ok(())
}

#[test]
fn a_hostile_netfront_is_refused_while_two_domus_keep_exchanging_frames() -> Result<()> {
    let out = boot(
        "net-evil",
        "semihosting dom0_vcpus=1 \
         domu=name=pong,mem=8M,on_poweroff=preserve,cmd=net-pong+20 \
         domu=name=ping,mem=8M,on_poweroff=preserve,cmd=net-ping+1+20 \
         domu=name=evil,mem=8M,on_poweroff=preserve,cmd=net-evil \
         -- dom0.sched.report=3000 poweroff",
    )?;
    let c = &out.console;
    for (case, errno) in [
        ("a frame shorter than its header", "EINVAL"),
        ("a frame longer than 1514 bytes", "EINVAL"),
        ("a frame running past its page", "EINVAL"),
        ("a grant reference it never made", "EPERM"),
        ("a frame from another domain's address", "EPERM"),
    ] {
        out.ensure(
            c.contains(&format!("domU3: net-evil: {case}: refused {errno}")),
            format!("the switch refused {case} with {errno}"),
        )?;
    }
    out.ensure(
        c.contains(
            "dom0: net: dom3: frame 5 refused: its source address 02:fe:00:00:00:01 is not its own",
        ),
        "dom0 said which address the spoofed frame claimed",
    )?;
    out.ensure(
        c.contains(
            "domU3: net-evil: flooded 1024 frames for a domain that does not exist: 1024 answered",
        ),
        "every frame of the flood was answered",
    )?;
    out.ensure(
        c.contains("domU3: net-evil: a good frame after them: ok"),
        "a good frame still went through after the bad ones",
    )?;
    out.ensure(
        c.contains("dom0: net: dom3: ring corrupt (req_prod"),
        "the corrupted ring disconnected the hostile frontend",
    )?;
    out.ensure(
        c.contains("domU3: net-evil: done, 5 refused, 0 allowed"),
        "the hostile frontend finished",
    )?;
    out.ensure(
        c.contains("domU2: net-ping: 20/20 echoes from dom1, payloads ok")
            && c.contains("domU1: net-pong: echoed 20 frames"),
        "the honest pair exchanged every frame meanwhile",
    )?;
    Ok(())
}

/// A domain saved while its netfront is connected connects again after the restore, under a
/// new domain id but with the MAC address it had, so its peer's frames still reach it:
/// `net-ping` (dom2) sends 40 frames to `net-pong` (dom1, MAC 02:fe:00:00:00:01) 50 ms apart,
/// and the pong is saved and restored in the middle. A copy restored while that domain still
/// runs (`save -c`) asks for the same address and is refused it, with the holder named.
#[test]
fn a_restored_domain_keeps_its_mac_address_and_its_peers() -> Result<()> {
    let out = boot(
        "net-restore",
        "semihosting dom0_vcpus=1 -- dom0.exec=\"create name=pong mem=8M cmd=net-pong 1000;\
         create name=ping mem=8M cmd=net-ping 1 40 50;sleep 1000;pause pong;save pong f;\
         restore f;sleep 4000;save -c pong g;restore g;sleep 1000;list\" poweroff",
    )?;
    let c = &out.console;
    out.ensure(
        c.contains("domU1: net: connected, MAC 02:fe:00:00:00:01")
            && c.contains("dom0: net: dom1: connected (MAC 02:fe:00:00:00:01)"),
        "the pong connected with its domain's address",
    )?;
    out.ensure(
        c.contains("restored \"f\" as dom3"),
        "the pong was restored as dom3",
    )?;
    out.ensure(
        c.contains("domU3: net: the domain was restored: connecting again")
            && c.contains("dom0: net: dom3: connected (MAC 02:fe:00:00:00:01, its own)")
            && c.contains("domU3: net: connected again, MAC 02:fe:00:00:00:01"),
        "the restored pong connected again with the address it had",
    )?;
    let ping = c
        .lines()
        .iter()
        .find(|l| l.contains("domU2: net-ping: "))
        .cloned()
        .unwrap_or_default();
    out.ensure(
        ping.contains("net-ping: 40/40 echoes from dom1, payloads ok"),
        format!("every frame came back across the save and restore: `{ping}`"),
    )?;
    out.ensure(
        c.contains("dom0: net: dom4: not connected: MAC 02:fe:00:00:00:01 is dom3's")
            && c.contains("domU4: net: cannot connect again: the backend refused the device"),
        "a copy restored beside the running domain was refused its address, the holder named",
    )?;
    Ok(())
}

/// A netfront keeping 32 frames in flight (`net-blast`, a transmit page each, one notification
/// per batch): the switch answers every frame of the burst; each reaches the other domU or is
/// dropped and counted (a receiver without a posted buffer, as on a real switch), none is lost
/// silently, and those that arrive come in the order sent, none repeated.
#[test]
fn a_burst_of_frames_is_delivered_or_counted_in_order() -> Result<()> {
    let out = boot(
        "net-burst",
        "semihosting dom0_vcpus=1 \
         domu=name=sink,mem=8M,on_poweroff=preserve,cmd=net-sink+300 \
         domu=name=blast,mem=8M,on_poweroff=preserve,cmd=net-blast+1+300+32 \
         -- dom0.sched.report=3000 poweroff",
    )?;
    let c = &out.console;
    out.ensure(
        c.contains("domU2: net-blast: sent 300 frames of 1514 bytes to dom1, 32 in flight"),
        "the switch answered every frame of the burst",
    )?;
    let line = |needle: &str| {
        c.lines()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
            .unwrap_or_default()
    };
    let number_before = |l: &str, key: &str| -> Option<u64> {
        l.split(key).next()?.rsplit([' ', '(']).next()?.parse().ok()
    };
    let sink = line("domU1: net-sink: ");
    let got = sink
        .split("net-sink: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    let back = line("dom0: net: dom1: the frontend closed: disconnected");
    let (received, dropped) = (
        number_before(&back, " received"),
        number_before(&back, " dropped"),
    );
    out.ensure(
        got.is_some_and(|g| g > 0)
            && received == got
            && received.zip(dropped).is_some_and(|(r, d)| r + d == 300),
        format!("every frame reached the sink or was counted dropped: `{sink}`, `{back}`"),
    )?;
    out.ensure(
        c.contains("domU1: net-sink: in order, none repeated"),
        "the frames came in the order sent",
    )?;
    Ok(())
}
