//! The tiers of `src/` that the README's "Layout" describes: each tier is a folder that uses only
//! the tiers below it, each room of a tier only the rooms before it, and no file imports from a
//! file that imports back from it (directly or through others). The folders' private submodules
//! keep what a tier exports to its `mod.rs`; this test keeps the direction. Read from the
//! sources, so a `use` that breaks it fails here, with the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The five tiers, from the bottom up, each with its rooms in the order in which they may use
/// each other. A file belongs to the room whose path is the longest prefix of its own.
const TIERS: &[(&str, &[&str])] = &[
    ("sys", &["sys"]),
    ("base", &["base"]),
    ("wire", &["wire"]),
    (
        "runtime",
        &[
            "runtime",
            "runtime/logs",
            "runtime/registry",
            "runtime/sandbox",
            "runtime/worker",
            "runtime/expansion",
            "runtime/spawn",
            "runtime/cluster",
            "runtime/fuzz",
        ],
    ),
    ("rooms", &["ipc", "process", "pool", "macros", "entry"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, relative to `src/`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(src()).unwrap().to_path_buf());
        }
    }
}

/// The module path of a file: `pool/mod.rs` is `["pool"]`, `wire/codec.rs` is
/// `["wire", "codec"]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module.
fn file_of(path: &[String], known: &BTreeMap<Vec<String>, PathBuf>) -> Option<PathBuf> {
    (1..=path.len())
        .rev()
        .find_map(|len| known.get(&path[..len]).cloned())
}

/// The module paths a line of code names through `crate::` or `super::`, outside comments and
/// macro-hygiene `$crate::` paths.
fn paths_in(line: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` of `pool/imap.rs` is `pool`; of `pool/mod.rs` it is the crate root.
            let mut parent = module.to_vec();
            if !is_mod_file || !parent.is_empty() {
                parent.pop();
            }
            parent
        }),
    ] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + prefix.len()..];
            rest = after;
            if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
                continue;
            }
            let mut path = base.clone();
            path.extend(
                after
                    .split(|c: char| !(c == ':' || c == '_' || c.is_alphanumeric()))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|part| !part.is_empty())
                    .map(str::to_string),
            );
            found.push(path);
        }
    }
    found
}

/// Imports between files: file → files it names.
fn graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let known: BTreeMap<Vec<String>, PathBuf> = all
        .iter()
        .map(|file| (module_of(file), file.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for file in &all {
        let text = std::fs::read_to_string(src().join(file)).unwrap();
        let module = module_of(file);
        let is_mod_file = file.file_name().is_some_and(|n| n == "mod.rs");
        // Unit tests may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut targets = BTreeSet::new();
        for line in text.lines() {
            for path in paths_in(line, &module, is_mod_file) {
                if let Some(target) = file_of(&path, &known) {
                    if &target != file {
                        targets.insert(target);
                    }
                }
            }
        }
        edges.insert(file.clone(), targets);
    }
    edges
}

/// The file's tier and room, as positions in [`TIERS`], so that comparing them says which is
/// below the other.
fn place_of(file: &Path) -> (usize, usize) {
    let module = module_of(file).join("/");
    TIERS
        .iter()
        .enumerate()
        .flat_map(|(tier, (_, rooms))| {
            rooms
                .iter()
                .enumerate()
                .map(move |(at, room)| (tier, at, *room))
        })
        .filter(|(_, _, room)| module == *room || module.starts_with(&format!("{room}/")))
        .max_by_key(|(_, _, room)| room.len())
        .map(|(tier, room, _)| (tier, room))
        .unwrap_or_else(|| panic!("{} is in no tier: add it to TIERS", file.display()))
}

#[test]
fn every_import_goes_down_the_tiers() {
    let mut wrong = Vec::new();
    for (file, targets) in graph() {
        if file == Path::new("lib.rs") {
            // The front door re-exports from every layer.
            continue;
        }
        for target in targets {
            if target == Path::new("lib.rs") {
                wrong.push(format!(
                    "{} names an item through the crate root: name its module",
                    file.display()
                ));
            } else if place_of(&target) > place_of(&file) {
                let (tier, _) = place_of(&target);
                wrong.push(format!(
                    "{} imports {}, above it (tier {})",
                    file.display(),
                    target.display(),
                    TIERS[tier].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_file_imports_from_a_file_that_imports_back() {
    let graph = graph();
    // Depth-first search for a cycle, reporting the first one found.
    fn visit(
        file: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        stack: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(at) = stack.iter().position(|f| f == file) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(file.clone());
            return Some(cycle);
        }
        if !done.insert(file.clone()) {
            return None;
        }
        stack.push(file.clone());
        for next in graph.get(file).into_iter().flatten() {
            if next != Path::new("lib.rs") {
                if let Some(cycle) = visit(next, graph, stack, done) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for file in graph.keys().filter(|f| *f != Path::new("lib.rs")) {
        if let Some(cycle) = visit(file, &graph, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(|f| f.display().to_string()).collect();
            panic!("import cycle: {}", names.join(" -> "));
        }
    }
}

/// Every `.rs` file under `src/` outside `sys/`, relative to `src/`, with its text.
fn above_sys() -> Vec<(PathBuf, String)> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    all.into_iter()
        .filter(|file| !file.starts_with("sys"))
        .map(|file| {
            let text = std::fs::read_to_string(src().join(&file)).unwrap();
            (file, text)
        })
        .collect()
}

/// What only `sys/` may name, comments and tests included: the `libc` crate's items (calls,
/// error numbers, signal numbers) and `/proc` paths. A port to another OS then replaces that
/// folder and nothing else.
#[test]
fn only_sys_names_the_os() {
    let mut wrong = Vec::new();
    for (file, text) in above_sys() {
        for (at, line) in text.lines().enumerate() {
            for os in ["libc::", "\"/proc"] {
                if line.contains(os) {
                    wrong.push(format!(
                        "{}:{}: `{os}` outside sys/: ask a function of sys/ for what it answers",
                        file.display(),
                        at + 1
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The files outside `sys/` that hold `unsafe` blocks, how many, and why they cannot move to
/// `sys/`. Every other file holds none.
const UNSAFE_ABOVE_SYS: &[(&str, usize, &str)] = &[
    (
        "ipc/shared.rs",
        6,
        "the public `unsafe fn`s (`Value::unlocked*`, `Array::unlocked*`, \
         `SharedMemory::as_*slice`) hand their caller's promise to the `unsafe fn`s of sys/ \
         that they wrap: only the caller can make it",
    ),
    (
        "wire/fast/plain.rs",
        5,
        "the codec's own memory: numbers read as bytes, types told apart at run time, one \
         copy into a new vector; no OS involved",
    ),
];

/// The `unsafe` blocks of a file's code (comments, doc examples among them, left out).
fn unsafe_blocks(text: &str) -> usize {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .map(|code| {
            code.match_indices("unsafe")
                .filter(|(at, _)| code[at + "unsafe".len()..].trim_start().starts_with('{'))
                .count()
        })
        .sum()
}

#[test]
fn unsafe_blocks_outside_sys_are_the_listed_ones() {
    let mut wrong = Vec::new();
    for (file, text) in above_sys() {
        let found = unsafe_blocks(&text);
        let listed = UNSAFE_ABOVE_SYS
            .iter()
            .find(|(path, _, _)| Path::new(path) == file)
            .map_or(0, |(_, count, _)| *count);
        if found != listed {
            wrong.push(format!(
                "{} has {found} `unsafe` blocks, UNSAFE_ABOVE_SYS lists {listed}: move the OS's \
                 part into sys/, or list the file with why its blocks cannot move",
                file.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
