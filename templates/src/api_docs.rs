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
    pub needs_key: bool,
    /// `name (in, required, type): description`
    pub parameters: Vec<String>,
    /// Content type and schema name of each request body the operation accepts.
    pub request_body: Option<String>,
    pub responses: Vec<Response>,
}

/// One response of an operation.
pub struct Response {
    pub status: String,
    pub description: String,
    /// Content type and schema name of each body; empty when there is no body.
    pub content: String,
}

/// The page for the operations of an OpenAPI document of version `openapi_version`.
pub fn page(site: &SiteIdentity<'_>, openapi_version: &str, operations: &[Operation]) -> Markup {
    let mut tags: Vec<&str> = operations.iter().map(|o| o.tag.as_str()).collect();
    tags.dedup();
    layout(
        site,
        "API",
        html! {
            h1 { "API" }
            p { "The machine-readable description is at " a href="/openapi.json" { "/openapi.json" }
                " (OpenAPI " (openapi_version) "). Operations marked “key” need "
                code { "Authorization: Bearer <key>" } "; keys come from "
                code { "letterhead api-key create" } ". Errors are "
                code { "application/problem+json" } "." }
            nav { ul { @for tag in &tags { li { a href={ "#" (tag) } { (tag) } } } } }
            @for tag in &tags {
                section id=(tag) {
                    h2 { (tag) }
                    @for op in operations.iter().filter(|o| o.tag == *tag) {
                        article {
                            h3 { code { (op.method) " " (op.path) } @if op.needs_key { " (key)" } }
                            p { (op.summary) }
                            @if !op.parameters.is_empty() {
                                p { "Parameters:" }
                                ul { @for p in &op.parameters { li { (p) } } }
                            }
                            @if let Some(body) = &op.request_body { p { "Request body: " code { (body) } } }
                            ul { @for r in &op.responses {
                                li { code { (r.status) } " " (r.description)
                                    @if !r.content.is_empty() { ": " code { (r.content) } } }
                            } }
                        }
                    }
                }
            }
        },
    )
}
