//! The shape of the code, checked: no import circles between the top-level modules of each
//! crate, and the storage crate knows nothing of HTTP or actors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module of a file, as `crate::<module>` names it (`lib.rs`/`main.rs` are the root).
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// `crate::x` references outside comments, by module.
fn dependencies(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(root, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source");
        let entry = deps.entry(module.clone()).or_default();
        for line in text.lines().map(str::trim_start) {
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let is_module = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
                if is_module && name != module {
                    entry.insert(name);
                }
            }
        }
    }
    deps
}

/// A module that can reach itself through others, with the path.
fn find_circle(deps: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    for start in deps.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().expect("non-empty");
            for next in deps.get(last).into_iter().flatten() {
                if next == start {
                    let mut circle = path.clone();
                    circle.push(next.clone());
                    return Some(circle);
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    // The finder itself finds one.
    let mut toy: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    toy.entry("a".into()).or_default().insert("b".into());
    toy.entry("b".into()).or_default().insert("c".into());
    toy.entry("c".into()).or_default().insert("a".into());
    assert!(find_circle(&toy).is_some());

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for root in ["src", "actors/src", "storage/src"] {
        let deps = dependencies(&manifest.join(root));
        assert!(deps.len() > 3, "{root}: modules found");
        if let Some(circle) = find_circle(&deps) {
            panic!("{root}: import circle {}", circle.join(" -> "));
        }
    }
}

#[test]
fn storage_knows_nothing_of_http_or_actors() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&manifest.join("storage/src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        for forbidden in ["actix", "http::", "creativeflow_actors", "reqwest"] {
            assert!(
                !code.contains(forbidden),
                "{} mentions {forbidden}",
                file.display()
            );
        }
    }
    let cargo = std::fs::read_to_string(manifest.join("storage/Cargo.toml")).expect("manifest");
    assert!(!cargo.contains("actix") && !cargo.contains("creativeflow-actors"));
}
