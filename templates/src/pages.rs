//! Public pages: the shared layout, error pages and simple notices.

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The accent used when the operator chose none (`BRAND_ACCENT_COLOR`).
const DEFAULT_ACCENT: &str = "#1f5fa8";
/// Red for what cannot be undone: kept apart from the accent on purpose.
const DANGER: &str = "#b3261e";

/// Inline styles: the pages load nothing from third parties (and nothing from us either).
/// `--accent` and `--on-accent` are set per site, before this.
pub(crate) const STYLE: &str = "*,*::before,*::after{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:40rem;\
margin:0 auto;padding:0 1rem 1rem;line-height:1.5;color:#1a1a1a;background:#fff;\
overflow-wrap:break-word}\
a{color:var(--accent)}\
header.site{display:flex;align-items:center;gap:.75rem;padding:1rem 0;margin-bottom:1rem;\
border-bottom:3px solid var(--accent)}\
header.site a{display:flex;align-items:center;gap:.75rem;color:#1a1a1a;text-decoration:none;font-weight:600}\
header.site img{display:block;max-height:3rem;max-width:12rem;width:auto;height:auto}\
h1,h2{color:var(--accent);line-height:1.25}h1{font-size:1.6rem;margin:1rem 0}\
h2{font-size:1.2rem;margin:2rem 0 .5rem}\
label{display:block;margin:.75rem 0 .25rem}\
label.check{display:flex;gap:.5rem;align-items:flex-start;margin:.75rem 0}\
label.check input{flex:none;width:1.15rem;height:1.15rem;margin:.2rem 0 0}\
input[type=email],input[type=text]{display:block;width:100%;padding:.55rem .6rem;font:inherit;\
border:1px solid #767676;border-radius:4px}\
fieldset{border:1px solid #ccc;border-radius:4px;padding:.25rem 1rem;margin:1rem 0}\
legend{padding:0 .25rem;font-weight:600}\
button,a.button{display:inline-block;font:inherit;font-weight:600;line-height:1.3;\
padding:.6rem 1.2rem;border:2px solid var(--accent);border-radius:4px;background:var(--accent);\
color:var(--on-accent);cursor:pointer;text-decoration:none}\
button.secondary,a.button.secondary{background:#fff;color:var(--accent)}\
button.danger,a.button.danger{background:#fff;color:var(--danger);border-color:var(--danger)}\
button.danger.confirm{background:var(--danger);color:#fff}\
button:focus-visible,a:focus-visible,input:focus-visible{outline:3px solid #ffbf47;outline-offset:1px}\
.actions{display:flex;flex-wrap:wrap;gap:.75rem;align-items:center;margin:1rem 0}\
.error{color:#a40000}.notice{background:#f3f3f3;border-left:4px solid var(--accent);padding:.75rem 1rem}\
.danger-zone{border:2px solid var(--danger);border-radius:4px;padding:0 1rem;margin:1.5rem 0}\
.danger-zone h2{color:var(--danger)}\
footer{margin-top:3rem;font-size:.85rem;color:#555;border-top:1px solid #ddd;padding-top:1rem}\
.hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}";

/// Who runs the site (shown at the foot of every page) and how its pages look.
pub struct SiteIdentity<'a> {
    pub org_name: &'a str,
    pub postal_address: &'a str,
    pub contact_email: &'a str,
    /// An image shown in the page header (`BRAND_LOGO_URL`).
    pub logo_url: Option<&'a str>,
    /// `#rrggbb` for buttons, links and headings (`BRAND_ACCENT_COLOR`).
    pub accent_color: Option<&'a str>,
}

/// Black or white, whichever reads better on the colour `#rrggbb` (WCAG relative luminance).
fn text_on(hex: &str) -> &'static str {
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(hex.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0)) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    // Contrast with white is (1.05)/(L+0.05), with black (L+0.05)/0.05: equal at L = 0.179.
    if luminance > 0.179 { "#000" } else { "#fff" }
}

/// The site's colours as CSS custom properties, set before [`STYLE`].
pub(crate) fn colours(site: &SiteIdentity<'_>) -> String {
    let accent = site.accent_color.unwrap_or(DEFAULT_ACCENT);
    format!(
        ":root{{--accent:{accent};--on-accent:{};--danger:{DANGER}}}",
        text_on(accent)
    )
}

/// The layout of every public page.
pub fn layout(site: &SiteIdentity<'_>, title: &str, body: Markup) -> Markup {
    let colours = colours(site);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " — " (site.org_name) }
                style { (PreEscaped(colours)) (PreEscaped(STYLE)) }
            }
            body {
                header.site {
                    a href="/" {
                        @if let Some(logo) = site.logo_url { img src=(logo) alt=""; }
                        span { (site.org_name) }
                    }
                }
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

/// What a person who met a dead end (a link that does not work) can do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WayOn {
    /// An unsubscribe link: how to leave anyway.
    Unsubscribe,
    /// A link to the preference page, a download or an address change: the preference link at
    /// the foot of any email, or a word to us.
    Preferences,
    /// A confirmation link: sign up again.
    Signup,
}

/// The contact address as a link; `subject` fills in the email's subject.
fn mailto(site: &SiteIdentity<'_>, subject: Option<&str>) -> Markup {
    html! {
        a href={ "mailto:" (site.contact_email) @if let Some(s) = subject { "?subject=" (s) } } { (site.contact_email) }
    }
}

fn way_on(site: &SiteIdentity<'_>, way: WayOn) -> Markup {
    match way {
        WayOn::Unsubscribe => html! {
            h2 { "You can still unsubscribe" }
            ul {
                li { "Use the unsubscribe or preferences link at the foot of any other email from us; each works on its own." }
                li { "Or write to " (mailto(site, Some("Unsubscribe"))) " from the address you want removed, and we will unsubscribe it." }
            }
        },
        WayOn::Preferences => html! {
            h2 { "What you can do" }
            ul {
                li { "Open the “Manage your preferences” link at the foot of our latest email: it gets you a fresh page, and new links from there." }
                li { "Or write to " (mailto(site, None)) " and we will help: a copy of your data, a correction, or erasure." }
            }
        },
        WayOn::Signup => html! {
            h2 { "What you can do" }
            ul {
                li { a href="/subscribe" { "Sign up again" } " and use the link in the new email." }
                li { "Questions? Write to " (mailto(site, None)) "." }
            }
        },
    }
}

/// An error page: a status line, a sentence a person can act on, and, for a link from an
/// email, what to do instead.
pub fn error_page(
    site: &SiteIdentity<'_>,
    status: u16,
    title: &str,
    detail: &str,
    way: Option<WayOn>,
) -> Markup {
    layout(
        site,
        title,
        html! {
            h1 { (title) }
            p { (detail) }
            @if let Some(way) = way { (way_on(site, way)) }
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

#[cfg(test)]
mod tests {
    use super::text_on;

    #[test]
    fn button_text_reads_on_dark_and_light_accents() {
        assert_eq!(text_on("#1f5fa8"), "#fff");
        assert_eq!(text_on("#000000"), "#fff");
        assert_eq!(text_on("#ffd700"), "#000");
        assert_eq!(text_on("#ffffff"), "#000");
    }
}
