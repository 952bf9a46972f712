//! `ferrite-ctl consoled [seconds]`: the console backend in Linux dom0's user space, what
//! Xen's `xenconsoled` is and Ferrite's Rust dom0 has (`ferrite_abi::console_ring`,
//! docs/io.md): every domU's console ring reaches Linux's standard output, one line at a time,
//! prefixed with the domain (`ferrite-ctl: console: dom<N>: <line>`).
//!
//! Every 100 ms it looks for domains it does not serve yet and asks each for its console
//! (`DOMCTL CONSOLE`: port and grant reference), binds the port, and from then on reads the
//! ring with grant copies (indices, then the bytes between them), publishes the new consumer
//! index and notifies the domU. Like the other user-space backends it cannot receive events:
//! it polls the rings every millisecond. A ring whose indices are impossible is reported and
//! that domain alone disconnected; a destroyed domain is dropped.

use crate::backend;
use crate::{Ctrl, Res, err_text, touch};
use ferrite_abi::call::domctl;
use ferrite_abi::console_ring::{self as cr, OUT_SIZE};
use ferrite_abi::evtchn;
use ferrite_abi::grant::{GrantCopy, copy};
use std::io::Write;

/// A line longer than this is printed in pieces.
const LINE_MAX: usize = 1024;

struct Back {
    dom: u16,
    gref: u32,
    port: Option<u32>,
    line: Vec<u8>,
    lines: u64,
}

struct Consoles<'a> {
    c: &'a Ctrl,
    backs: Vec<Back>,
    /// Domains without a console (or whose ring broke): not asked again.
    skip: Vec<u16>,
    buf: Vec<u8>,
}

impl backend::Polled for Consoles<'_> {
    fn scan(&mut self) {
        Consoles::scan(self);
    }

    fn serve_all(&mut self) -> bool {
        Consoles::serve_all(self)
    }

    fn stop(&mut self) {
        for b in std::mem::take(&mut self.backs) {
            if let Some(p) = b.port {
                let _ = backend::evtchn(self.c, evtchn::CLOSE, p as u64, 0);
            }
        }
    }
}

impl Consoles<'_> {
    fn scan(&mut self) {
        let mut doms = Vec::new();
        let mut d = 0u64;
        while let Ok(next) = self.c.domctl(domctl::NEXT_DOMAIN, d, 0, 0) {
            d = next;
            doms.push(d as u16);
        }
        self.backs.retain(|b| {
            let alive = doms.contains(&b.dom);
            if !alive {
                println!(
                    "ferrite-ctl: console: dom{}: its domain is gone ({} lines)",
                    b.dom, b.lines
                );
            }
            alive
        });
        self.skip.retain(|d| doms.contains(d));
        for d in doms {
            if d == 0 || self.skip.contains(&d) || self.backs.iter().any(|b| b.dom == d) {
                continue;
            }
            let Ok(port) = self.c.domctl(domctl::CONSOLE, d as u64, 0, 0) else {
                self.skip.push(d);
                continue;
            };
            let gref = self.c.result(1) as u32;
            match backend::bind(self.c, d, port as u32) {
                Some(local) => {
                    println!(
                        "ferrite-ctl: console: dom{d}: connected (its port {port}, ours {local})"
                    );
                    self.backs.push(Back {
                        dom: d,
                        gref,
                        port: Some(local),
                        line: Vec::new(),
                        lines: 0,
                    });
                }
                None => {
                    println!(
                        "ferrite-ctl: console: dom{d}: cannot bind its port {port} (another \
                         backend serves it?)"
                    );
                    self.skip.push(d);
                }
            }
        }
    }

    /// Reads what `b`'s domU wrote since the last pass; prints its complete lines.
    fn serve(&mut self, i: usize) -> Res<bool> {
        let b = &self.backs[i];
        let index = |off| {
            backend::read::<u32>(self.c, b.dom, b.gref, off)
                .map_err(|e| format!("reading its ring: {}", err_text(e)))
        };
        let (cons, prod) = (index(cr::OFFSET_OUT_CONS)?, index(cr::OFFSET_OUT_PROD)?);
        let Some(pieces) = cr::pending(cons, prod, OUT_SIZE) else {
            return Err(format!("ring corrupt (out_cons {cons}, out_prod {prod})"));
        };
        let n = prod.wrapping_sub(cons) as usize;
        if n == 0 {
            return Ok(false);
        }
        let mut ops: Vec<GrantCopy> = Vec::with_capacity(2);
        let mut at = 0usize;
        for (start, len) in pieces.into_iter().filter(|&(_, len)| len > 0) {
            ops.push(GrantCopy {
                source: backend::granted(b.dom, b.gref, cr::OFFSET_OUT + start),
                dest: backend::local(self.buf[at..].as_ptr()),
                len: len as u16,
                flags: copy::SOURCE_GREF,
                status: 0,
            });
            at += len;
        }
        backend::copy(self.c, &mut ops)
            .map_err(|e| format!("reading its ring: {}", err_text(e)))?;
        backend::write(self.c, b.dom, b.gref, cr::OFFSET_OUT_CONS, &prod)
            .map_err(|e| format!("writing its ring: {}", err_text(e)))?;
        if let Some(p) = b.port {
            let _ = backend::evtchn(self.c, evtchn::SEND, p as u64, 0);
        }
        let bytes = self.buf[..n].to_vec();
        let b = &mut self.backs[i];
        let mut out = std::io::stdout().lock();
        for &ch in &bytes {
            if ch == b'\n' || b.line.len() >= LINE_MAX {
                let text = String::from_utf8_lossy(&b.line);
                let _ = writeln!(
                    out,
                    "ferrite-ctl: console: dom{}: {}",
                    b.dom,
                    text.trim_end()
                );
                b.line.clear();
                b.lines += 1;
            }
            if ch != b'\n' {
                b.line.push(ch);
            }
        }
        let _ = out.flush();
        Ok(true)
    }

    fn serve_all(&mut self) -> bool {
        let mut busy = false;
        let mut i = 0;
        while i < self.backs.len() {
            match self.serve(i) {
                Ok(moved) => {
                    busy |= moved;
                    i += 1;
                }
                Err(why) => {
                    let b = self.backs.remove(i);
                    if let Some(p) = b.port {
                        let _ = backend::evtchn(self.c, evtchn::CLOSE, p as u64, 0);
                    }
                    // A ring that failed because its domain went is not the domain's fault.
                    let gone = self.c.domctl(domctl::CONSOLE, b.dom as u64, 0, 0).is_err();
                    if gone {
                        println!("ferrite-ctl: console: dom{}: its domain is gone", b.dom);
                    } else {
                        println!("ferrite-ctl: console: dom{}: {why}: disconnected", b.dom);
                        self.skip.push(b.dom);
                    }
                }
            }
        }
        busy
    }
}

/// Runs the backend until killed, or for `seconds`.
pub fn run(c: &Ctrl, seconds: Option<u64>) -> Res<()> {
    let mut buf = vec![0u8; OUT_SIZE];
    touch(&mut buf);
    let mut s = Consoles {
        c,
        backs: Vec::new(),
        skip: Vec::new(),
        buf,
    };
    println!("ferrite-ctl: console: serving domUs' consoles");
    backend::run_polled(c, seconds, &mut s)?;
    Ok(())
}
