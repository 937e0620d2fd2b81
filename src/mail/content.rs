//! Campaign content: markdown (or HTML + text) with per-recipient fields.
//!
//! Markdown becomes HTML once per campaign; template tags (`{{ name }}`, `{% if %}`) are kept
//! out of the markdown converter's way and restored afterwards. Each recipient's message is then
//! rendered by minijinja with HTML auto-escaping, from a context that holds only that
//! recipient's own fields (their name, their links, the list's name): a template cannot reach
//! anyone else's data, the database or the file system.

use minijinja::{Environment, UndefinedBehavior};
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

impl Content {
    /// Compiles the templates and renders them once with sample fields, so a campaign with a
    /// broken template or an unknown field is refused when it is written, not when it is sent.
    pub fn compile(source: &Source, sample_list: &str) -> Result<Self, String> {
        let (html, text) = match source {
            Source::Markdown(md) => (markdown_to_html(md), md.clone()),
            Source::HtmlAndText { html, text } => (html.clone(), text.clone()),
        };
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // `.html` names turn HTML auto-escaping on; the text part is not escaped.
        env.add_template_owned("body.html", html)
            .map_err(|e| format!("the HTML template: {e}"))?;
        env.add_template_owned("body.txt", text)
            .map_err(|e| format!("the text template: {e}"))?;
        let content = Content { env };
        content.render(&RecipientFields::sample(sample_list))?;
        Ok(content)
    }

    /// (HTML fragment, text) for one recipient.
    pub fn render(&self, fields: &RecipientFields) -> Result<(String, String), String> {
        let html = self
            .env
            .get_template("body.html")
            .and_then(|t| t.render(fields))
            .map_err(|e| e.to_string())?;
        let text = self
            .env
            .get_template("body.txt")
            .and_then(|t| t.render(fields))
            .map_err(|e| e.to_string())?;
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
        assert!(text.starts_with("# Hello <script>"), "text is not HTML-escaped");
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
    fn unknown_fields_and_broken_templates_are_refused() {
        assert!(Content::compile(&Source::Markdown("{{ email }}".into()), "x").is_err());
        assert!(Content::compile(&Source::Markdown("{% if %}".into()), "x").is_err());
    }
}
