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
