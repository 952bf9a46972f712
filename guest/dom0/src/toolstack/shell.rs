//! The shell on dom0's console: a line editor fed from dom0's main loop ([`poll`]) and the
//! command table.
//!
//! Ferrite's emulated UART passes dom0's output on a line at a time, so a prompt or an echo
//! without its newline would show only when the line ends, and lines from the domUs' consoles
//! printed meanwhile would land in the middle of it. So the shell echoes a whole line when Enter
//! is pressed, prompt included (`ferrite# list`), as one console line, then the command's output.

use super::{cmds, parse, xl};
use crate::cmdline::Shell;
use crate::console;
use alloc::string::String;
use alloc::vec::Vec;
use spin::Mutex;

pub const PROMPT: &str = "ferrite# ";
const LINE_MAX: usize = 512;

struct State {
    mode: Shell,
    /// The banner has been shown (the shell is in use).
    awake: bool,
    line: String,
    /// The previous byte was CR (a CR LF pair ends one line, not two).
    after_cr: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    mode: Shell::Off,
    awake: false,
    line: String::new(),
    after_cr: false,
});

pub fn init(mode: Shell) {
    let mut s = STATE.lock();
    s.mode = mode;
    if mode == Shell::Run {
        s.awake = true;
        drop(s);
        banner();
    }
}

fn banner() {
    println!("dom0: toolstack: shell ready (type help)");
}

/// Reads what was typed; runs each finished line.
pub fn poll() {
    loop {
        let mut s = STATE.lock();
        if s.mode == Shell::Off {
            return;
        }
        let Some(b) = console::read_byte() else {
            return;
        };
        if !s.awake {
            s.awake = true;
            drop(s);
            banner();
            s = STATE.lock();
        }
        let after_cr = core::mem::replace(&mut s.after_cr, b == b'\r');
        match b {
            b'\n' if after_cr => {}
            b'\r' | b'\n' => {
                let line = core::mem::take(&mut s.line);
                drop(s);
                println!("{PROMPT}{line}");
                run_line(&line);
            }
            // Backspace, DEL.
            0x08 | 0x7f => {
                s.line.pop();
            }
            // Ctrl-C, Ctrl-U: drop the line.
            0x03 | 0x15 => {
                let line = core::mem::take(&mut s.line);
                drop(s);
                println!("{PROMPT}{line}^C");
            }
            0x20..=0x7e if s.line.len() < LINE_MAX => s.line.push(b as char),
            _ => {}
        }
    }
}

/// Runs one command line (from the shell or `dom0.exec`).
pub fn run_line(line: &str) {
    let words = parse::words(line);
    let Some((cmd, args)) = words.split_first() else {
        return;
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if !super::under_ferrite() && !matches!(cmd.as_str(), "help" | "echo" | "poweroff") {
        println!("error: {cmd}: not under Ferrite (no hypervisor to ask)");
        return;
    }
    match cmd.as_str() {
        "help" => help(),
        "echo" => println!("{}", args.join(" ")),
        "list" | "ls" => cmds::list(&args),
        "info" => cmds::info(),
        "create" => cmds::create(&args),
        "pause" => cmds::pause(&args),
        "unpause" => cmds::unpause(&args),
        "destroy" => cmds::destroy(&args),
        "shutdown" => cmds::shutdown(&args, false),
        "reboot" => cmds::shutdown(&args, true),
        "cycle" => cmds::cycle(&args),
        "sched-credit" => xl::sched_credit(&args),
        "vcpu-pin" => xl::vcpu_pin(&args),
        "vcpu-list" => xl::vcpu_list(&args),
        "console" => xl::console(&args),
        "top" => xl::top(&args),
        "dmesg" => xl::dmesg(&args),
        "save" => super::store::save(&args),
        "restore" => super::store::restore(&args),
        "files" => super::store::files(&args),
        "rm" => super::store::remove(&args),
        "sleep" => xl::sleep(&args),
        "poweroff" => poweroff(),
        other => println!("error: unknown command \"{other}\" (type help)"),
    }
}

const HELP: &[(&str, &str)] = &[
    ("list [dom]", "domains: Name ID Mem VCPUs State Time(s)"),
    ("info", "the machine: CPUs, memory, free memory"),
    (
        "create [-p] <config>",
        "build a domain from the packed PV image (domu= settings, e.g. name=web mem=8M cmd=hog); -p: leave it paused",
    ),
    ("pause <dom>", "stop its vCPUs"),
    ("unpause <dom>", "let them run again"),
    (
        "shutdown [-w] <dom>",
        "ask it to power off (-w: wait until it has)",
    ),
    (
        "reboot [-w] <dom>",
        "ask it to reboot (-w: wait until it has)",
    ),
    ("destroy <dom>", "release it at once"),
    (
        "save [-c] <dom> <file>",
        "save it into a file in dom0's RAM, then destroy it (-c: keep it running)",
    ),
    ("restore [-p] <file>", "build a domain from a saved file"),
    ("files / rm <file>", "saved files"),
    (
        "sched-credit [-d dom] [-w weight] [-c cap]",
        "show or set Credit weights and caps",
    ),
    (
        "vcpu-pin <dom> <vcpu|all> <cpus>",
        "hard affinity, cpus like 0-1,3 or all",
    ),
    ("vcpu-list [dom]", "vCPUs: where they run, their time"),
    (
        "console <dom>",
        "its console: the last lines, then new ones until Ctrl-]",
    ),
    (
        "top [-b] [-d ms] [-n count]",
        "CPU% and memory per domain, refreshed; any key quits",
    ),
    ("dmesg", "Ferrite's log"),
    (
        "cycle <n> <config>",
        "n x (create, unpause, pause, unpause, destroy); free memory before and after",
    ),
    ("sleep <ms>", "wait (serving the domains)"),
    (
        "poweroff",
        "power the machine off (PSCI SYSTEM_OFF, as dom0's poweroff option)",
    ),
    ("help", "this"),
];

fn poweroff() {
    println!("dom0: powering off");
    console::flush();
    crate::timer::stop_all();
    crate::psci::system_off();
    println!("error: poweroff: PSCI SYSTEM_OFF failed");
}

fn help() {
    println!("commands (<dom> is a domain id or name):");
    for (c, what) in HELP {
        println!("  {c:<42} {what}");
    }
}
