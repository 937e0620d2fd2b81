//! `/privacy` (the policy in force, what is coming, the history, the retention periods) and
//! `/notices` (breach notices in force).

use maud::{Markup, html};

use crate::pages::{SiteIdentity, layout};

pub struct PolicyEntry<'a> {
    pub version: &'a str,
    pub effective: String,
    pub summary: &'a str,
    pub url: &'a str,
}

pub struct PrivacyView<'a> {
    pub current: Option<PolicyEntry<'a>>,
    pub upcoming: Vec<PolicyEntry<'a>>,
    pub history: Vec<PolicyEntry<'a>>,
    pub unconfirmed_days: u64,
    pub abuse_days: u64,
    pub after_leaving_days: u64,
    pub notices_in_force: usize,
}

fn entry(e: &PolicyEntry<'_>) -> Markup {
    html! {
        p { (e.summary) }
        p { a href=(e.url) { "Read version " (e.version) } }
    }
}

pub fn privacy(site: &SiteIdentity<'_>, v: &PrivacyView<'_>) -> Markup {
    layout(
        site,
        "Privacy policy",
        html! {
            h1 { "Privacy policy" }
            @if v.notices_in_force > 0 {
                p.notice role="alert" { a href="/notices" { "Notice: see our data breach notice" } }
            }
            @match &v.current {
                Some(c) => {
                    h2 { "Version " (c.version) ", effective " (c.effective) }
                    (entry(c))
                }
                None => @match v.upcoming.first() {
                    Some(first) => p { "Our first privacy policy takes effect on " strong { (first.effective) } ". You can read it below." },
                    None => p { "No policy version has been published yet." },
                },
            }
            @for u in &v.upcoming {
                h2 { "Version " (u.version) ", effective from " (u.effective) }
                (entry(u))
            }
            h2 { "How long we keep data" }
            ul {
                li { "Sign-ups that are never confirmed are deleted after " (v.unconfirmed_days) " days." }
                li { "IP addresses and browser details recorded with your consent (to detect abuse) are deleted after " (v.abuse_days) " days; the rest of the consent record stays as long as you are subscribed." }
                li { "When you have left every newsletter (or your address stopped accepting mail), everything we hold about you is deleted after " (v.after_leaving_days) " days, except a keyed fingerprint of your address that stops it from being added again without your consent." }
            }
            h2 { "Leaving and your data" }
            p { "Every email has a one-click unsubscribe link and a link to your preference page, where you can also get a copy of your data, correct it or erase it. You can also contact us at the address below." }
            p { a href="/notices" { "Notices" } }
            @if !v.history.is_empty() {
                h2 { "Earlier versions" }
                ul {
                    @for h in &v.history {
                        li { "Version " (h.version) ", effective " (h.effective) " — " a href=(h.url) { "read" } }
                    }
                }
            }
        },
    )
}

pub struct NoticeEntry<'a> {
    pub subject: &'a str,
    pub body: &'a str,
    pub published: String,
}

pub fn notices(site: &SiteIdentity<'_>, notices: &[NoticeEntry<'_>]) -> Markup {
    layout(
        site,
        "Notices",
        html! {
            h1 { "Notices" }
            @if notices.is_empty() { p { "There are no notices in force." } }
            @for n in notices {
                article {
                    h2 { (n.subject) }
                    p { small { "Published " (n.published) } }
                    @for para in n.body.split("\n\n") { p { (para) } }
                }
            }
        },
    )
}
