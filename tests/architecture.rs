//! The architecture of `src/`, checked from the source text with the standard library only:
//! imports between top-level modules run down the layers and form no cycle, the database
//! crates are named only in `src/store/`, and there is no `unsafe` code in the workspace's
//! sources.
//!
//! The module graph (who imports whom, with the number of paths):
//!
//! ```sh
//! cargo test --test architecture print_module_graph -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `src/`, top to bottom. A top-level module (`src/X.rs` or `src/X/`) may import
/// from any lower layer, and from its own layer as long as that makes no cycle; never from a
/// higher one. `main` and `lib` are the crate roots (wiring); a path to an item of the root
/// that is not a module (`crate::SOMETHING`) counts as an import of `lib`.
///
/// To add a top-level module, or to move one, change this table: a module missing from it
/// fails the test.
const LAYERS: &[(&str, &[&str])] = &[
    ("wiring", &["main", "lib", "app"]),
    ("edges", &["web", "api", "admin"]),
    ("shared edge", &["edge"]),
    ("services", &["services"]),
    ("workers", &["delivery"]),
    ("store and mail", &["store", "mail"]),
    ("bottom", &["domain", "tokens", "config"]),
];

/// The crates that only the database layer may name, and that layer's top-level module.
const DATABASE_CRATES: &[&str] = &["sea_orm", "sqlx"];
const DATABASE_MODULE: &str = "store";

/// The source trees (from the workspace root) where no `unsafe` code may appear.
const NO_UNSAFE: &[&str] = &["src", "templates/src", "migration/src"];

/// How a path reaches the crate root: `crate::` in the library, `letterhead::` in the binary.
const ROOTS: &[&str] = &["crate", "letterhead"];

/// Keywords that may stand before a path with a leading `::` (`use ::letterhead::app`).
const KEYWORDS: &[&str] = &[
    "as", "break", "const", "dyn", "else", "for", "if", "impl", "in", "let", "match", "move", "mut", "pub",
    "ref", "return", "static", "use", "where", "while",
];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Reading the source: comments and literals out, then tokens.
// ---------------------------------------------------------------------------------------------

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `source` with its comments, string literals and char literals replaced by spaces. Line breaks
/// stay, so every position keeps its line number.
fn strip(source: &str) -> String {
    let s: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, part: &[char]| {
        out.extend(part.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
    };
    let mut i = 0;
    while i < s.len() {
        let end = match (s[i], s.get(i + 1).copied()) {
            ('/', Some('/')) => Some(s[i..].iter().position(|&c| c == '\n').map_or(s.len(), |p| i + p)),
            ('/', Some('*')) => Some(block_comment_end(&s, i)),
            ('"', _) => Some(string_end(&s, i)),
            ('r', _) => raw_string_end(&s, i),
            ('\'', _) => char_literal_end(&s, i),
            _ => None,
        };
        match end {
            Some(end) => {
                blank(&mut out, &s[i..end]);
                i = end;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

/// The end of a block comment starting at `i` (block comments nest).
fn block_comment_end(s: &[char], i: usize) -> usize {
    let (mut depth, mut j) = (0usize, i);
    while j < s.len() {
        if s[j] == '/' && s.get(j + 1) == Some(&'*') {
            depth += 1;
            j += 2;
        } else if s[j] == '*' && s.get(j + 1) == Some(&'/') {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    s.len()
}

/// The end of a (byte, C) string literal whose opening quote is at `i`.
fn string_end(s: &[char], i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    s.len()
}

/// The end of a raw string literal (`r"…"`, `r#"…"#`, also after `b` or `c`) whose `r` is at
/// `i`, or `None` when there is none there (an identifier ending in `r`, a raw identifier).
fn raw_string_end(s: &[char], i: usize) -> Option<usize> {
    let starts_token = |k: usize| k == 0 || !is_ident_char(s[k - 1]);
    let prefixed = i > 0 && matches!(s[i - 1], 'b' | 'c') && starts_token(i - 1);
    if !(starts_token(i) || prefixed) {
        return None;
    }
    let mut j = i + 1;
    while s.get(j) == Some(&'#') {
        j += 1;
    }
    if s.get(j) != Some(&'"') {
        return None;
    }
    let hashes = j - i - 1;
    let mut k = j + 1;
    while k < s.len() {
        if s[k] == '"' && (1..=hashes).all(|h| s.get(k + h) == Some(&'#')) {
            return Some(k + 1 + hashes);
        }
        k += 1;
    }
    Some(s.len())
}

/// The end of a char literal (`'x'`, `'"'`, `'\''`, `'\u{1F600}'`) whose quote is at `i`, or
/// `None` for a lifetime or a label (`'a`, `'static`).
fn char_literal_end(s: &[char], i: usize) -> Option<usize> {
    match s.get(i + 1) {
        Some('\\') => {
            // Past the escaped character, the closing quote comes within a few characters.
            let mut j = i + 3;
            while j < s.len() && j < i + 12 && s[j] != '\'' && s[j] != '\n' {
                j += 1;
            }
            (s.get(j) == Some(&'\'')).then_some(j + 1)
        }
        Some(&c) if c != '\'' && c != '\n' && s.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

impl Token {
    fn is(&self, text: &str) -> bool {
        self.text == text
    }

    fn is_ident(&self) -> bool {
        self.text
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_alphabetic())
    }
}

/// The tokens of stripped source: identifiers (raw ones keep their `r#`, so `r#unsafe` is never
/// the keyword), `::`, and every other character on its own.
fn tokenize(code: &str) -> Vec<Token> {
    let s: Vec<char> = code.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < s.len() {
        let c = s[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if is_ident_char(c) {
            let start = i;
            while i < s.len() && is_ident_char(s[i]) {
                i += 1;
            }
            if i - start == 1
                && c == 'r'
                && s.get(i) == Some(&'#')
                && s.get(i + 1).is_some_and(|&n| is_ident_char(n))
            {
                i += 1;
                while i < s.len() && is_ident_char(s[i]) {
                    i += 1;
                }
            }
            out.push(Token {
                text: s[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && s.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What a file refers to.
// ---------------------------------------------------------------------------------------------

/// A path that leaves the file's module for the crate root: its first segment after the root
/// (a top-level module, or an item of the root), and where.
#[derive(Debug, Clone, PartialEq)]
struct Reference {
    name: String,
    line: usize,
}

/// Every path from the crate root in a file `depth` modules below the root (`src/x.rs` and
/// `src/x/mod.rs`: 1; `src/x/y.rs`: 2; `main.rs` and `lib.rs`: 0): `crate::NAME`,
/// `letterhead::NAME`, the items of groups (`crate::{a::B, c}` names `a` and `c`), and chains of
/// `super::` that climb out to the root (`super::super::z` in `src/x/y.rs`). A `super::` that
/// stays within the module (inline `mod tests { use super::*; }` too) is the module's own
/// business and not listed.
fn references(tokens: &[Token], depth: usize) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut braces = 0usize;
    // The brace depth inside each enclosing inline `mod NAME { … }`.
    let mut inline_modules: Vec<usize> = Vec::new();
    let mut module_opens = false;
    for (i, token) in tokens.iter().enumerate() {
        let followed_by_path = tokens.get(i + 1).is_some_and(|t| t.is("::"));
        // `a::letterhead`: a later segment of some other path, not a root (`use ::letterhead`
        // is one).
        let later_segment = i >= 2
            && tokens[i - 1].is("::")
            && tokens[i - 2].is_ident()
            && !KEYWORDS.contains(&tokens[i - 2].text.as_str());
        match token.text.as_str() {
            "{" => {
                braces += 1;
                if module_opens {
                    inline_modules.push(braces);
                    module_opens = false;
                }
            }
            "}" => {
                if inline_modules.last() == Some(&braces) {
                    inline_modules.pop();
                }
                braces = braces.saturating_sub(1);
            }
            "mod" => {
                module_opens = tokens.get(i + 1).is_some_and(Token::is_ident)
                    && tokens.get(i + 2).is_some_and(|t| t.is("{"));
            }
            root if ROOTS.contains(&root) && followed_by_path && !later_segment => {
                out.extend(targets(tokens, i + 2));
            }
            "super" if followed_by_path && !later_segment => {
                let mut j = i;
                let mut climbs = 0;
                while tokens.get(j).is_some_and(|t| t.is("super"))
                    && tokens.get(j + 1).is_some_and(|t| t.is("::"))
                {
                    climbs += 1;
                    j += 2;
                }
                if climbs >= depth + inline_modules.len() {
                    out.extend(targets(tokens, j));
                }
            }
            _ => {}
        }
    }
    out
}

/// The first segments named at `at`, just past `crate::`: one name, or each top-level item of
/// a group (`{a::{x, y}, b}` names `a` and `b`; `self` names the root itself and is left out).
fn targets(tokens: &[Token], at: usize) -> Vec<Reference> {
    let Some(first) = tokens.get(at) else {
        return Vec::new();
    };
    let reference = |t: &Token| Reference {
        name: t.text.trim_start_matches("r#").to_owned(),
        line: t.line,
    };
    if !first.is("{") {
        return vec![reference(first)]
            .into_iter()
            .filter(|r| r.name != "self")
            .collect();
    }
    let (mut out, mut depth, mut item_starts) = (Vec::new(), 0usize, false);
    for t in &tokens[at..] {
        match t.text.as_str() {
            "{" => {
                depth += 1;
                item_starts = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => item_starts = true,
            _ if depth == 1 && item_starts => {
                item_starts = false;
                if !t.is("self") {
                    out.push(reference(t));
                }
            }
            _ => {}
        }
    }
    out
}

/// The lines where the keyword `unsafe` is code (a block, fn, impl, trait, extern block or
/// attribute such as `#[unsafe(no_mangle)]`).
fn unsafe_lines(tokens: &[Token]) -> Vec<usize> {
    tokens.iter().filter(|t| t.is("unsafe")).map(|t| t.line).collect()
}

/// Where code names one of the database crates (`sea_orm::…`, `use sqlx`, `#[sea_orm(…)]`).
fn database_mentions(tokens: &[Token]) -> Vec<(String, usize)> {
    tokens
        .iter()
        .filter(|t| DATABASE_CRATES.contains(&t.text.as_str()))
        .map(|t| (t.text.clone(), t.line))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tree.
// ---------------------------------------------------------------------------------------------

struct SourceFile {
    /// From the workspace root, with `/`: `src/delivery/payload.rs`.
    shown: String,
    tokens: Vec<Token>,
}

/// The `.rs` files under `dir`, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out
}

fn read_tree(tree: &str) -> Vec<SourceFile> {
    let root = workspace();
    rust_files(&root.join(tree))
        .into_iter()
        .map(|path| {
            let source =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let shown = path
                .strip_prefix(&root)
                .expect("under the workspace")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            SourceFile {
                shown,
                tokens: tokenize(&strip(&source)),
            }
        })
        .collect()
}

/// The top-level module of a file under `src/` and how many modules below the root the file
/// is: `src/x.rs` and `src/x/mod.rs` are `x` at 1, `src/x/y.rs` is `x` at 2, `src/main.rs` is
/// `main` at 0.
fn module_of(shown: &str) -> (String, usize) {
    let parts: Vec<&str> = shown
        .strip_prefix("src/")
        .expect("a file under src/")
        .split('/')
        .collect();
    let module = parts[0].trim_end_matches(".rs").to_owned();
    let depth = match parts.as_slice() {
        [_] if module == "main" || module == "lib" => 0,
        [.., "mod.rs"] => parts.len() - 1,
        _ => parts.len(),
    };
    (module, depth)
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

fn describe_layer(index: usize) -> String {
    format!("layer {}, {}", index + 1, LAYERS[index].0)
}

/// The imports between top-level modules: for each edge, where its paths are.
type Graph = BTreeMap<(String, String), Vec<String>>;

struct Tree {
    /// Each top-level module and where it is (`src/x.rs` or `src/x/`).
    modules: BTreeMap<String, String>,
    graph: Graph,
    database_mentions: Vec<String>,
}

fn read_src() -> Tree {
    let files = read_tree("src");
    let mut modules = BTreeMap::new();
    for f in &files {
        let (module, _) = module_of(&f.shown);
        let place = if f.shown.matches('/').count() > 1 {
            format!("src/{module}/")
        } else {
            f.shown.clone()
        };
        modules.entry(module).or_insert(place);
    }
    let mut graph = Graph::new();
    let mut mentions = Vec::new();
    for f in &files {
        let (module, depth) = module_of(&f.shown);
        for r in references(&f.tokens, depth) {
            // A root item that is no module (`crate::SOMETHING`) lives in lib.rs.
            let target = if modules.contains_key(&r.name) {
                r.name
            } else {
                "lib".to_owned()
            };
            if target != module {
                graph
                    .entry((module.clone(), target))
                    .or_default()
                    .push(format!("{}:{}", f.shown, r.line));
            }
        }
        if module != DATABASE_MODULE {
            for (name, line) in database_mentions(&f.tokens) {
                mentions.push(format!("{}:{line}: `{name}`", f.shown));
            }
        }
    }
    Tree {
        modules,
        graph,
        database_mentions: mentions,
    }
}

/// The strongly connected components of the graph with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.next.get(v).cloned().unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().expect("on the stack");
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for (from, to) in graph.keys() {
        walk.next.entry(from.as_str()).or_default().push(to.as_str());
        walk.next.entry(to.as_str()).or_default();
    }
    let nodes: Vec<&str> = walk.next.keys().copied().collect();
    for v in nodes {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found.sort();
    walk.found
}

/// A shortest cycle through `start` inside `component`, as `a -> b -> a`.
fn a_cycle(graph: &Graph, component: &[String], start: &str) -> String {
    let inside = |m: &str| component.iter().any(|c| c == m);
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for (from, to) in graph.keys() {
            if from != v || !inside(to) {
                continue;
            }
            if to == start {
                let mut path = vec![start, v];
                let mut at = v;
                while at != start {
                    at = came_from[at];
                    path.push(at);
                }
                path.reverse();
                return path.join(" -> ");
            }
            if !came_from.contains_key(to.as_str()) {
                came_from.insert(to, v);
                queue.push_back(to);
            }
        }
    }
    unreachable!("{start} is on a cycle of its component")
}

/// Every violation of the rules, in sections, or nothing.
fn violations() -> Vec<(String, Vec<String>)> {
    let tree = read_src();
    let mut sections = Vec::new();

    let unknown: Vec<String> = tree
        .modules
        .iter()
        .filter(|(m, _)| layer_of(m).is_none())
        .map(|(m, file)| format!("`{m}` ({file})"))
        .collect();
    sections.push((
        "top-level modules missing from the layer table (add each to LAYERS at the top of \
         tests/architecture.rs, or move it into a module that is there)"
            .to_owned(),
        unknown,
    ));

    let mut upward = Vec::new();
    for ((from, to), places) in &tree.graph {
        if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
            && b < a
        {
            for place in places {
                upward.push(format!(
                    "{place}: `{from}` ({}) imports `{to}` ({})",
                    describe_layer(a),
                    describe_layer(b)
                ));
            }
        }
    }
    sections.push((
        "imports that run upward (a module imports only from its own layer or a lower one)".to_owned(),
        upward,
    ));

    let mut cyclic = Vec::new();
    for component in cycles(&tree.graph) {
        let mut lines = vec![format!(
            "{{{}}}, e.g. {}",
            component.join(", "),
            a_cycle(&tree.graph, &component, &component[0])
        )];
        for ((from, to), places) in &tree.graph {
            if component.contains(from) && component.contains(to) {
                lines.push(format!("    {from} -> {to}: {}", places.join(", ")));
            }
        }
        cyclic.push(lines.join("\n"));
    }
    sections.push((
        "cycles between top-level modules (each set reaches itself through its imports; the edges \
         inside it below)"
            .to_owned(),
        cyclic,
    ));

    sections.push((
        format!(
            "database crates ({}) named outside src/{DATABASE_MODULE}/",
            DATABASE_CRATES.join(", ")
        ),
        tree.database_mentions,
    ));

    let mut unsafe_code = Vec::new();
    for tree in NO_UNSAFE {
        for f in read_tree(tree) {
            for line in unsafe_lines(&f.tokens) {
                unsafe_code.push(format!("{}:{line}", f.shown));
            }
        }
    }
    sections.push((
        format!("`unsafe` code (in {})", NO_UNSAFE.join(", ")),
        unsafe_code,
    ));

    sections.retain(|(_, items)| !items.is_empty());
    sections
}

#[test]
fn the_source_tree_follows_the_layers() {
    let found = violations();
    if found.is_empty() {
        return;
    }
    let count: usize = found.iter().map(|(_, items)| items.len()).sum();
    let mut message = format!("the source tree breaks its architecture ({count} violations):\n");
    for (title, items) in &found {
        message.push_str(&format!("\n{title}:\n"));
        for item in items {
            message.push_str(&format!("  - {item}\n"));
        }
    }
    panic!("{message}");
}

/// Prints the module graph, one `module -> module (paths)` line per edge, sorted; always passes.
#[test]
fn print_module_graph() {
    for ((from, to), places) in &read_src().graph {
        println!("{from} -> {to} ({})", places.len());
    }
}

// ---------------------------------------------------------------------------------------------
// The scanner's own tests.
// ---------------------------------------------------------------------------------------------

fn names(source: &str, depth: usize) -> Vec<String> {
    references(&tokenize(&strip(source)), depth)
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn plain_and_grouped_imports_name_their_first_segments() {
    let source = "use crate::a::B;\n\
                  use crate::{c::D, e};\n\
                  use crate::{f::{x, y::{Z, W}}, g, self};\n\
                  use crate::{\n    h::I,\n    j,\n};\n\
                  fn k() -> crate::l::M { crate::n::o() }\n";
    assert_eq!(names(source, 1), ["a", "c", "e", "f", "g", "h", "j", "l", "n"]);
    let refs = references(&tokenize(&strip(source)), 1);
    assert_eq!(refs.iter().find(|r| r.name == "j").unwrap().line, 6);
}

#[test]
fn the_binary_names_the_library_and_other_paths_are_left_alone() {
    let source = "use letterhead::app::{self, Application};\n\
                  use ::letterhead::store;\n\
                  use other::crate_like::x;\n\
                  pub(crate) fn f() {}\n\
                  macro_rules! m { () => { $crate::domain::X } }\n";
    assert_eq!(names(source, 0), ["app", "store", "domain"]);
}

#[test]
fn comments_strings_and_chars_hide_what_they_contain() {
    let source = r####"
        // use crate::commented;
        /// [`crate::doc`]
        /* crate::block /* crate::nested */ crate::still_block */
        const A: &str = "crate::string \" crate::escaped";
        const B: &str = r#"crate::raw "quoted" crate::raw2"#;
        const C: &[u8] = br##"crate::raw_bytes "# crate::still"##;
        const Q: char = '"';
        use crate::after_quote_char::X;
        const E: char = '\'';
        fn f<'a>(x: &'a str) -> &'static str { crate::after_lifetime::g(x) }
        const U: char = '\u{1F600}';
        use crate::last::Y;
    "####;
    assert_eq!(names(source, 1), ["after_quote_char", "after_lifetime", "last"]);
}

#[test]
fn super_counts_only_when_it_climbs_out_to_the_root() {
    // src/x/y.rs: one super is x, two are the root.
    assert_eq!(names("use super::sibling::A;\nuse super::super::z::B;", 2), ["z"]);
    // src/x.rs: one super is the root; inside an inline module it is x again.
    assert_eq!(
        names(
            "use super::w::{C, D};\nmod tests {\n    use super::*;\n    use super::super::v::E;\n}\n",
            1
        ),
        ["w", "v"]
    );
    assert_eq!(
        names("pub(super) fn f() {}\nuse super::{p, q::R};", 1),
        ["p", "q"]
    );
}

#[test]
fn unsafe_counts_only_as_code() {
    let tokens = |s: &str| tokenize(&strip(s));
    let quiet = r#"
        // unsafe { in a comment }
        /* unsafe fn */
        const CSP: &str = "style-src 'unsafe-inline'";
        fn not_unsafe_at_all() { let r#unsafe = 1; let unsafe_count = r#unsafe; }
    "#;
    assert!(unsafe_lines(&tokens(quiet)).is_empty());
    let loud = "fn f() {\n    let p = unsafe { g() };\n}\nunsafe impl Send for X {}\n#[unsafe(no_mangle)]\nfn h() {}\n";
    assert_eq!(unsafe_lines(&tokens(loud)), [2, 4, 5]);
}

#[test]
fn database_crates_count_only_as_code() {
    let source = "use sea_orm::EntityTrait;\n\
                  let q = \"sqlx::query\"; // sqlx::query\n\
                  let r = sqlx::query(\"\");\n\
                  let n = sea_orm_like + my_sqlx;\n";
    let found = database_mentions(&tokenize(&strip(source)));
    assert_eq!(found, [("sea_orm".to_owned(), 1), ("sqlx".to_owned(), 3)]);
}

#[test]
fn files_belong_to_their_top_level_module() {
    assert_eq!(module_of("src/main.rs"), ("main".into(), 0));
    assert_eq!(module_of("src/lib.rs"), ("lib".into(), 0));
    assert_eq!(module_of("src/signup.rs"), ("signup".into(), 1));
    assert_eq!(module_of("src/store/mod.rs"), ("store".into(), 1));
    assert_eq!(module_of("src/store/lists.rs"), ("store".into(), 2));
    assert_eq!(module_of("src/store/entities/mod.rs"), ("store".into(), 2));
    assert_eq!(module_of("src/store/entities/list.rs"), ("store".into(), 3));
}

#[test]
fn cycles_are_found_and_shown() {
    let mut graph = Graph::new();
    for (a, b) in [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("c", "d"),
        ("d", "e"),
        ("e", "d"),
        ("x", "a"),
    ] {
        graph.insert((a.into(), b.into()), vec![]);
    }
    let found = cycles(&graph);
    assert_eq!(found, [vec!["a", "b", "c"], vec!["d", "e"]]);
    assert_eq!(a_cycle(&graph, &found[0], "a"), "a -> b -> c -> a");
}
