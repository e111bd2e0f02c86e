//! No input may make siteplan panic: every valid plan, cut short at every line and mangled in
//! small ways, must load to either a plan or a list of problems.

use std::path::{Path, PathBuf};

use siteplan::manifest::{self, Options, Overrides};

fn plans() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["examples", "tests/fixtures/good", "tests/fixtures/bad"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("fixture directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("fixture is readable");
            out.push((file, text));
        }
    }
    out
}

/// Small edits that turn a plan into the kinds of broken input people write.
fn mutations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for cut in 0..=lines.len() {
        out.push(lines[..cut].join("\n"));
    }
    for (i, line) in lines.iter().enumerate() {
        for replacement in [
            format!("  {line}"),
            line.trim_start().to_string(),
            format!("{line}:"),
            format!("{line} {{{{"),
            format!("{line} {{% if %}}"),
            line.replace(':', ""),
            line.replace(' ', ""),
            format!("{line} [\"\u{e9}\u{1F600}\""),
            "- ".to_string() + line,
            line.replace(|c: char| c.is_ascii_digit(), "9999999999999999999999"),
            line.replace(|c: char| c.is_ascii_digit(), "-1"),
        ] {
            let mut mutated = lines.clone();
            mutated[i] = &replacement;
            out.push(mutated.join("\n"));
        }
    }
    out
}

#[test]
fn mangled_plans_never_panic() {
    let mut loads = 0;
    for (path, text) in plans() {
        for input in mutations(&text) {
            // A panic here fails the test; both outcomes are fine.
            let _ = manifest::load_text(&input, &path, &Overrides::default(), Options::default());
            loads += 1;
        }
    }
    assert!(loads > 5_000, "only {loads} inputs were tried");
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A fixed pseudo-random stream, so a failure reproduces.
    let mut state: u64 = 0x5eed;
    let alphabet = b"ab: -[]{}\n\"'&*!|>%#@`{}~0129.,?=\t\\/";
    for _ in 0..3_000 {
        let len = (state % 200) as usize;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s.push(alphabet[(state % alphabet.len() as u64) as usize] as char);
        }
        let _ = manifest::load_text(
            &s,
            Path::new("fuzz.yml"),
            &Overrides::default(),
            Options::default(),
        );
    }
}

/// A plan written as one long line (minified JSON) gets its errors, with their line and
/// column, not a panic of the renderer (which cannot pad a line that long).
#[test]
fn an_error_on_a_very_long_line_is_reported_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut entries: Vec<String> = (0..3000)
        .map(|i| format!("\"a{i}\": {{\"memory\": 128}}"))
        .collect();
    entries.push("\"bad\": {\"memory\": \"oops\"}".into());
    let file = tmp.path().join("min.yml");
    std::fs::write(&file, format!("{{{}}}", entries.join(", "))).expect("plan");
    let out = crate::harness::Plan::new(&["validate"])
        .arg_path(&file)
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("memory `oops` is not a positive size (at ")
            && out.stderr.contains("min.yml:1:"),
        "{}",
        out.stderr
    );
}

/// Plans that include the same plans several times at every level would be read ten thousand
/// times over: the number of included plans is bounded, and said.
#[test]
fn included_plans_that_fan_out_are_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let including = |next: &str| -> String {
        (0..10)
            .map(|i| format!("inc{i}:\n  type: plan\n  file: {next}\n"))
            .collect()
    };
    std::fs::write(tmp.path().join("site.yml"), including("l1.yml")).expect("plan");
    std::fs::write(tmp.path().join("l1.yml"), including("l2.yml")).expect("plan");
    std::fs::write(tmp.path().join("l2.yml"), including("l3.yml")).expect("plan");
    std::fs::write(tmp.path().join("l3.yml"), including("leaf.yml")).expect("plan");
    std::fs::write(tmp.path().join("leaf.yml"), "v:\n  memory: 128\n").expect("plan");
    let out = crate::harness::Plan::new(&["validate"])
        .arg_path(&tmp.path().join("site.yml"))
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr.contains("a plan may include at most 64 plans"),
        "{}",
        out.stderr
    );
}

/// A template's work is bounded by its fuel, and its memory too: a loop that keeps doubling a
/// string is stopped with an error, well before the machine runs out of memory.
#[test]
fn a_template_that_grows_a_string_without_end_is_stopped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("grow.yml");
    std::fs::write(
        &file,
        "{% set s = namespace(v=\"x\") %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}{% endfor %}\na:\n  memory: 128\n",
    )
    .expect("plan");
    let out = crate::harness::Plan::new(&["validate"])
        .arg_path(&file)
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr
            .contains("the plan's template would use more than 512 MiB of memory"),
        "{}",
        out.stderr
    );
}

/// A bounded mutation run of the binary itself (the CI's fuzzing): plans mangled at the byte
/// level, and in the ways people break them, through `plan validate` and `plan diff` on a
/// sandbox. No run may panic, hang or end otherwise than 0 or 1; the runs, and the peak memory
/// of any of them, are reported.
#[test]
fn mutated_plans_through_the_binary_never_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let file = tmp.path().join("fuzz.yml");
    let seeds: Vec<String> = plans().into_iter().map(|(_, text)| text).collect();
    let alphabet = b"ab: -[]{}\n\"'&*!|>%#@`{}~0129.,?=\t\\/";
    let mut state: u64 = 0x5eed_f00d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut runs, mut diffs) = (0, 0);
    for round in 0..1_500 {
        let seed = &seeds[(next() % seeds.len() as u64) as usize];
        let mut bytes = seed.clone().into_bytes();
        for _ in 0..(1 + next() % 4) {
            let at = (next() % (bytes.len() as u64 + 1)) as usize;
            match next() % 4 {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => {
                    bytes[at] = alphabet[(next() % alphabet.len() as u64) as usize]
                }
                2 => bytes.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                _ => {
                    // A line cut or repeated, as editing does.
                    let line_end = bytes[at..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(bytes.len(), |i| at + i);
                    let line = bytes[at..line_end].to_vec();
                    bytes.splice(at..at, line);
                }
            }
        }
        std::fs::write(&file, &bytes).expect("fuzz input");
        let diff = round % 8 == 0;
        let mut command =
            crate::harness::Plan::new(if diff { &["diff"] } else { &["validate"] }).arg_path(&file);
        if diff {
            command = command.sandbox(&sandbox).args(&["--provider", "sandbox"]);
            diffs += 1;
        }
        let out = command.run();
        runs += 1;
        assert!(
            matches!(out.code(), Some(0 | 1)) && !out.stderr.contains("panicked"),
            "run {round} ended {:?}:\n{}\ninput:\n{}",
            out.code(),
            out.stderr,
            String::from_utf8_lossy(&bytes)
        );
    }
    // The largest of all the runs, as the kernel accounted it.
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let peak_kib = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init().ru_maxrss
    };
    crate::harness::report(&format!(
        "mutation run: {runs} runs of the binary ({diffs} of them `plan diff` on a sandbox), \
         0 panics, peak memory of any run {} MiB",
        peak_kib / 1024
    ));
}
