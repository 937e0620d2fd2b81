//! Campaign content: markdown (or HTML + text) with per-recipient fields.
//!
//! Markdown becomes HTML once per campaign; template tags (`{{ name }}`, `{% if %}`) are kept
//! out of the markdown converter's way and restored afterwards. Each recipient's message is then
//! rendered by minijinja with HTML auto-escaping, from a context that holds only that
//! recipient's own fields (their name, their links, the list's name): a template cannot reach
//! anyone else's data, the database or the file system.
//!
//! A template is also bounded in what it may cost, since an API key may leak: a few harmless
//! filters and no functions (no `range`), no operator that builds strings (`*`, `~`, `+`), an
//! instruction budget (fuel) and a cap on what one rendering writes. Every rendering, checked
//! or per recipient, runs with those bounds, so none takes more than a moment or a few MB.

use std::io::Write;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// What a template may use.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientFields {
    pub name: String,
    pub list_name: String,
    pub unsubscribe_url: String,
    pub preferences_url: String,
}

impl RecipientFields {
    pub fn sample(list_name: &str) -> Self {
        RecipientFields {
            name: "Sample Reader".into(),
            list_name: list_name.into(),
            unsubscribe_url: "https://example.invalid/unsubscribe/sample".into(),
            preferences_url: "https://example.invalid/preferences/sample".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    Markdown(String),
    HtmlAndText { html: String, text: String },
}

/// Compiled templates for one campaign.
pub struct Content {
    env: Environment<'static>,
}

/// Instructions one rendering may execute: generous for a letter with a few conditions and
/// loops, and a bound of a few milliseconds on any rendering.
pub const FUEL: u64 = 100_000;

/// Bytes one part (HTML or text) of one rendering may have.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Operators that build new strings out of small ones; campaigns have no need of them.
const STRING_BUILDING_OPERATORS: [char; 3] = ['*', '~', '+'];

/// A template environment with the bounds above and only the filters and tests a letter needs.
fn bounded_environment() -> Environment<'static> {
    use minijinja::{filters, tests};
    let mut env = Environment::empty();
    // `.html` names turn HTML auto-escaping on; the text part is not escaped.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_filter("default", filters::default);
    env.add_filter("d", filters::default);
    env.add_filter("upper", filters::upper);
    env.add_filter("lower", filters::lower);
    env.add_filter("title", filters::title);
    env.add_filter("capitalize", filters::capitalize);
    env.add_filter("trim", filters::trim);
    env.add_filter("escape", filters::escape);
    env.add_filter("e", filters::escape);
    env.add_filter("safe", filters::safe);
    env.add_filter("length", filters::length);
    env.add_filter("underline", |s: String, rule: String| {
        rule.repeat(s.chars().count())
    });
    env.add_test("defined", tests::is_defined);
    env.add_test("undefined", tests::is_undefined);
    env.add_test("none", tests::is_none);
    env
}

/// A rendering's output, refused past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedOutput(Vec<u8>);

impl Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other("the rendering is too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders a compiled template within the bounds.
fn render_bounded(
    env: &Environment<'_>,
    name: &str,
    fields: &impl Serialize,
) -> Result<String, minijinja::Error> {
    let mut out = CappedOutput::default();
    env.get_template(name)?.render_captured_to(fields, &mut out)?;
    // The engine writes text; the check only keeps a broken write from passing unseen.
    String::from_utf8(out.0).map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "not UTF-8"))
}

/// The problem with a rendering, in the marketer's words.
fn problem_of(e: &minijinja::Error) -> Option<String> {
    match e.kind() {
        ErrorKind::OutOfFuel => Some(format!(
            "the template does too much work (more than {FUEL} steps): a loop too long?"
        )),
        ErrorKind::WriteFailure => Some(format!(
            "the campaign renders to more than {} MB",
            MAX_RENDERED_BYTES / (1024 * 1024)
        )),
        ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest => Some(format!(
            "{} (a campaign may use the filters default, upper, lower, title, capitalize, trim, \
             escape, safe and length, and the tests defined, undefined and none)",
            e.detail().unwrap_or("not available in campaigns")
        )),
        _ => None,
    }
}

/// The 1-based line and column (in characters) of byte offset `at` in `source`.
fn line_and_column(source: &str, at: usize) -> Option<(usize, usize)> {
    let before = source.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    ))
}

/// Refuses the operators that build strings, outside string literals inside template tags.
fn check_operators(part: Part, source: &str) -> Result<(), TemplateError> {
    let bytes = source.as_bytes();
    let mut i = 0;
    while let Some(start) = source[i..].find('{').map(|at| i + at) {
        let closer = match bytes.get(start + 1) {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            _ => {
                i = start + 1;
                continue;
            }
        };
        let mut quote: Option<char> = None;
        let mut j = start + 2;
        let mut escaped = false;
        for (offset, c) in source[start + 2..].char_indices() {
            j = start + 2 + offset;
            match quote {
                Some(_) if escaped => escaped = false,
                Some(_) if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if source[j..].starts_with(closer) => break,
                None if STRING_BUILDING_OPERATORS.contains(&c) => {
                    let at = line_and_column(source, j);
                    return Err(TemplateError {
                        part,
                        line: at.map(|(line, _)| line),
                        column: at.map(|(_, column)| column),
                        problem: format!("the operator `{c}` cannot be used in a campaign"),
                    });
                }
                None => {}
            }
        }
        i = j.max(start + 2);
    }
    Ok(())
}

const OPEN: &str = "\u{E000}";
const CLOSE: &str = "\u{E001}";

/// Replaces template tags by private-use placeholders, returning the tags.
fn protect_tags(src: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(src.len());
    let mut tags = Vec::new();
    let mut rest = src;
    while let Some(start) = rest
        .find(['{'])
        .filter(|&i| matches!(rest[i..].chars().nth(1), Some('{' | '%' | '#')))
    {
        let closer = match rest[start..].chars().nth(1) {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => "#}",
        };
        let Some(end) = rest[start..].find(closer).map(|e| start + e + 2) else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(OPEN);
        out.push_str(&tags.len().to_string());
        out.push_str(CLOSE);
        tags.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, tags)
}

/// The forms a placeholder's markers can take in the converter's output: as they are, or
/// percent-encoded (their UTF-8 bytes) where the tag was a link destination
/// (`[Leave]({{ unsubscribe_url }})`: pulldown-cmark escapes non-ASCII in `href` and `src`).
const MARKER_FORMS: [(&str, &str); 2] = [(OPEN, CLOSE), ("%EE%80%80", "%EE%80%81")];

fn restore_tags(html: &str, tags: &[String]) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    // The earliest placeholder next, whichever its form.
    let next = |rest: &str| {
        MARKER_FORMS
            .iter()
            .filter_map(|&(open, close)| rest.find(open).map(|at| (at, open, close)))
            .min_by_key(|&(at, _, _)| at)
    };
    while let Some((start, open, close)) = next(rest) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        match after
            .find(close)
            .and_then(|e| after[..e].parse::<usize>().ok().map(|i| (e, i)))
        {
            Some((e, i)) if i < tags.len() => {
                out.push_str(&tags[i]);
                rest = &after[e + close.len()..];
            }
            _ => {
                out.push_str(open);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn markdown_to_html(markdown: &str) -> String {
    let (protected, tags) = protect_tags(markdown);
    let mut opts = pulldown_cmark::Options::empty();
    opts.insert(pulldown_cmark::Options::ENABLE_TABLES);
    opts.insert(pulldown_cmark::Options::ENABLE_STRIKETHROUGH);
    let parser = pulldown_cmark::Parser::new_ext(&protected, opts);
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    restore_tags(&html, &tags)
}

/// The part of a campaign a person wrote, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Markdown,
    Html,
    Text,
}

impl Part {
    pub fn field(self) -> &'static str {
        match self {
            Part::Markdown => "markdown",
            Part::Html => "html",
            Part::Text => "text",
        }
    }
}

/// A template that does not compile or render, located in what the person wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub part: Part,
    /// 1-based line and column in the person's own text, where the engine knows them.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub problem: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.problem),
            (Some(l), None) => write!(f, "line {l}: {}", self.problem),
            _ => f.write_str(&self.problem),
        }
    }
}

const FIELDS: &str = "name, list_name, unsubscribe_url and preferences_url";

impl TemplateError {
    fn from_engine(part: Part, source: &str, e: &minijinja::Error) -> Self {
        let range = e.range();
        let at = range.as_ref().and_then(|r| line_and_column(source, r.start));
        // The engine's own line is right for syntax errors; a span is more precise.
        let line = at.map(|(line, _)| line).or(e.line());
        let column = at.map(|(_, column)| column);
        let problem = problem_of(e).unwrap_or_else(|| match e.kind() {
            ErrorKind::UndefinedError => {
                let what = range
                    .and_then(|r| source.get(r))
                    .map(|s| format!("`{s}` is not a field a campaign can use"))
                    .unwrap_or_else(|| "this is not a field a campaign can use".into());
                format!("{what} (the fields are {FIELDS})")
            }
            kind => match e.detail() {
                Some(detail) => format!("{kind}: {detail}"),
                None => kind.to_string(),
            },
        });
        TemplateError {
            part,
            line,
            column,
            problem,
        }
    }
}

/// Compiles and renders one part as its author wrote it, so errors point into their text.
fn check_part(part: Part, source: &str) -> Result<(), TemplateError> {
    check_operators(part, source)?;
    let mut env = bounded_environment();
    env.set_debug(true);
    let name = if part == Part::Text {
        "part.txt"
    } else {
        "part.html"
    };
    env.add_template(name, source)
        .map_err(|e| TemplateError::from_engine(part, source, &e))?;
    render_bounded(&env, name, &RecipientFields::sample("Sample list"))
        .map_err(|e| TemplateError::from_engine(part, source, &e))?;
    Ok(())
}

/// The plain-text part of a markdown campaign: headings, emphasis and lists as a reader of
/// plain text expects them, each link's text followed by a number and the addresses listed
/// at the end, so the text part reads as a letter rather than as markup.
pub fn markdown_to_text(markdown: &str) -> String {
    use pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};
    let (protected, tags) = protect_tags(markdown);
    let mut opts = pulldown_cmark::Options::empty();
    opts.insert(pulldown_cmark::Options::ENABLE_TABLES);
    opts.insert(pulldown_cmark::Options::ENABLE_STRIKETHROUGH);
    let mut w = TextWriter::default();
    let mut links: Vec<String> = Vec::new();
    // Per open link: its destination and where its text starts in the output.
    let mut open_links: Vec<(String, usize)> = Vec::new();
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut heading: Option<(HeadingLevel, usize)> = None;
    for event in pulldown_cmark::Parser::new_ext(&protected, opts) {
        match event {
            Event::Start(Tag::Paragraph) => w.block(),
            Event::Start(Tag::Heading { level, .. }) => {
                w.block();
                heading = Some((level, w.out.len()));
            }
            Event::End(TagEnd::Heading(_)) => {
                let rule = match heading.take() {
                    Some((HeadingLevel::H1, start)) => Some(("=", start)),
                    Some((HeadingLevel::H2, start)) => Some(("-", start)),
                    _ => None,
                };
                if let Some((rule, start)) = rule {
                    let written = w.out.split_off(start);
                    if written.contains(OPEN) {
                        // A heading with fields is underlined as wide as each recipient's.
                        w.raw(&format!(
                            "{{% set heading %}}{written}{{% endset %}}{{{{ heading }}}}\n\
                             {{{{ heading|underline(\"{rule}\") }}}}"
                        ));
                    } else {
                        w.raw(&format!("{written}\n{}", rule.repeat(written.chars().count())));
                    }
                }
                w.end_block();
            }
            Event::End(TagEnd::Paragraph | TagEnd::Table) => w.end_block(),
            Event::Start(Tag::BlockQuote(_)) => {
                w.block();
                w.prefixes.push("> ".into());
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                w.prefixes.pop();
                w.end_block();
            }
            Event::Start(Tag::CodeBlock(_)) => {
                w.block();
                w.prefixes.push("    ".into());
            }
            Event::End(TagEnd::CodeBlock) => {
                w.prefixes.pop();
                w.end_block();
            }
            Event::Start(Tag::List(start)) => {
                if lists.is_empty() {
                    w.block();
                }
                lists.push(start);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                if lists.is_empty() {
                    w.end_block();
                }
            }
            Event::Start(Tag::Item) => {
                w.line();
                w.start_line();
                let marker = match lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "- ".into(),
                };
                w.raw(&marker);
                // Continuation lines line up under the item's text.
                w.prefixes.push(" ".repeat(marker.len()));
                w.fresh_item = true;
            }
            Event::End(TagEnd::Item) => {
                w.prefixes.pop();
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                open_links.push((dest_url.into_string(), w.out.len()))
            }
            Event::End(TagEnd::Link) => {
                if let Some((dest, start)) = open_links.pop() {
                    let label = w.out[start..].trim();
                    let bare = dest.strip_prefix("mailto:").unwrap_or(&dest);
                    if label != dest && label != bare {
                        links.push(dest);
                        w.raw(&format!(" [{}]", links.len()));
                    }
                }
            }
            Event::Start(Tag::Table(_)) => w.block(),
            Event::Start(Tag::TableRow | Tag::TableHead) => w.line(),
            Event::Start(Tag::TableCell) if !w.at_line_start => w.raw(" | "),
            Event::Text(t) | Event::Code(t) => w.text(&t),
            Event::SoftBreak | Event::HardBreak => w.newline(),
            Event::Rule => {
                w.block();
                w.text("----------");
                w.end_block();
            }
            // Raw HTML has no plain-text form; images keep their alt text (a Text event).
            _ => {}
        }
    }
    let mut out = w.out.trim_end().to_owned();
    if !links.is_empty() {
        out.push_str("\n\nLinks:\n");
        for (i, dest) in links.iter().enumerate() {
            out.push_str(&format!("[{}] {dest}\n", i + 1));
        }
    } else {
        out.push('\n');
    }
    restore_tags(&out, &tags)
}

/// Writes plain text a block at a time, with the line prefixes of quotes, code and list items.
#[derive(Default)]
struct TextWriter {
    out: String,
    prefixes: Vec<String>,
    at_line_start: bool,
    /// A block has ended: the next one starts after a blank line.
    after_block: bool,
    /// A list item's marker is written: its first paragraph goes on the same line.
    fresh_item: bool,
}

impl TextWriter {
    /// Starts a block: on a line of its own, after a blank line if a block came before.
    fn block(&mut self) {
        if std::mem::take(&mut self.fresh_item) || self.out.is_empty() {
            self.after_block = false;
            return;
        }
        if !self.at_line_start {
            self.newline();
        }
        if std::mem::take(&mut self.after_block) {
            self.start_line();
            self.newline();
        }
    }

    fn end_block(&mut self) {
        self.after_block = true;
    }

    /// Starts a new line unless at the start of one.
    fn line(&mut self) {
        if self.after_block {
            self.block();
        } else if !self.out.is_empty() && !self.at_line_start {
            self.newline();
        }
    }

    /// Writes the prefixes of the blocks the line is in.
    fn start_line(&mut self) {
        if self.at_line_start {
            for p in &self.prefixes {
                self.out.push_str(p);
            }
            self.at_line_start = false;
        }
    }

    fn newline(&mut self) {
        // Prefixes on an empty line leave no trailing spaces (a quote's blank line is ">").
        while self.out.ends_with(' ') {
            self.out.pop();
        }
        self.out.push('\n');
        self.at_line_start = true;
    }

    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn text(&mut self, s: &str) {
        self.fresh_item = false;
        let mut lines = s.split('\n').peekable();
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none();
            if !(line.is_empty() && last) {
                self.start_line();
            }
            self.out.push_str(line);
            if !last {
                self.newline();
            }
        }
    }
}

impl Content {
    /// Checks each part the person wrote, then compiles the templates the workers render and
    /// renders them once with sample fields: a campaign with a broken template or an unknown
    /// field is refused when it is written, not when it is sent.
    pub fn compile(source: &Source, sample_list: &str) -> Result<Self, TemplateError> {
        let (html, text) = match source {
            Source::Markdown(md) => {
                check_part(Part::Markdown, md)?;
                (markdown_to_html(md), markdown_to_text(md))
            }
            Source::HtmlAndText { html, text } => {
                check_part(Part::Html, html)?;
                check_part(Part::Text, text)?;
                (html.clone(), text.clone())
            }
        };
        // The derived templates hold the same tags as the checked parts, so these rarely fail;
        // when they do there is no position in the person's text to give.
        let part = match source {
            Source::Markdown(_) => Part::Markdown,
            Source::HtmlAndText { .. } => Part::Html,
        };
        let unplaced = |problem: String| TemplateError {
            part,
            line: None,
            column: None,
            problem,
        };
        let mut env = bounded_environment();
        env.add_template_owned("body.html", html)
            .map_err(|e| unplaced(e.to_string()))?;
        env.add_template_owned("body.txt", text)
            .map_err(|e| unplaced(e.to_string()))?;
        let content = Content { env };
        content
            .render(&RecipientFields::sample(sample_list))
            .map_err(unplaced)?;
        Ok(content)
    }

    /// [`Content::compile`] on a blocking thread: checking a template renders it several times,
    /// up to the whole budget each, which is no work for the async threads that serve requests.
    pub async fn compile_off_thread(source: Source, sample_list: String) -> Result<Self, TemplateError> {
        let part = match &source {
            Source::Markdown(_) => Part::Markdown,
            Source::HtmlAndText { .. } => Part::Html,
        };
        tokio::task::spawn_blocking(move || Content::compile(&source, &sample_list))
            .await
            .unwrap_or_else(|e| {
                Err(TemplateError {
                    part,
                    line: None,
                    column: None,
                    problem: format!("the template could not be checked: {e}"),
                })
            })
    }

    /// (HTML fragment, text) for one recipient, within the bounds.
    pub fn render(&self, fields: &RecipientFields) -> Result<(String, String), String> {
        let describe = |e: minijinja::Error| problem_of(&e).unwrap_or_else(|| e.to_string());
        let html = render_bounded(&self.env, "body.html", fields).map_err(describe)?;
        let text = render_bounded(&self.env, "body.txt", fields).map_err(describe)?;
        Ok((html, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_template_tags_intact_and_escapes_values() {
        let md = "# Hello {{ name | default(\"friend\") }}\n\n*Fresh* news for {{ list_name }}.";
        let c = Content::compile(&Source::Markdown(md.into()), "Weekly").unwrap();
        let mut f = RecipientFields::sample("Weekly <News>");
        f.name = "<script>alert(1)</script>".into();
        let (html, text) = c.render(&f).unwrap();
        assert!(
            html.contains("<h1>Hello &lt;script&gt;alert(1)&lt;&#x2f;script&gt;</h1>"),
            "{html}"
        );
        assert!(html.contains("<em>Fresh</em> news for Weekly &lt;News&gt;."));
        assert!(
            text.starts_with("Hello <script>"),
            "text is not HTML-escaped: {text}"
        );
    }

    #[test]
    fn a_tag_as_a_link_destination_becomes_the_recipients_link() {
        let md = "[Leave]({{ unsubscribe_url }}) or ![logo]({{ preferences_url }} \"{{ name }}\")";
        let c = Content::compile(&Source::Markdown(md.into()), "Weekly").unwrap();
        let mut f = RecipientFields::sample("Weekly");
        f.unsubscribe_url = "https://example.com/unsubscribe/abc?x=1&y=2".into();
        f.name = "Zoë".into();
        let (html, _) = c.render(&f).unwrap();
        assert!(
            html.contains(
                r#"<a href="https:&#x2f;&#x2f;example.com&#x2f;unsubscribe&#x2f;abc?x=1&amp;y=2">Leave</a>"#
            ),
            "{html}"
        );
        assert!(
            html.contains(r#"src="https:&#x2f;&#x2f;example.invalid&#x2f;preferences&#x2f;sample""#),
            "{html}"
        );
        assert!(html.contains(r#"title="Zoë""#), "{html}");
        assert!(!html.contains(OPEN) && !html.contains("%EE%80"), "{html}");
    }

    #[test]
    fn errors_point_at_the_line_and_column_the_person_wrote() {
        let md = "# Hello\n\nDear {{ name }},\n\nyour {{ email }} is on file.";
        let e = Content::compile(&Source::Markdown(md.into()), "x").err().unwrap();
        assert_eq!(e.part, Part::Markdown);
        assert_eq!((e.line, e.column), (Some(5), Some(9)), "{e}");
        assert!(
            e.to_string()
                .starts_with("line 5, column 9: `email` is not a field"),
            "{e}"
        );

        let e = Content::compile(&Source::Markdown("ok\n\n{% if name %}open".into()), "x")
            .err()
            .unwrap();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.problem.starts_with("syntax error"), "{e}");
        assert!(
            !e.to_string().contains("body.html") && !e.to_string().contains(".txt"),
            "{e}"
        );

        let source = Source::HtmlAndText {
            html: "<p>{{ name }}</p>".into(),
            text: "Hi\n{{ nme }}".into(),
        };
        let e = Content::compile(&source, "x").err().unwrap();
        assert_eq!((e.part, e.line, e.column), (Part::Text, Some(2), Some(4)), "{e}");
    }

    #[test]
    fn the_text_part_of_markdown_reads_as_plain_text() {
        let md = "# News for {{ name }}\n\nSome *emphasis*, **strong** and `code`, \
                  [our site](https://example.com/a?b=1) and <https://example.org>.\n\n\
                  ## Items\n\n- one\n- two\n  - nested\n\n1. first\n2. second\n\n\
                  > quoted\n> text\n\n    code block\n\n---\n\n\
                  [Leave]({{ unsubscribe_url }})";
        let text = markdown_to_text(md);
        let expected = "{% set heading %}News for {{ name }}{% endset %}{{ heading }}\n\
                        {{ heading|underline(\"=\") }}\n\
                        \n\
                        Some emphasis, strong and code, our site [1] and https://example.org.\n\
                        \n\
                        Items\n\
                        -----\n\
                        \n\
                        - one\n\
                        - two\n  \
                        - nested\n\
                        \n\
                        1. first\n\
                        2. second\n\
                        \n\
                        > quoted\n\
                        > text\n\
                        \n    \
                        code block\n\
                        \n\
                        ----------\n\
                        \n\
                        Leave [2]\n\
                        \n\
                        Links:\n\
                        [1] https://example.com/a?b=1\n\
                        [2] {{ unsubscribe_url }}\n";
        assert_eq!(text, expected, "\n{text}");
        let c = Content::compile(&Source::Markdown(md.into()), "Weekly").unwrap();
        let (_, rendered) = c.render(&RecipientFields::sample("Weekly")).unwrap();
        assert!(
            rendered.contains("[2] https://example.invalid/unsubscribe/sample"),
            "{rendered}"
        );
        assert!(
            rendered.starts_with("News for Sample Reader\n======================\n\n"),
            "{rendered}"
        );
        assert!(!rendered.contains('*') && !rendered.contains("]("), "{rendered}");
    }

    #[test]
    fn templates_are_bounded_in_work_output_and_means() {
        let refused = |md: &str| {
            Content::compile(&Source::Markdown(md.into()), "x")
                .err()
                .unwrap_or_else(|| panic!("{md} was accepted"))
        };
        let e = refused(
            "{% for a in [1,2,3,4,5,6,7,8,9,10] %}{% for b in [1,2,3,4,5,6,7,8,9,10] %}\
                         {% for c in [1,2,3,4,5,6,7,8,9,10] %}{% for d in [1,2,3,4,5,6,7,8,9,10] %}\
                         {% for e in [1,2,3,4,5,6,7,8,9,10] %}.{% endfor %}{% endfor %}{% endfor %}\
                         {% endfor %}{% endfor %}",
        );
        assert!(e.problem.contains("too much work"), "{e}");
        let e = refused("Hi\n{{ 'x' * 100000000 }}");
        assert_eq!((e.line, e.column), (Some(2), Some(8)), "{e}");
        assert!(e.problem.contains("operator `*`"), "{e}");
        assert!(refused("{% set s = name ~ name %}").problem.contains("`~`"));
        assert!(refused("{{ name + name }}").problem.contains("`+`"));
        let e = refused("{% for i in range(10) %}{% endfor %}");
        assert!(e.problem.contains("range is unknown"), "{e}");
        let e = refused("{{ name|center(100000000) }}");
        assert!(
            e.problem.contains("filter center is unknown") && e.problem.contains("default, upper"),
            "{e}"
        );
        // Operators inside string literals are text, and the allowed filters work.
        let c = Content::compile(
            &Source::Markdown("{{ \"1 * 2 ~ 3 + 4\" }} {{ name|upper|default('friend') }}".into()),
            "x",
        )
        .unwrap();
        let (_, text) = c.render(&RecipientFields::sample("x")).unwrap();
        assert!(text.starts_with("1 * 2 ~ 3 + 4 SAMPLE READER"), "{text}");
        // A loop within the budget whose output passes the cap.
        let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(20);
        let lines: String = (0..1000)
            .map(|_| "{{ name }} ".to_owned() + &line + "\n")
            .collect();
        let e = refused(&lines);
        assert!(e.problem.contains("more than 1 MB"), "{e}");
    }

    #[test]
    fn unknown_fields_and_broken_templates_are_refused() {
        assert!(Content::compile(&Source::Markdown("{{ email }}".into()), "x").is_err());
        assert!(Content::compile(&Source::Markdown("{% if %}".into()), "x").is_err());
    }
}
