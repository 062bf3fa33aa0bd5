//! Every relative link in README.md and docs/ resolves: the file exists, and a `#fragment` into a
//! Markdown file names one of its headings (GitHub's anchors: lowercase, spaces to `-`,
//! punctuation dropped). Links to the web (`http:`, `https:`, `mailto:`) are not followed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{markdown_under, repo_root};

/// Markdown files to check: README.md and everything under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo_root().join("README.md")];
    pages.extend(markdown_under(&repo_root().join("docs")));
    pages.sort();
    pages
}

/// The text outside fenced code blocks and inline code (links there are examples, not links).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop `inline code`.
        let mut inside = false;
        for piece in line.split('`') {
            if !inside {
                out.push_str(piece);
            }
            inside = !inside;
        }
        out.push('\n');
    }
    out
}

/// Targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let target = rest[..end].split_whitespace().next().unwrap_or("").to_owned();
        found.push(target);
        rest = &rest[end..];
    }
    found
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(page: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && let Some(heading) = line.strip_prefix('#') {
            found.insert(slug(heading.trim_start_matches('#').replace('`', "").as_str()));
        }
    }
    found
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = prose(&std::fs::read_to_string(&page).unwrap());
        for target in links(&text) {
            if target.is_empty() || ["http:", "https:", "mailto:"].iter().any(|s| target.starts_with(s)) {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            let name = page.strip_prefix(repo_root()).unwrap().display().to_string();
            if !resolved.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
            } else if !fragment.is_empty()
                && resolved.extension().is_some_and(|e| e == "md")
                && !anchors(&resolved).contains(fragment)
            {
                broken.push(format!("{name}: {target} (no such heading)"));
            }
        }
    }
    assert!(checked > 20, "only {checked} links found: the scan is broken");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(slug(" Carrying on from a cursor"), "carrying-on-from-a-cursor");
    assert_eq!(slug("Register, join, publish"), "register-join-publish");
    assert_eq!(slug("Soak: does it level off?"), "soak-does-it-level-off");
    assert_eq!(links("see [a](b.md#c) and [d](https://e)"), ["b.md#c", "https://e"]);
}
