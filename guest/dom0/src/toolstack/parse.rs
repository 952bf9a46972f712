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
