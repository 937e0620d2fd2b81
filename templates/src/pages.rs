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

/// A list as the home page offers it.
pub struct OfferedList<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
}

/// The home page: who we are, the newsletters on offer, and where to read what we promise.
pub fn home(site: &SiteIdentity<'_>, lists: &[OfferedList<'_>]) -> Markup {
    layout(
        site,
        "Newsletters",
        html! {
            h1 { "Newsletters from " (site.org_name) }
            @if lists.is_empty() {
                p { "There is no newsletter to subscribe to yet." }
            } @else {
                ul {
                    @for l in lists {
                        li {
                            strong { (l.name) }
                            @if let Some(d) = l.description { " — " (d) }
                            " "
                            a href={ "/subscribe?list=" (l.slug) } { "Subscribe" }
                        }
                    }
                }
                @if lists.len() > 1 {
                    p { a href="/subscribe" { "Subscribe to several at once" } }
                }
            }
            p {
                "We send newsletters only to people who confirmed their address, and every email has "
                "a link that unsubscribes at once. Read our "
                a href="/privacy" { "privacy policy" }
                " and our "
                a href="/notices" { "notices" }
                "."
            }
        },
    )
}
