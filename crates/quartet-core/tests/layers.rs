//! The core is layered: each module uses only modules of the layers below it, so it has no
//! cycle (see the crate doc). This test reads the sources and checks every `crate::` path
//! outside comments against the table below; a new module must be placed in it.

use std::collections::BTreeMap;

/// Each module and its layer; a module may use modules of lower layers only.
const LAYERS: &[(&str, u8)] = &[
    ("limits", 0),
    ("config", 1),
    ("grant", 1),
    ("moderation", 1),
    ("entry", 2),
    ("frame", 3),
    ("ring", 3),
    ("log", 4),
    ("engine", 4),
    ("position", 5),
    ("session", 6),
    ("reader", 7),
    ("testing", 8),
    ("hub", 8),
    ("lib", 9),
];

/// The modules `src/NAME.rs` names through `crate::module` outside comments.
fn uses(source: &str) -> Vec<String> {
    let mut used = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `crate::Hub` and friends are re-exports at the root: only modules count.
            if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                used.push(name);
            }
        }
    }
    used
}

#[test]
fn every_module_uses_only_lower_layers() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in std::fs::read_dir(src).unwrap() {
        let path = file.unwrap().path();
        let module = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let own = *layer.get(module.as_str()).unwrap_or_else(|| panic!("module {module} is not in LAYERS"));
        for used in uses(&std::fs::read_to_string(&path).unwrap()) {
            let theirs =
                *layer.get(used.as_str()).unwrap_or_else(|| panic!("{module} uses unknown module {used}"));
            if theirs >= own && used != module {
                violations.push(format!("{module} (layer {own}) uses {used} (layer {theirs})"));
            }
        }
        checked += 1;
    }
    assert_eq!(checked, LAYERS.len(), "every module in LAYERS has a file");
    assert!(violations.is_empty(), "layering broken:\n{}", violations.join("\n"));
}

#[test]
fn the_scanner_sees_uses_and_skips_comments() {
    let source = "use crate::ring::Ring;\n// crate::hub in a comment\nlet x = crate::log::Log::new(); // crate::reader\n";
    assert_eq!(uses(source), ["ring", "log"]);
}
