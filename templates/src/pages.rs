//! Public pages: the shared layout, error pages and simple notices.

use maud::{DOCTYPE, Markup, html};

/// Inline styles: the pages load nothing from third parties (and nothing from us either).
const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;\
max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}\
h1{font-size:1.5rem}label{display:block;margin:.5rem 0}\
input[type=email],input[type=text]{width:100%;padding:.4rem;font-size:1rem}\
button{font-size:1rem;padding:.5rem 1rem;cursor:pointer}\
.error{color:#a40000}.notice{background:#f3f3f3;padding:1rem}\
footer{margin-top:3rem;font-size:.85rem;color:#555;border-top:1px solid #ddd;padding-top:1rem}\
.hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}";

/// Who runs the site: shown at the foot of every page.
pub struct SiteIdentity<'a> {
    pub org_name: &'a str,
    pub postal_address: &'a str,
    pub contact_email: &'a str,
}

/// The layout of every public page.
pub fn layout(site: &SiteIdentity<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " — " (site.org_name) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                main { (body) }
                footer {
                    p { (site.org_name) br;
                        @for line in site.postal_address.lines() { (line) br; }
                        a href={ "mailto:" (site.contact_email) } { (site.contact_email) } }
                    p { a href="/privacy" { "Privacy policy" } }
                }
            }
        }
    }
}

/// An error page: a status line and a sentence a person can act on.
pub fn error_page(site: &SiteIdentity<'_>, status: u16, title: &str, detail: &str) -> Markup {
    layout(
        site,
        title,
        html! {
            h1 { (title) }
            p { (detail) }
            p.error { small { "(" (status) ")" } }
        },
    )
}
