//! A domU's boot configuration, as the `domu=` option of Ferrite's command line gives it:
//! comma-separated `key=value` settings, for example
//! `domu=name=web,mem=32M,vcpus=2,weight=512,cap=50,cpus=0-1,cmd=hello+world`.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `name` | the domain's name in logs | `domU<id>` |
//! | `image` | which packed PV image (only `pv`, the one packed into Ferrite, today) | `pv` |
//! | `mem` | its RAM (`K`, `M`, `G` suffixes) | 16M |
//! | `maxmem` | the most RAM it may balloon up to (`MEMORY_OP`) | `mem` |
//! | `vcpus` | its vCPUs, 1..=32 | 1 |
//! | `weight` | Credit weight, 1..=65535 | 256 |
//! | `cap` | Credit cap, percent of one pCPU (0 = none) | 0 |
//! | `cpus` | hard affinity of every vCPU: a list like `0-1,3`, written with `-` and `\|` (`0-1\|3`) | all |
//! | `on_crash` | after a crash: `destroy`, `restart` or `preserve` (kept for inspection) | `destroy` |
//! | `on_poweroff` | after it powers itself off: `destroy` or `preserve` | `destroy` |
//! | `on_reboot` | after it asks for a reboot: `restart`, `destroy` or `preserve` | `restart` |
//! | `cmd` | its command line; `+` stands for a space; must be last (it may contain commas) | empty |

use alloc::string::{String, ToString};

/// Most vCPUs a PV domU may have (slots in its shared-info page).
pub const MAX_VCPUS: usize = ferrite_abi::shared_info::MAX_VCPUS;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomuSpec {
    pub name: Option<String>,
    pub image: String,
    pub mem: u64,
    /// None: `mem`.
    pub maxmem: Option<u64>,
    pub vcpus: usize,
    pub weight: u32,
    pub cap: u32,
    /// Hard affinity (bit n = pCPU n); None = every pCPU.
    pub cpus: Option<u64>,
    /// Its virtual disk: (offset, size) in bytes of dom0's disk, both multiples of 512, served
    /// by dom0's block backend.
    pub disk: Option<(u64, u64)>,
    pub on_crash: Action,
    pub on_poweroff: Action,
    pub on_reboot: Action,
    pub cmdline: String,
}

/// What Ferrite does with a domain that stopped (`xl.cfg`'s `on_crash`, `on_poweroff`,
/// `on_reboot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Release everything it holds.
    Destroy,
    /// Destroy it and build it again from the same image and configuration.
    Restart,
    /// Keep it, stopped, until dom0 destroys it.
    Preserve,
}

impl Action {
    pub fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "destroy" => Self::Destroy,
            "restart" => Self::Restart,
            "preserve" => Self::Preserve,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Destroy => "destroy",
            Self::Restart => "restart",
            Self::Preserve => "preserve",
        }
    }

    /// Its number in the ABI (`ctl::on_crash`).
    pub fn abi(self) -> u32 {
        use ferrite_abi::ctl::on_crash as a;
        match self {
            Self::Destroy => a::DESTROY,
            Self::Restart => a::RESTART,
            Self::Preserve => a::PRESERVE,
        }
    }
}

/// Whether two regions of dom0's disk (offset, size in bytes) share a byte: two domains may
/// not have such disks (their file systems would corrupt each other).
pub fn disks_overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

impl Default for DomuSpec {
    fn default() -> Self {
        Self {
            name: None,
            image: "pv".into(),
            mem: 16 << 20,
            maxmem: None,
            vcpus: 1,
            weight: 256,
            cap: 0,
            cpus: None,
            disk: None,
            on_crash: Action::Destroy,
            on_poweroff: Action::Destroy,
            on_reboot: Action::Restart,
            cmdline: String::new(),
        }
    }
}

/// `0-1|3` → pCPUs 0, 1 and 3.
fn parse_cpus(v: &str) -> Option<u64> {
    let mut mask = 0u64;
    for part in v.split('|') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if a > b || b > 63 {
            return None;
        }
        for c in a..=b {
            mask |= 1 << c;
        }
    }
    (mask != 0).then_some(mask)
}

impl DomuSpec {
    /// Parses the value of one `domu=` option; the error says which setting is wrong and why.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut s = Self::default();
        let mut rest = value;
        while !rest.is_empty() {
            if let Some(cmd) = rest.strip_prefix("cmd=") {
                s.cmdline = cmd.replace('+', " ");
                break;
            }
            let (item, tail) = rest.split_once(',').unwrap_or((rest, ""));
            rest = tail;
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| alloc::format!("'{item}' is not key=value"))?;
            let bad = |why: &str| alloc::format!("{k}={v}: {why}");
            match k {
                "name" if !v.is_empty() && v.len() <= 32 => s.name = Some(v.to_string()),
                "name" => return Err(bad("a name is 1 to 32 characters")),
                "image" => s.image = v.to_string(),
                "mem" => {
                    s.mem = crate::cmdline::parse_size(v)
                        .filter(|&m| m >= 1 << 20 && m.is_multiple_of(4096))
                        .ok_or_else(|| bad("a size of at least 1M, like 16M"))?
                }
                "maxmem" => {
                    s.maxmem = Some(
                        crate::cmdline::parse_size(v)
                            .filter(|m| m.is_multiple_of(4096))
                            .ok_or_else(|| bad("a size like 64M"))?,
                    )
                }
                "vcpus" => {
                    s.vcpus = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_VCPUS).contains(n))
                        .ok_or_else(|| bad("1 to 32"))?
                }
                "weight" => {
                    s.weight = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=65535).contains(n))
                        .ok_or_else(|| bad("1 to 65535"))?
                }
                "cap" => {
                    s.cap = v
                        .parse()
                        .ok()
                        .ok_or_else(|| bad("a percentage of one CPU, 0 for none"))?
                }
                "cpus" => s.cpus = Some(parse_cpus(v).ok_or_else(|| bad("a list like 0-1|3"))?),
                "disk" => {
                    let want = "offset:size in dom0's disk, like 1M:4M (multiples of 512)";
                    let (o, z) = v.split_once(':').ok_or_else(|| bad(want))?;
                    let parse =
                        |x: &str| crate::cmdline::parse_size(x).filter(|n| n.is_multiple_of(512));
                    // A size is never 0, but the start of dom0's disk is a fine offset.
                    let offset = |x: &str| {
                        let digits = x.trim_end_matches(['K', 'k', 'M', 'm', 'G', 'g']);
                        if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
                            Some(0)
                        } else {
                            parse(x)
                        }
                    };
                    let (o, z) = (
                        offset(o).ok_or_else(|| bad(want))?,
                        parse(z).ok_or_else(|| bad(want))?,
                    );
                    if z == 0 || o.checked_add(z).is_none() {
                        return Err(bad(want));
                    }
                    s.disk = Some((o, z));
                }
                "on_crash" | "on_reboot" => {
                    let a = Action::parse(v).ok_or_else(|| bad("destroy, restart or preserve"))?;
                    if k == "on_crash" {
                        s.on_crash = a;
                    } else {
                        s.on_reboot = a;
                    }
                }
                "on_poweroff" => {
                    s.on_poweroff = Action::parse(v)
                        .filter(|a| *a != Action::Restart)
                        .ok_or_else(|| bad("destroy or preserve"))?
                }
                _ => return Err(alloc::format!("unknown setting '{k}'")),
            }
        }
        if s.maxmem.is_some_and(|m| m < s.mem) {
            return Err("maxmem is less than mem".to_string());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_key() {
        assert_eq!(DomuSpec::parse("").unwrap(), DomuSpec::default());
        let s =
            DomuSpec::parse("name=web,mem=32M,vcpus=2,weight=512,cap=50,cpus=0-1|3,cmd=hog+a,b")
                .unwrap();
        assert_eq!(s.name.as_deref(), Some("web"));
        assert_eq!(s.mem, 32 << 20);
        assert_eq!((s.vcpus, s.weight, s.cap), (2, 512, 50));
        assert_eq!(s.cpus, Some(0b1011));
        assert_eq!(s.cmdline, "hog a,b");
        let d = DomuSpec::parse("disk=1M:4M,on_crash=restart,on_reboot=preserve,cmd=blk-write")
            .unwrap();
        assert_eq!(
            (d.on_crash, d.on_reboot),
            (Action::Restart, Action::Preserve)
        );
        assert_eq!(d.on_poweroff, Action::Destroy);
        assert_eq!(d.disk, Some((1 << 20, 4 << 20)));
        for at_start in ["disk=0:8M", "disk=0M:8M"] {
            assert_eq!(DomuSpec::parse(at_start).unwrap().disk, Some((0, 8 << 20)));
        }
    }

    #[test]
    fn bad_settings_say_why() {
        for (v, why) in [
            ("vcpus=0", "1 to 32"),
            ("vcpus=33", "1 to 32"),
            ("weight=0", "1 to 65535"),
            ("mem=12K", "at least 1M"),
            ("cpus=3-1", "0-1|3"),
            ("cpus=64", "0-1|3"),
            ("colour=red", "unknown setting"),
            ("vcpus", "not key=value"),
            ("mem=32M,maxmem=16M", "maxmem is less than mem"),
            ("disk=1M", "offset:size"),
            ("disk=1M:0", "offset:size"),
            ("disk=:4M", "offset:size"),
            ("disk=M:4M", "offset:size"),
            ("disk=100:4M", "offset:size"),
            ("on_crash=explode", "destroy, restart or preserve"),
            ("on_poweroff=restart", "destroy or preserve"),
        ] {
            let e = DomuSpec::parse(v).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
    }
}
