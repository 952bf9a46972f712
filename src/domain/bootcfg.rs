//! The boot configuration file, `boards/<board>/domains.toml`: the PV domUs a firmware image
//! starts at boot, in a small subset of TOML with keys close to `xl.cfg`'s (docs/domains.md):
//!
//! ```toml
//! [[domain]]
//! name = "web"
//! kernel = "pv"
//! memory = 32            # MiB
//! vcpus = 2
//! cpus = "0-1,3"
//! disk = "offset=1M,size=4M"
//! cmdline = "blk-write 7"
//! ```
//!
//! There is one parser and one set of rules: `build.rs` includes this file (and
//! `domain::config`) to check the file at build time, and every domain is turned into the
//! `domu=` settings of Ferrite's command line ([`BootDomain::settings`]) and checked by
//! [`DomuSpec::parse`], the very function that reads them again at boot. Errors carry the line
//! and key they are about: `domains.toml:7: vcpus: 1 to 32`.
//!
//! The subset: `#` comments, `[[domain]]` tables, `key = value` with bare keys, values that are
//! strings (`"basic"` with `\\ \" \n \t` escapes, or `'literal'`), integers (`_` separators
//! allowed), booleans and arrays of those (which may span lines). Anything else (other tables,
//! inline tables, floats, dates, multi-line strings, dotted or quoted keys) is refused by line.

use super::config::{DomuSpec, disks_overlap};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One mistake in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// 1-based.
    pub line: usize,
    /// The key it is about, if any.
    pub key: Option<String>,
    pub why: String,
}

impl core::fmt::Display for Error {
    /// `LINE: key: why` (the caller puts the file's name in front).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: {k}: {}", self.line, self.why),
            None => write!(f, "{}: {}", self.line, self.why),
        }
    }
}

/// A value as the file wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Array(Vec<Value>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
        }
    }
}

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub line: usize,
}

/// One `[[domain]]` table, its entries in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The line of its `[[domain]]` header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A domain to start at boot, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootDomain {
    /// The line of its `[[domain]]` header.
    pub line: usize,
    pub name: String,
    /// Its `domu=` settings (what follows `domu=` on a command line): what is packed into the
    /// image and parsed again at boot.
    pub settings: String,
    pub spec: DomuSpec,
}

/// Every key a `[[domain]]` table may have, in the order the docs list them.
pub const KEYS: &[&str] = &[
    "name",
    "kernel",
    "memory",
    "maxmem",
    "vcpus",
    "weight",
    "cap",
    "cpus",
    "disk",
    "vif",
    "console",
    "cmdline",
    "extra",
    "on_crash",
    "on_poweroff",
    "on_reboot",
];

struct Parser<'a> {
    text: &'a str,
    at: usize,
    line: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn err(&self, key: Option<&str>, why: impl Into<String>) -> Error {
        Error {
            line: self.line,
            key: key.map(String::from),
            why: why.into(),
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Blanks, then an optional comment, then the end of the line (or of the file).
    fn end_of_line(&mut self, key: Option<&str>, after: &str) -> Result<(), Error> {
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            while !matches!(self.peek(), None | Some(b'\n')) {
                self.at += 1;
            }
        }
        match self.peek() {
            None => Ok(()),
            Some(b'\n') => {
                self.at += 1;
                self.line += 1;
                Ok(())
            }
            Some(b'\r') if self.rest().starts_with("\r\n") => {
                self.at += 2;
                self.line += 1;
                Ok(())
            }
            Some(_) => Err(self.err(
                key,
                format!("unexpected '{}' after {after}", self.rest_of_line().trim()),
            )),
        }
    }

    fn rest_of_line(&self) -> &'a str {
        let r = self.rest();
        &r[..r.find('\n').unwrap_or(r.len())]
    }

    /// Blanks, comments and line ends (inside arrays).
    fn skip_space(&mut self) {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.at += 1;
                    }
                }
                Some(b'\n') => {
                    self.at += 1;
                    self.line += 1;
                }
                Some(b'\r') => self.at += 1,
                _ => return,
            }
        }
    }

    fn bare_key(&mut self) -> &'a str {
        let start = self.at;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    fn value(&mut self, key: &str) -> Result<Value, Error> {
        match self.peek() {
            Some(b'"') if self.rest().starts_with("\"\"\"") => {
                Err(self.err(Some(key), "multi-line strings are not supported"))
            }
            Some(b'\'') if self.rest().starts_with("'''") => {
                Err(self.err(Some(key), "multi-line strings are not supported"))
            }
            Some(b'"') => self.basic_string(key).map(Value::Str),
            Some(b'\'') => {
                self.at += 1;
                let r = self.rest();
                match r.find(['\'', '\n']) {
                    Some(end) if r.as_bytes()[end] == b'\'' => {
                        self.at += end + 1;
                        Ok(Value::Str(r[..end].to_string()))
                    }
                    _ => Err(self.err(Some(key), "this string has no closing '")),
                }
            }
            Some(b'[') => {
                self.at += 1;
                let first = self.line;
                let mut items = Vec::new();
                loop {
                    self.skip_space();
                    match self.peek() {
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        None => {
                            self.line = first;
                            return Err(self.err(Some(key), "this array has no closing ]"));
                        }
                        _ => {}
                    }
                    items.push(self.value(key)?);
                    self.skip_space();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {}
                        None => {
                            self.line = first;
                            return Err(self.err(Some(key), "this array has no closing ]"));
                        }
                        _ => {
                            return Err(
                                self.err(Some(key), "expected ',' or ']' between array items")
                            );
                        }
                    }
                }
            }
            Some(b'{') => Err(self.err(Some(key), "inline tables are not supported")),
            Some(b't') if self.word() == "true" => {
                self.at += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.word() == "false" => {
                self.at += 5;
                Ok(Value::Bool(false))
            }
            Some(c) if c.is_ascii_digit() || c == b'+' || c == b'-' => {
                let w = self.word();
                let digits: String = w.chars().filter(|&c| c != '_').collect();
                let ok = !w.contains("__")
                    && !w.ends_with('_')
                    && w.trim_start_matches(['+', '-'])
                        .starts_with(|c: char| c.is_ascii_digit());
                match digits.parse::<i64>() {
                    Ok(n) if ok => {
                        self.at += w.len();
                        Ok(Value::Int(n))
                    }
                    _ => Err(self.err(
                        Some(key),
                        format!("'{w}' is not an integer (floats and dates are not supported)"),
                    )),
                }
            }
            None | Some(b'\n' | b'\r' | b'#') => Err(self.err(Some(key), "no value after '='")),
            _ => Err(self.err(
                Some(key),
                format!(
                    "'{}' is not a value: strings are quoted, like \"pv\"",
                    self.word()
                ),
            )),
        }
    }

    /// The run of characters up to a blank, comma, bracket, comment or line end.
    fn word(&self) -> &'a str {
        let r = self.rest();
        let end = r
            .find([' ', '\t', ',', ']', '#', '\n', '\r'])
            .unwrap_or(r.len());
        &r[..end]
    }

    fn basic_string(&mut self, key: &str) -> Result<String, Error> {
        self.at += 1;
        let mut s = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(s);
                }
                '\n' => break,
                '\\' => match chars.next() {
                    Some((_, '"')) => s.push('"'),
                    Some((_, '\\')) => s.push('\\'),
                    Some((_, 'n')) => s.push('\n'),
                    Some((_, 't')) => s.push('\t'),
                    Some((_, e)) if e != '\n' => {
                        return Err(self.err(
                            Some(key),
                            format!("the escape \\{e} is not supported (only \\\\ \\\" \\n \\t)"),
                        ));
                    }
                    _ => break,
                },
                c if c.is_control() && c != '\t' => {
                    return Err(self.err(Some(key), "control characters must be escaped"));
                }
                c => s.push(c),
            }
        }
        Err(self.err(Some(key), "this string has no closing \""))
    }
}

/// Reads the file's syntax: its `[[domain]]` tables. Keys are not checked here, but a key
/// given twice in one table, or outside any table, is an error.
pub fn parse_tables(text: &str) -> Result<Vec<Table>, Error> {
    let mut p = Parser {
        text,
        at: 0,
        line: 1,
    };
    let mut tables: Vec<Table> = Vec::new();
    while p.at < text.len() {
        p.skip_blanks();
        match p.peek() {
            None => break,
            Some(b'#' | b'\n' | b'\r') => p.end_of_line(None, "a blank line")?,
            Some(b'[') => {
                let header = p.rest_of_line();
                if !header.starts_with("[[") {
                    return Err(p.err(
                        None,
                        format!(
                            "'{}': only [[domain]] tables are supported",
                            header.trim_end()
                        ),
                    ));
                }
                p.at += 2;
                p.skip_blanks();
                let name = p.bare_key();
                p.skip_blanks();
                if name != "domain" || !p.rest().starts_with("]]") {
                    return Err(p.err(
                        None,
                        format!(
                            "'{}': only [[domain]] tables are supported",
                            header.trim_end()
                        ),
                    ));
                }
                p.at += 2;
                tables.push(Table {
                    line: p.line,
                    entries: Vec::new(),
                });
                p.end_of_line(None, "[[domain]]")?;
            }
            Some(_) => {
                let line = p.line;
                let key = p.bare_key();
                if key.is_empty() {
                    let w = p.word();
                    return Err(p.err(
                        None,
                        format!("'{w}': expected a key (letters, digits, _ and -) or [[domain]]"),
                    ));
                }
                p.skip_blanks();
                match p.peek() {
                    Some(b'=') => p.at += 1,
                    Some(b'.') => {
                        return Err(p.err(Some(key), "dotted keys are not supported"));
                    }
                    _ => return Err(p.err(Some(key), "expected '=' after the key")),
                }
                p.skip_blanks();
                let value = p.value(key)?;
                p.end_of_line(Some(key), "the value")?;
                let Some(table) = tables.last_mut() else {
                    return Err(Error {
                        line,
                        key: Some(key.to_string()),
                        why: "every key belongs to a domain: put [[domain]] above it".into(),
                    });
                };
                if let Some(first) = table.entries.iter().find(|e| e.key == key) {
                    return Err(Error {
                        line,
                        key: Some(key.to_string()),
                        why: format!("given twice in one domain (first on line {})", first.line),
                    });
                }
                table.entries.push(Entry {
                    key: key.to_string(),
                    value,
                    line,
                });
            }
        }
    }
    Ok(tables)
}

fn string<'v>(e: &'v Entry, like: &str) -> Result<&'v str, String> {
    match &e.value {
        Value::Str(s) => Ok(s),
        v => Err(format!("expected a string like {like}, not {}", v.kind())),
    }
}

fn integer(e: &Entry, what: &str) -> Result<i64, String> {
    match &e.value {
        Value::Int(n) => Ok(*n),
        v => Err(format!("expected {what}, not {}", v.kind())),
    }
}

/// A plain word: safe inside `domu=` settings (no `,`, `=`, blanks or `+`).
fn plain(s: &str, like: &str) -> Result<String, String> {
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(format!(
            "'{s}' is not {like} (letters, digits, _ - . and : only)"
        ));
    }
    Ok(s.to_string())
}

/// `"offset=1M,size=4M"` → `1M:4M`.
fn disk(e: &Entry) -> Result<String, String> {
    let like = "\"offset=1M,size=4M\" (a region of dom0's disk)";
    let s = match &e.value {
        Value::Array(items) if items.len() == 1 => match &items[0] {
            Value::Str(s) => s.as_str(),
            v => return Err(format!("expected a string like {like}, not {}", v.kind())),
        },
        Value::Array(items) if items.len() > 1 => {
            return Err("one disk per domain is supported today".into());
        }
        _ => string(e, like)?,
    };
    let (mut offset, mut size) = (None, None);
    for part in s.split(',').map(str::trim) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not key=value; expected {like}"))?;
        let v = plain(v.trim(), "a size like 4M")?;
        match k.trim() {
            "offset" if offset.is_none() => offset = Some(v),
            "size" if size.is_none() => size = Some(v),
            "offset" | "size" => return Err(format!("'{}' given twice", k.trim())),
            k => {
                return Err(format!(
                    "'{k}' is not supported (a disk is offset= and size= in dom0's disk)"
                ));
            }
        }
    }
    match (offset, size) {
        (Some(o), Some(z)) => Ok(format!("{o}:{z}")),
        (None, _) => Err(format!("offset= is missing; expected {like}")),
        (_, None) => Err(format!("size= is missing; expected {like}")),
    }
}

/// `"0-1,3"` → `0-1|3`.
fn cpus(e: &Entry) -> Result<Option<String>, String> {
    let like = "\"0-1,3\" or \"all\"";
    match &e.value {
        Value::Int(n) if *n >= 0 => Ok(Some(n.to_string())),
        Value::Str(s) if s.trim() == "all" => Ok(None),
        Value::Str(s) => {
            let list: String = s.split(',').map(str::trim).collect::<Vec<_>>().join("|");
            if list.is_empty()
                || !list
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '-' || c == '|')
            {
                return Err(format!("'{s}' is not a CPU list like {like}"));
            }
            Ok(Some(list))
        }
        v => Err(format!("expected a CPU list like {like}, not {}", v.kind())),
    }
}

/// Turns one table into `domu=` settings and checks them with [`DomuSpec::parse`].
fn domain(t: &Table) -> Result<BootDomain, Vec<Error>> {
    let mut errors = Vec::new();
    let mut name = None;
    let named = t.entries.iter().any(|e| e.key == "name");
    // (setting, value, the entry's line and key), in DomuSpec's order; `cmd` last.
    let mut settings: Vec<(&str, String, usize, &str)> = Vec::new();
    let mut cmd: Option<(String, &Entry)> = None;
    for e in &t.entries {
        let k = e.key.as_str();
        let r: Result<Option<(&str, String)>, String> = match k {
            "name" => string(e, "\"web\"")
                .and_then(|s| plain(s, "a name"))
                .map(|s| {
                    name = Some(s.clone());
                    Some(("name", s))
                }),
            "kernel" => string(e, "\"pv\"").and_then(|s| match s {
                "pv" => Ok(Some(("image", "pv".to_string()))),
                _ => Err(format!(
                    "'{s}' does not exist: the only kernel is \"pv\", the PV domU image packed \
                     into the firmware (guest/domu)"
                )),
            }),
            "memory" | "maxmem" => integer(e, "a number of MiB, like 32").and_then(|n| {
                if n < 1 {
                    return Err(format!("{n} MiB: at least 1"));
                }
                Ok(Some((
                    if k == "memory" { "mem" } else { "maxmem" },
                    format!("{n}M"),
                )))
            }),
            "vcpus" | "weight" | "cap" => {
                integer(e, "an integer").map(|n| Some((e.key.as_str(), n.to_string())))
            }
            "cpus" => cpus(e).map(|c| c.map(|c| ("cpus", c))),
            "disk" => disk(e).map(|d| Some(("disk", d))),
            "on_crash" | "on_poweroff" | "on_reboot" => string(e, "\"destroy\"")
                .and_then(|s| plain(s, "an action"))
                .map(|s| Some((e.key.as_str(), s))),
            "console" => string(e, "\"pv\"").and_then(|s| match s {
                // Every domU has it; nothing to set.
                "pv" => Ok(None),
                _ => Err(format!(
                    "'{s}' is not supported yet: the only console is \"pv\", the console ring \
                     dom0 serves, which every domU has"
                )),
            }),
            "vif" => Err(
                "not supported yet: there is nothing to configure; every domU may \
                 connect to dom0's switch, with MAC address 02:fe:00:00:00:<domid> (docs/io.md)"
                    .to_string(),
            ),
            "cmdline" | "extra" => string(e, "\"hog\"").and_then(|s| {
                if let Some((_, first)) = &cmd {
                    return Err(format!(
                        "give either cmdline or extra, not both ({} is on line {})",
                        first.key, first.line
                    ));
                }
                if s.contains('+') {
                    return Err(
                        "'+' cannot be passed: in domu= settings it stands for a space".to_string(),
                    );
                }
                let most = ferrite_abi::start_info::CMDLINE_LEN - 1;
                if s.len() > most || s.contains('\0') {
                    return Err(format!(
                        "{} bytes: at most {most}, without NUL (StartInfo::cmd_line)",
                        s.len()
                    ));
                }
                cmd = Some((s.replace(' ', "+"), e));
                Ok(None)
            }),
            _ => Err(format!("unknown key (known: {})", KEYS.join(", "))),
        };
        match r {
            Ok(Some((setting, v))) => settings.push((setting, v, e.line, k)),
            Ok(None) => {}
            Err(why) => errors.push(Error {
                line: e.line,
                key: Some(e.key.clone()),
                why,
            }),
        }
    }
    if name.is_none() && !named {
        errors.push(Error {
            line: t.line,
            key: Some("name".into()),
            why: "every domain needs a name".into(),
        });
    }
    // DomuSpec's rules, one setting at a time so that every mistake is reported.
    for (s, v, line, key) in &settings {
        if let Err(e) = DomuSpec::parse(&format!("{s}={v}")) {
            let why = e.strip_prefix(&format!("{s}={v}: ")).unwrap_or(&e);
            let why = match *key {
                "cpus" => why.replace("0-1|3", "\"0-1,3\""),
                _ => why.to_string(),
            };
            errors.push(Error {
                line: *line,
                key: Some(key.to_string()),
                why,
            });
        }
    }
    let (Some(name), true) = (name, errors.is_empty()) else {
        return Err(errors);
    };
    let mut text: Vec<String> = settings
        .iter()
        .map(|(s, v, ..)| format!("{s}={v}"))
        .collect();
    if let Some((c, _)) = &cmd {
        text.push(format!("cmd={c}"));
    }
    let text = text.join(",");
    match DomuSpec::parse(&text) {
        Ok(spec) => Ok(BootDomain {
            line: t.line,
            name,
            settings: text,
            spec,
        }),
        Err(e) => {
            // A rule across settings (`maxmem is less than mem`): the later key's line.
            let (line, key) = settings
                .iter()
                .filter(|(s, ..)| e.contains(s))
                .map(|(_, _, line, key)| (*line, Some(key.to_string())))
                .max()
                .unwrap_or((t.line, None));
            Err(alloc::vec![Error { line, key, why: e }])
        }
    }
}

/// Reads and checks a whole file: its domains in order, or every mistake found (a syntax error
/// stops the reading; the domains' own mistakes are all reported).
pub fn parse(text: &str) -> Result<Vec<BootDomain>, Vec<Error>> {
    let tables = parse_tables(text).map_err(|e| alloc::vec![e])?;
    let mut domains: Vec<BootDomain> = Vec::new();
    let mut errors = Vec::new();
    // (name, line of its table) of the tables before.
    let mut names: Vec<(&str, usize)> = Vec::new();
    for t in &tables {
        let name = t.entries.iter().find(|e| e.key == "name");
        if let Some(Entry {
            value: Value::Str(n),
            line,
            ..
        }) = name
        {
            if let Some((_, first)) = names.iter().find(|(f, _)| f == n) {
                errors.push(Error {
                    line: *line,
                    key: Some("name".into()),
                    why: format!("'{n}' is already the name of the domain on line {first}"),
                });
            }
            names.push((n, t.line));
        }
        match domain(t) {
            Ok(d) => {
                // Two domains may not have the same sectors of dom0's disk.
                if let Some(want) = d.spec.disk
                    && let Some(other) = domains
                        .iter()
                        .find(|o| o.spec.disk.is_some_and(|r| disks_overlap(want, r)))
                {
                    let line = t
                        .entries
                        .iter()
                        .find(|e| e.key == "disk")
                        .map_or(t.line, |e| e.line);
                    errors.push(Error {
                        line,
                        key: Some("disk".into()),
                        why: format!(
                            "overlaps the disk of '{}' (line {}): two domains may not share sectors",
                            other.name, other.line
                        ),
                    });
                }
                domains.push(d)
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(domains)
    } else {
        Err(errors)
    }
}

/// The domUs to start at boot and where they come from: the command line's `domu=` options if
/// it has any (they win: tests and one-off runs), none if it says `domu=none` (`none`), else
/// the domains packed into the image (`packed`, their `domu=` settings, from the file `source`
/// names).
pub fn boot_domus(
    cmdline: &[DomuSpec],
    none: bool,
    packed: &[&str],
    source: &str,
) -> (Vec<DomuSpec>, String) {
    if !cmdline.is_empty() || packed.is_empty() {
        return (cmdline.to_vec(), "the command line (domu=)".into());
    }
    if none {
        log::info!(
            "domU: domu=none: not starting the {} domains packed from {source}",
            packed.len()
        );
        return (Vec::new(), String::new());
    }
    let specs = packed
        .iter()
        .filter_map(|s| {
            DomuSpec::parse(s)
                .inspect_err(|e| log::error!("domU: packed settings '{s}' refused: {e}"))
                .ok()
        })
        .collect();
    (specs, format!("{source} (packed into the image)"))
}

#[cfg(test)]
mod tests;
