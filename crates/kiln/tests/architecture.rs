//! The architecture's rules (`../shared/ARCHITECTURE.md`), checked on the source so that a
//! change breaking one fails the test command, not a review months later.

use std::path::{Path, PathBuf};

/// The workspace's `crates/` directory.
fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/")
        .to_path_buf()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
        {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The generic arguments of each `Result<…>` in `text`, split at their top level.
fn result_arguments(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("Result<").map(|i| i + from) {
        let start = i + "Result<".len();
        let (mut depth, mut args, mut current) = (1, Vec::new(), String::new());
        let mut j = start;
        while j < bytes.len() && depth > 0 {
            let c = bytes[j] as char;
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 1 => {
                    args.push(std::mem::take(&mut current));
                    j += 1;
                    continue;
                }
                _ => {}
            }
            if depth > 0 {
                current.push(c);
            }
            j += 1;
        }
        args.push(current);
        let line = text[..i].matches('\n').count() + 1;
        found.push((
            line,
            args.into_iter()
                .map(|a| a.split_whitespace().collect::<String>())
                .collect(),
        ));
        from = start;
    }
    found
}

/// Issue 12: errors are typed at every library boundary (`thiserror`), so callers can tell
/// them apart and keep their sources; only the binary's edge turns them into words.
#[test]
fn no_library_crate_returns_a_string_error() {
    let binary = crates_dir().join("kiln");
    let mut offenders = Vec::new();
    for file in rust_files(&crates_dir()) {
        if file.starts_with(&binary) || file.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, args) in result_arguments(&text) {
            if args
                .get(1)
                .is_some_and(|e| e == "String" || e == "std::string::String")
            {
                offenders.push(format!(
                    "{}:{line}",
                    file.strip_prefix(crates_dir()).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "Result<_, String> in a library crate (use a thiserror enum):\n{}",
        offenders.join("\n")
    );
}

/// The crates behind the platform that a door must not reach into.
const BEHIND_THE_PLATFORM: [&str; 6] = [
    "kiln-store",
    "kiln-dyno",
    "kiln-logplex",
    "kiln-runtime",
    "kiln-build",
    "kiln-router",
];

/// The `[dependencies]` of a crate's manifest: the names before `=`.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

/// Issue 12: the doors (the API, the git receiver, the dashboard) call the platform's use cases only, never
/// the store, the dyno manager or the log store, so that every request meets the platform's
/// access checks. Neither depends on those crates, nor names them in its code.
#[test]
fn the_doors_reach_only_the_platform() {
    for door in ["kiln-api", "kiln-git", "kiln-dashboard"] {
        let dir = crates_dir().join(door);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let deps = dependencies(&manifest);
        assert!(
            deps.iter().any(|d| d == "kiln-model"),
            "{door}: the manifest was not read: {deps:?}"
        );
        for behind in BEHIND_THE_PLATFORM {
            assert!(
                !deps.iter().any(|d| d == behind),
                "{door} depends on {behind}: call the platform instead"
            );
            let path = behind.replace('-', "_");
            for file in rust_files(&dir.join("src")) {
                let text = std::fs::read_to_string(&file).unwrap();
                if let Some(line) = text.lines().position(|l| l.contains(&format!("{path}::"))) {
                    panic!(
                        "{}:{}: {door} names {path}: call the platform instead",
                        file.display(),
                        line + 1
                    );
                }
            }
        }
    }
}

/// The modules of a crate (each top-level file or directory under `src/`) and, for each,
/// the other modules its code names through `crate::`. The crate root is the node `crate`:
/// it uses each module its code names as `module::` (its `pub use` re-exports aside), and a
/// module that names one of the root's own items (`crate::Shared`) uses it. Comments and
/// test modules do not count: a doc link or a test may look anywhere.
fn module_graph(
    src: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut texts = std::collections::BTreeMap::<String, String>::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let module = match module.as_str() {
            "lib" | "main" => ROOT.to_string(),
            _ => module,
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        texts.entry(module).or_default().push_str(&code_of(&text));
    }
    let names: std::collections::BTreeSet<String> = texts.keys().cloned().collect();
    texts
        .iter()
        .map(|(module, text)| {
            let used = if module == ROOT {
                root_uses(text, &names)
            } else {
                crate_paths(text)
                    .into_iter()
                    .map(|m| match names.contains(&m) {
                        true => m,
                        // An item of the root's own.
                        false => ROOT.to_string(),
                    })
                    .filter(|m| m != module && names.contains(m))
                    .collect()
            };
            (module.clone(), used)
        })
        .collect()
}

/// The crate root's node in [`module_graph`].
const ROOT: &str = "crate";

/// The modules the crate root's code names as `module::`, leaving out its `mod`
/// declarations and `pub use` re-exports (the crate's API, not a dependency).
fn root_uses(
    code: &str,
    names: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let code: Vec<&str> = code
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l.starts_with("pub use ") || l.starts_with("mod ") || l.starts_with("pub mod "))
        })
        .collect();
    let code = code.join("\n");
    names
        .iter()
        .filter(|m| {
            code.match_indices(&format!("{m}::")).any(|(i, _)| {
                let before = code[..i].chars().next_back();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            })
        })
        .cloned()
        .collect()
}

/// `text` without comments and without its test module (what follows the first
/// `#[cfg(test)]` on an inline `mod`, which by convention ends a file).
fn code_of(text: &str) -> String {
    let cut = text.match_indices("#[cfg(test)]").find(|(i, tag)| {
        let next = text[i + tag.len()..].trim_start();
        next.starts_with("mod ") && next.lines().next().is_some_and(|l| l.contains('{'))
    });
    let text = &text[..cut.map_or(text.len(), |(i, _)| i)];
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal ("http://…") is rare enough in this code to
            // cut the line there too: what it hides is a string, not a path.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment after each `crate::` in `code`, including every member of a
/// `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> std::collections::BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = std::collections::BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(ident).filter(|s| !s.is_empty()));
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    // Depth-first search with colours: a back edge to a module still on the path closes a
    // cycle, which the path spells out.
    fn visit<'a>(
        node: &'a str,
        graph: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// Issue 20: the router's modules form layers, each knowing only those below it, so that a
/// change to one (metrics, network namespaces, sleeping dynos) does not cut across the
/// rest. A module that names one above it closes a cycle and fails here with its path.
#[test]
fn the_routers_modules_import_no_cycle() {
    let graph = module_graph(&crates_dir().join("kiln-router/src"));
    assert!(
        graph.len() > 20,
        "the router's modules were not found: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "kiln-router's modules import each other in a cycle: {}",
            cycle.join(" → ")
        );
    }
}

/// Issue 20: the router speaks HTTP/1.1 through its own engine only (`engine` for clients,
/// `dyno_client` for dynos); hyper serves HTTP/2 alone. A module that names hyper's HTTP/1
/// server, client or upgrade types would bring a second implementation back.
#[test]
fn the_router_has_one_http1_implementation() {
    let src = crates_dir().join("kiln-router/src");
    let mut offenders = Vec::new();
    for file in rust_files(&src) {
        let code = code_of(&std::fs::read_to_string(&file).expect("readable"));
        for needle in ["conn::http1", "http1::", "hyper::upgrade", "client::legacy"] {
            if code.contains(needle) {
                offenders.push(format!("{} names {needle}", file.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn the_checks_see_what_they_look_for() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths(&code_of(
            "use crate::a::B;\nuse crate::{c, d::E};\n// crate::f\n#[cfg(test)]\nfn g() { crate::h::i() }\n#[cfg(test)]\nmod k;\n#[cfg(test)]\nmod tests {\nuse crate::j;\n}"
        )),
        ["a", "c", "d", "h"].iter().map(|s| s.to_string()).collect()
    );
    let names = ["access_log", "server", "route", "foo", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        root_uses(
            "use access_log::X;\npub use server::serve;\nmod foo;\nfn f() { route::a(); crate::x::y(); my_route::z(); }",
            &names
        ),
        ["access_log", "route"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        dependencies(
            "[package]\nname = \"x\"\n[dependencies]\nkiln-model = { workspace = true }\ntokio = \"1\"\n[dev-dependencies]\nkiln-store = \"1\"\n"
        ),
        ["kiln-model", "tokio"]
    );
    let found = result_arguments(
        "fn a() -> Result<Vec<(u8, String)>, String> {}\nfn b() -> io::Result<()> {}\nfn c() -> Result<BTreeMap<String, String>, E>",
    );
    assert_eq!(found.len(), 3);
    assert_eq!(
        found[0],
        (
            1,
            vec!["Vec<(u8,String)>".to_string(), "String".to_string()]
        )
    );
    assert_eq!(found[1].1, vec!["()".to_string()]);
    assert_eq!(
        found[2],
        (
            3,
            vec!["BTreeMap<String,String>".to_string(), "E".to_string()]
        )
    );
}
