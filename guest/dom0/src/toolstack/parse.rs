//! The toolstack's text handling that touches no hardware (host unit tests): splitting a
//! command line, turning `create`'s words into a `domu=` configuration, CPU lists, state
//! letters and sizes.

use alloc::string::String;
use alloc::vec::Vec;

/// Splits a command line into words at whitespace; double quotes group words (and go), as in
/// dom0's boot options.
pub fn words(line: &str) -> Vec<String> {
    crate::cmdline::split_words(line)
}

/// Splits `dom0.exec`'s value into commands at `;` (empty ones dropped).
pub fn commands(script: &str) -> Vec<&str> {
    script
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// `create`'s words as one `domu=` configuration: words are settings joined with `,`, until a
/// word holding `cmd=`; the words after it belong to the domain's command line and are joined
/// with `+` (the configuration's space), so `name=a mem=8M cmd=ring-console 40 100` is
/// `name=a,mem=8M,cmd=ring-console+40+100`. Trailing commas of a word are not doubled.
pub fn config(words: &[&str]) -> String {
    let mut out = String::new();
    let mut in_cmd = false;
    for w in words {
        if !out.is_empty() {
            let sep = if in_cmd { '+' } else { ',' };
            if !(sep == ',' && out.ends_with(',')) {
                out.push(sep);
            }
        }
        let w = if in_cmd { w } else { w.trim_start_matches(',') };
        out.push_str(w);
        if !in_cmd && (w.starts_with("cmd=") || w.contains(",cmd=")) {
            in_cmd = true;
        }
    }
    out
}

/// The `name=` of a configuration, if it has one (before `cmd=`, which may hold anything).
pub fn config_name(config: &str) -> Option<&str> {
    for kv in config.split(',') {
        if kv.starts_with("cmd=") {
            return None;
        }
        if let Some(n) = kv.strip_prefix("name=") {
            return Some(n);
        }
    }
    None
}

/// A CPU list like `0-1,3` or `all` as a mask of `pcpus` CPUs; `None` if malformed, empty or
/// naming a CPU at or above `pcpus`.
pub fn cpu_mask(list: &str, pcpus: u64) -> Option<u64> {
    let all = if pcpus >= 64 {
        u64::MAX
    } else {
        (1u64 << pcpus) - 1
    };
    if list == "all" {
        return (all != 0).then_some(all);
    }
    let mut mask = 0u64;
    for part in list.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let a = part.parse::<u64>().ok()?;
                (a, a)
            }
        };
        if a > b || b >= pcpus.min(64) {
            return None;
        }
        for c in a..=b {
            mask |= 1 << c;
        }
    }
    (mask != 0).then_some(mask)
}

/// A mask as a CPU list (`0-1,3`).
pub fn cpu_list(mask: u64) -> String {
    let mut out = String::new();
    let mut c = 0u32;
    while c < 64 {
        if mask & (1 << c) == 0 {
            c += 1;
            continue;
        }
        let start = c;
        while c < 64 && mask & (1 << c) != 0 {
            c += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if c - 1 == start {
            out.push_str(&alloc::format!("{start}"));
        } else {
            out.push_str(&alloc::format!("{start}-{}", c - 1));
        }
    }
    out
}

/// xl's six-letter state: r(unning) b(locked) p(aused) s(hutdown) c(rashed) d(ying), one set.
pub fn state_letters(state: u8, running: bool) -> &'static str {
    use ferrite_abi::ctl::state::*;
    match state {
        RUNNING if running => "r-----",
        RUNNING => "-b----",
        PAUSED => "--p---",
        SHUTDOWN => "---s--",
        CRASHED => "----c-",
        DYING => "-----d",
        _ => "------",
    }
}

/// A number: decimal, or hexadecimal after `0x`.
pub fn number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(words("  list  "), ["list"]);
        assert_eq!(words("pause web"), ["pause", "web"]);
        assert_eq!(words("a \"b c\" d"), ["a", "b c", "d"]);
        assert_eq!(words("x=\"1 2\"y"), ["x=1 2y"]);
        assert_eq!(words("\"\""), [""]);
        assert!(words("").is_empty());
        assert_eq!(
            commands("create -p x; list;;info "),
            ["create -p x", "list", "info"]
        );
    }

    #[test]
    fn create_words_become_a_config() {
        assert_eq!(config(&["name=a,mem=8M,cmd=hog"]), "name=a,mem=8M,cmd=hog");
        assert_eq!(
            config(&["name=a", "mem=8M", "cmd=hog"]),
            "name=a,mem=8M,cmd=hog"
        );
        assert_eq!(
            config(&["name=a,", "mem=8M", "cmd=ring-console", "40", "100"]),
            "name=a,mem=8M,cmd=ring-console+40+100"
        );
        assert_eq!(
            config(&["name=a,cmd=ring-console", "4,5"]),
            "name=a,cmd=ring-console+4,5"
        );
        assert_eq!(config(&[]), "");
        assert_eq!(config_name("mem=8M,name=web,cmd=x"), Some("web"));
        assert_eq!(config_name("cmd=name=x"), None);
        assert_eq!(config_name("mem=8M"), None);
    }

    #[test]
    fn cpu_masks() {
        assert_eq!(cpu_mask("all", 4), Some(0xf));
        assert_eq!(cpu_mask("0-1,3", 4), Some(0b1011));
        assert_eq!(cpu_mask("2", 4), Some(4));
        assert_eq!(cpu_mask("4", 4), None);
        assert_eq!(cpu_mask("1-0", 4), None);
        assert_eq!(cpu_mask("", 4), None);
        assert_eq!(cpu_mask("x", 4), None);
        assert_eq!(cpu_list(0b1011), "0-1,3");
        assert_eq!(cpu_list(0xf), "0-3");
        assert_eq!(cpu_list(0), "");
    }

    #[test]
    fn states() {
        use ferrite_abi::ctl::state::*;
        assert_eq!(state_letters(RUNNING, true), "r-----");
        assert_eq!(state_letters(RUNNING, false), "-b----");
        assert_eq!(state_letters(PAUSED, false), "--p---");
        assert_eq!(state_letters(DYING, false), "-----d");
        assert_eq!(number("0x10"), Some(16));
        assert_eq!(number("12"), Some(12));
        assert_eq!(number("web"), None);
    }
}
