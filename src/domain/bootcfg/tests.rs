//! Host tests of the boot configuration's parser: every key, errors by line and key.
use super::*;
use crate::domain::config::Action;

fn one_error(text: &str) -> String {
    match parse(text) {
        Ok(d) => panic!("accepted: {d:?}"),
        Err(e) => {
            assert_eq!(e.len(), 1, "{e:?}");
            e[0].to_string()
        }
    }
}

#[test]
fn empty_and_comments_only() {
    assert_eq!(parse("").unwrap(), []);
    assert_eq!(parse("# nothing\n\n   # still nothing\n").unwrap(), []);
    assert_eq!(parse("#[[domain]]\n#name = \"x\"").unwrap(), []);
}

#[test]
fn every_key() {
    let text = r#"
# Two domains.
[[domain]]
name = "web"          # a comment
kernel = "pv"
memory = 32
maxmem = 64
vcpus = 2
weight = 512
cap = 50
cpus = "0-1, 3"
disk = "offset=1M,size=4M"
console = "pv"
cmdline = "hog a,b"
on_crash = "restart"
on_poweroff = "preserve"
on_reboot = 'destroy'

[[domain]]
name = "db"
cpus = 2
disk = [ "offset=8M, size=1024K" ]
extra = "blk-write 7"
"#;
    let d = parse(text).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].name.as_str(), d[0].line), ("web", 3));
    assert_eq!(
        d[0].settings,
        "name=web,image=pv,mem=32M,maxmem=64M,vcpus=2,weight=512,cap=50,cpus=0-1|3,\
         disk=1M:4M,on_crash=restart,on_poweroff=preserve,on_reboot=destroy,cmd=hog+a,b"
    );
    let s = &d[0].spec;
    assert_eq!(s.name.as_deref(), Some("web"));
    assert_eq!(s.image, "pv");
    assert_eq!((s.mem, s.maxmem), (32 << 20, Some(64 << 20)));
    assert_eq!((s.vcpus, s.weight, s.cap), (2, 512, 50));
    assert_eq!(s.cpus, Some(0b1011));
    assert_eq!(s.disk, Some((1 << 20, 4 << 20)));
    assert_eq!(
        (s.on_crash, s.on_poweroff, s.on_reboot),
        (Action::Restart, Action::Preserve, Action::Destroy)
    );
    assert_eq!(s.cmdline, "hog a,b");
    // What is packed is what boot reads back.
    assert_eq!(DomuSpec::parse(&d[0].settings).unwrap(), *s);
    let t = &d[1].spec;
    assert_eq!(
        d[1].settings,
        "name=db,cpus=2,disk=8M:1024K,cmd=blk-write+7"
    );
    assert_eq!(t.cpus, Some(0b100));
    assert_eq!(t.disk, Some((8 << 20, 1 << 20)));
    assert_eq!(t.cmdline, "blk-write 7");
    assert_eq!(
        (t.mem, t.vcpus, t.weight),
        (DomuSpec::default().mem, 1, 256)
    );
}

#[test]
fn a_minimal_domain_has_domus_defaults() {
    let d = parse("[[domain]]\nname = \"a\"\ncpus = \"all\"\n").unwrap();
    assert_eq!(d[0].settings, "name=a");
    let want = DomuSpec {
        name: Some("a".into()),
        ..DomuSpec::default()
    };
    assert_eq!(d[0].spec, want);
}

#[test]
fn syntax() {
    let t = parse_tables(
        "[[ domain ]]\r\nx = \"a\\\"b\\\\c\\n\\td\"\ny = -1_000\nz = true\nw = false\n\
         v = [1, 'two',\n  # inside\n  [\"three\"],\n]\n",
    )
    .unwrap();
    let e = &t[0].entries;
    assert_eq!(e[0].value, Value::Str("a\"b\\c\n\td".into()));
    assert_eq!(e[1].value, Value::Int(-1000));
    assert_eq!(
        (e[2].value.clone(), e[3].value.clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    assert_eq!(
        e[4].value,
        Value::Array(alloc::vec![
            Value::Int(1),
            Value::Str("two".into()),
            Value::Array(alloc::vec![Value::Str("three".into())])
        ])
    );
    assert_eq!(e[4].line, 6);
}

#[test]
fn syntax_errors_name_their_line() {
    for (text, want) in [
        (
            "[domain]\n",
            "1: '[domain]': only [[domain]] tables are supported",
        ),
        (
            "\n[[vm]]\n",
            "2: '[[vm]]': only [[domain]] tables are supported",
        ),
        ("name = \"a\"\n", "1: name: every key belongs to a domain"),
        (
            "[[domain]]\nname = \"a\nvcpus = 1\n",
            "2: name: this string has no closing \"",
        ),
        (
            "[[domain]]\nname = 'a\n",
            "2: name: this string has no closing '",
        ),
        (
            "[[domain]]\n\nmemory = 1.5\n",
            "3: memory: '1.5' is not an integer",
        ),
        (
            "[[domain]]\nmemory = 32M\n",
            "2: memory: '32M' is not an integer",
        ),
        (
            "[[domain]]\nname = web\n",
            "2: name: 'web' is not a value: strings are quoted",
        ),
        ("[[domain]]\nname =\n", "2: name: no value after '='"),
        (
            "[[domain]]\nname \"a\"\n",
            "2: name: expected '=' after the key",
        ),
        (
            "[[domain]]\na.b = 1\n",
            "2: a: dotted keys are not supported",
        ),
        ("[[domain]]\n\"a\" = 1\n", "2: '\"a\"': expected a key"),
        (
            "[[domain]]\nname = \"a\" \"b\"\n",
            "2: name: unexpected '\"b\"' after the value",
        ),
        (
            "[[domain]]\ndisk = [\"a\"\n\n",
            "2: disk: this array has no closing ]",
        ),
        (
            "[[domain]]\ndisk = [\"a\" \"b\"]\n",
            "2: disk: expected ',' or ']'",
        ),
        (
            "[[domain]]\nx = {a = 1}\n",
            "2: x: inline tables are not supported",
        ),
        (
            "[[domain]]\nx = \"\"\"a\"\"\"\n",
            "2: x: multi-line strings are not supported",
        ),
        (
            "[[domain]]\nx = \"\\q\"\n",
            "2: x: the escape \\q is not supported",
        ),
        ("[[domain]] x\n", "1: unexpected 'x' after [[domain]]"),
        (
            "[[domain]]\nname = \"a\"\nvcpus = 1\nname = \"b\"\n",
            "4: name: given twice in one domain (first on line 2)",
        ),
    ] {
        let e = one_error(text);
        assert!(e.starts_with(want), "{text:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn unknown_keys_and_bad_values_name_their_line_and_key() {
    for (body, want) in [
        (
            "colour = \"red\"",
            "colour: unknown key (known: name, kernel, memory",
        ),
        (
            "kernel = \"linux\"",
            "kernel: 'linux' does not exist: the only kernel is \"pv\"",
        ),
        (
            "kernel = 1",
            "kernel: expected a string like \"pv\", not an integer",
        ),
        (
            "memory = \"32M\"",
            "memory: expected a number of MiB, like 32, not a string",
        ),
        ("memory = 0", "memory: 0 MiB: at least 1"),
        ("vcpus = 0", "vcpus: 1 to 32"),
        ("vcpus = 33", "vcpus: 1 to 32"),
        ("vcpus = true", "vcpus: expected an integer, not a boolean"),
        ("weight = 0", "weight: 1 to 65535"),
        ("cap = -1", "cap: a percentage of one CPU"),
        ("cpus = \"3-1\"", "cpus: a list like \"0-1,3\""),
        ("cpus = \"64\"", "cpus: a list like \"0-1,3\""),
        ("cpus = \"a\"", "cpus: 'a' is not a CPU list"),
        ("disk = \"1M:4M\"", "disk: '1M:4M' is not key=value"),
        ("disk = \"offset=1M\"", "disk: size= is missing"),
        ("disk = \"size=4M\"", "disk: offset= is missing"),
        (
            "disk = \"offset=1M,size=4M,vdev=xvda\"",
            "disk: 'vdev' is not supported",
        ),
        (
            "disk = \"offset=100,size=4M\"",
            "disk: offset:size in dom0's disk",
        ),
        (
            "disk = [\"offset=1M,size=4M\", \"offset=8M,size=4M\"]",
            "disk: one disk per domain",
        ),
        ("vif = [\"bridge=xenbr0\"]", "vif: not supported yet"),
        ("console = \"vfb\"", "console: 'vfb' is not supported yet"),
        (
            "on_crash = \"explode\"",
            "on_crash: destroy, restart or preserve",
        ),
        (
            "on_poweroff = \"restart\"",
            "on_poweroff: destroy or preserve",
        ),
        (
            "on_reboot = \"destroy,vcpus=4\"",
            "on_reboot: 'destroy,vcpus=4' is not an action",
        ),
        ("cmdline = \"a+b\"", "cmdline: '+' cannot be passed"),
        (
            "cmdline = \"a\"\nextra = \"b\"",
            "extra: give either cmdline or extra, not both",
        ),
    ] {
        let text = format!("[[domain]]\nname = \"d\"\n{body}\n");
        let e = one_error(&text);
        let line = if body.contains('\n') { 4 } else { 3 };
        let want = format!("{line}: {want}");
        assert!(e.starts_with(&want), "{body}: got {e:?}, want {want:?}");
    }
    let long = format!(
        "[[domain]]\nname = \"d\"\ncmdline = \"{}\"\n",
        "x".repeat(1024)
    );
    assert_eq!(
        one_error(&long),
        "3: cmdline: 1024 bytes: at most 1023, without NUL (StartInfo::cmd_line)"
    );
    let fits = format!(
        "[[domain]]\nname = \"d\"\ncmdline = \"{}\"\n",
        "x".repeat(1023)
    );
    assert_eq!(parse(&fits).unwrap()[0].spec.cmdline.len(), 1023);
    // A rule across two keys names the later one.
    let e = one_error("[[domain]]\nname = \"d\"\nmemory = 32\nmaxmem = 16\n");
    assert_eq!(e, "4: maxmem: maxmem is less than mem");
}

#[test]
fn names_are_required_plain_and_unique() {
    assert_eq!(
        one_error("[[domain]]\nvcpus = 1\n"),
        "1: name: every domain needs a name"
    );
    assert!(one_error("[[domain]]\nname = \"a b\"\n").starts_with("2: name: 'a b' is not a name"));
    assert!(one_error("[[domain]]\nname = \"\"\n").starts_with("2: name: '' is not a name"));
    assert_eq!(
        one_error(&format!("[[domain]]\nname = \"{}\"\n", "x".repeat(33))),
        "2: name: a name is 1 to 32 characters"
    );
    assert_eq!(
        one_error("[[domain]]\nname = \"a\"\n\n[[domain]]\nvcpus = 2\nname = \"a\"\n"),
        "6: name: 'a' is already the name of the domain on line 1"
    );
}

#[test]
fn two_domains_may_not_share_disk_sectors() {
    assert_eq!(
        one_error(
            "[[domain]]\nname = \"a\"\ndisk = \"offset=1M,size=4M\"\n\n\
             [[domain]]\nname = \"b\"\nmemory = 8\ndisk = \"offset=4M,size=4M\"\n"
        ),
        "8: disk: overlaps the disk of 'a' (line 1): two domains may not share sectors"
    );
    // Regions that only touch are fine, and so are domains without a disk.
    let ok = parse(
        "[[domain]]\nname = \"a\"\ndisk = \"offset=1M,size=4M\"\n\n\
         [[domain]]\nname = \"b\"\ndisk = \"offset=5M,size=4M\"\n\n[[domain]]\nname = \"c\"\n",
    )
    .unwrap();
    assert_eq!(ok.len(), 3);
}

/// The shipped files start nothing (the system tests boot those images), and their
/// commented example is valid once uncommented.
#[test]
fn the_boards_files_are_empty_and_their_examples_valid() {
    for (board, text, n) in [
        (
            "qemu-virt",
            include_str!("../../../boards/qemu-virt/domains.toml"),
            3,
        ),
        ("rpi4", include_str!("../../../boards/rpi4/domains.toml"), 2),
    ] {
        assert_eq!(parse(text).unwrap(), [], "{board}");
        let start = text.find("# [[domain]]").expect("an example");
        let example: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .collect::<Vec<_>>()
            .join("\n");
        let d = parse(&example).unwrap_or_else(|e| panic!("{board}: {e:?}"));
        assert_eq!(d.len(), n, "{board}");
    }
}

#[test]
fn the_command_line_wins_over_packed_domains() {
    let packed = ["name=a,vcpus=2", "name=b,cmd=hog"];
    let cmd = [DomuSpec::parse("name=c").unwrap()];
    let (s, from) = boot_domus(&cmd, false, &packed, "boards/x/domains.toml");
    assert_eq!(s, cmd);
    assert_eq!(from, "the command line (domu=)");
    // domu=none with other domu= options: those start.
    assert_eq!(boot_domus(&cmd, true, &packed, "x").0, cmd);
    let (s, from) = boot_domus(&[], false, &packed, "boards/x/domains.toml");
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].vcpus, s[1].cmdline.as_str()), (2, "hog"));
    assert_eq!(from, "boards/x/domains.toml (packed into the image)");
    assert!(boot_domus(&[], true, &packed, "x").0.is_empty());
    assert!(boot_domus(&[], false, &[], "").0.is_empty());
}

#[test]
fn every_mistake_is_reported() {
    let e = parse(
        "[[domain]]\nname = \"a\"\nvcpus = 0\n[[domain]]\nname = \"b\"\ncolour = 1\nvif = []\n\
         [[domain]]\nname = \"a\"\nkernel = \"linux\"\nvcpus = 40\ncap = -1\n[[domain]]\nweight = 0\n",
    )
    .unwrap_err();
    let lines: Vec<_> = e
        .iter()
        .map(|e| (e.line, e.key.as_deref().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            (3, "vcpus"),
            (6, "colour"),
            (7, "vif"),
            (9, "name"),
            (10, "kernel"),
            (11, "vcpus"),
            (12, "cap"),
            (13, "name"),
            (14, "weight")
        ]
    );
}
