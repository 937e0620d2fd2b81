//! The API's documentation page, rendered on the server from the OpenAPI document: no
//! JavaScript and nothing from elsewhere (the pages' CSP allows neither).

use maud::{Markup, html};

use crate::pages::{SiteIdentity, layout};

/// One operation, as the page lists it.
pub struct Operation {
    pub method: String,
    pub path: String,
    pub tag: String,
    pub summary: String,
    pub description: String,
    pub needs_key: bool,
    /// Path and query parameters; `Field::place` says which.
    pub parameters: Vec<Field>,
    /// One per content type the operation accepts.
    pub request_bodies: Vec<Body>,
    pub responses: Vec<Response>,
}

/// One response of an operation.
pub struct Response {
    pub status: String,
    pub description: String,
    /// One per content type; none when the response has no body.
    pub bodies: Vec<Body>,
}

/// A request or response body of one content type.
pub struct Body {
    pub content_type: String,
    /// The schema's name, or its type when it has none (`array of ListView`).
    pub schema: String,
    pub description: String,
    /// The fields of an object body.
    pub fields: Vec<Field>,
    /// Rules that bind several fields (e.g. "either markdown, or html and text").
    pub rules: Vec<String>,
    /// An example body, as it is sent (pretty JSON, or the text itself).
    pub example: Option<String>,
}

/// A field of a body, or a parameter.
pub struct Field {
    pub name: String,
    /// `path` or `query` for a parameter; empty for a field.
    pub place: String,
    /// E.g. `string (email)`, `array of string`, `integer ≥ 0`, `"pending" or "confirmed"`.
    pub kind: String,
    pub required: bool,
    pub description: String,
    /// The constraints besides the type: lengths, counts, patterns.
    pub constraints: String,
}

const STYLE: &str = "table{border-collapse:collapse;width:100%;font-size:.9rem}\
    th,td{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;vertical-align:top}\
    pre{background:#f4f4f4;padding:.5rem;overflow-x:auto;font-size:.85rem}\
    article{border-top:1px solid #ddd;margin-top:1.5rem}";

/// Text whose `code spans` (the only markup the document's descriptions use) become code; the
/// rest is shown as the text it is.
pub fn inline(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

fn fields_table(fields: &[Field], with_place: bool) -> Markup {
    html! {
        table {
            tr {
                th { "Name" } @if with_place { th { "In" } } th { "Type" } th { "Required" }
                th { "Description" }
            }
            @for f in fields {
                tr {
                    td { code { (f.name) } }
                    @if with_place { td { (f.place) } }
                    td { (inline(&f.kind)) }
                    td { @if f.required { "required" } @else { "optional" } }
                    td {
                        (inline(&f.description))
                        @if !f.constraints.is_empty() {
                            @if !f.description.is_empty() { br; }
                            small { (inline(&f.constraints)) }
                        }
                    }
                }
            }
        }
    }
}

/// The schema of every error body, described once at the top of the page.
const PROBLEM: &str = "Problem";

fn body(b: &Body) -> Markup {
    if b.schema == PROBLEM {
        return html! { p { code { (b.content_type) } " " a href="#problem" { (PROBLEM) } } };
    }
    html! {
        p { code { (b.content_type) } " " strong { (b.schema) }
            @if !b.description.is_empty() { ": " (inline(&b.description)) } }
        @if !b.fields.is_empty() { (fields_table(&b.fields, false)) }
        @if !b.rules.is_empty() { ul { @for r in &b.rules { li { (inline(r)) } } } }
        @if let Some(example) = &b.example { p { "Example:" } pre { (example) } }
    }
}

/// The page for the operations of an OpenAPI document of version `openapi_version`, whose
/// error bodies are all `problem`.
pub fn page(
    site: &SiteIdentity<'_>,
    openapi_version: &str,
    problem: &Body,
    operations: &[Operation],
) -> Markup {
    let mut tags: Vec<&str> = operations.iter().map(|o| o.tag.as_str()).collect();
    tags.dedup();
    layout(
        site,
        "API",
        html! {
            style { (maud::PreEscaped(STYLE)) }
            h1 { "API" }
            p { "The machine-readable description is at " a href="/openapi.json" { "/openapi.json" }
                " (OpenAPI " (openapi_version) "). Operations marked “key” need "
                code { "Authorization: Bearer <key>" } "; keys come from "
                code { "letterhead api-key create" } ". Errors are "
                code { "application/problem+json" } "." }
            nav { ul { @for tag in &tags { li { a href={ "#" (tag) } { (tag) } } } } }
            section id="problem" {
                h2 { "Errors" }
                p { "Every error answer has this body (" code { (problem.content_type) } "):" }
                @if !problem.fields.is_empty() { (fields_table(&problem.fields, false)) }
                @if let Some(example) = &problem.example { p { "Example:" } pre { (example) } }
            }
            @for tag in &tags {
                section id=(tag) {
                    h2 { (tag) }
                    @for op in operations.iter().filter(|o| o.tag == *tag) {
                        article {
                            h3 { code { (op.method) " " (op.path) } @if op.needs_key { " (key)" } }
                            p { (inline(&op.summary)) }
                            @if !op.description.is_empty() { p { (inline(&op.description)) } }
                            @if !op.parameters.is_empty() {
                                h4 { "Parameters" }
                                (fields_table(&op.parameters, true))
                            }
                            @if !op.request_bodies.is_empty() {
                                h4 { "Request body" }
                                @for b in &op.request_bodies { (body(b)) }
                            }
                            h4 { "Responses" }
                            @for r in &op.responses {
                                p { strong { (r.status) } " " (inline(&r.description)) }
                                @for b in &r.bodies { (body(b)) }
                            }
                        }
                    }
                }
            }
        },
    )
}
